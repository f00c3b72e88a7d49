"""The policy head's action distribution: a softmax over the valid actions only (paper eq. 8).

It lives with the model (which produces log pi(a|s)); `flagtrl.trainer.ppo_math` re-exports it for the PPO losses.
"""

from __future__ import annotations

import torch


def masked_log_softmax(logits: torch.Tensor, action_mask: torch.Tensor) -> torch.Tensor:
    """log pi(a|s) with invalid actions at probability exactly 0 (paper eq. 8).

    Args:
        logits (`torch.Tensor`): `(batch, num_actions)` policy-head logits.
        action_mask (`torch.Tensor`): `(batch, num_actions)`, 1/True for valid actions; every row needs one.

    Returns:
        `torch.Tensor`: log-probabilities, `-inf` on masked actions.
    """
    mask = action_mask.bool()
    if not mask.any(dim=-1).all():
        raise ValueError("Every state needs at least one valid action (hold is always valid).")
    return torch.log_softmax(logits.float().masked_fill(~mask, float("-inf")), dim=-1)
