"""The PPO formulas of FLAG-Trader (paper Appendix A) as small pure functions on tensors, read top to bottom as in
CleanRL's `ppo.py`."""

from __future__ import annotations

import torch

# Re-exported: the policy model owns the masked action distribution; the PPO losses use it.
from ..models.action_head import masked_log_softmax as masked_log_softmax


def masked_entropy(log_probs: torch.Tensor) -> torch.Tensor:
    """Entropy of masked distributions; masked actions (log-prob -inf, prob 0) contribute 0."""
    probs = log_probs.exp()
    return -(probs * log_probs.masked_fill(probs == 0, 0.0)).sum(-1)


def categorical_kl(log_probs: torch.Tensor, ref_log_probs: torch.Tensor) -> torch.Tensor:
    """Exact KL(pi || pi_ref) = sum_a pi(a) (log pi(a) - log pi_ref(a)) over the (few) actions, per state.

    Both distributions are masked the same way; masked actions have pi(a) = 0 and contribute nothing.
    """
    probs = log_probs.exp()
    diff = (log_probs - ref_log_probs).masked_fill(probs == 0, 0.0)
    return (probs * diff).sum(-1)


def compute_gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    dones: torch.Tensor,
    next_value: torch.Tensor,
    next_done: torch.Tensor,
    gamma: float,
    gae_lambda: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over a rollout of `num_steps` x `num_envs` (CleanRL's loop).

    Args:
        rewards (`torch.Tensor`): `(num_steps, num_envs)` r_t.
        values (`torch.Tensor`): `(num_steps, num_envs)` V(s_t).
        dones (`torch.Tensor`): `(num_steps, num_envs)` 1 where s_t is the first state of a new episode (the
            previous step ended one), as CleanRL stores them.
        next_value (`torch.Tensor`): `(num_envs,)` V(s_T) of the state after the rollout.
        next_done (`torch.Tensor`): `(num_envs,)` 1 where s_T starts a new episode.
        gamma (`float`), gae_lambda (`float`): Discount and GAE lambda.

    Returns:
        `tuple[torch.Tensor, torch.Tensor]`: advantages and returns (advantages + values), `(num_steps, num_envs)`.
    """
    num_steps = rewards.shape[0]
    advantages = torch.zeros_like(rewards)
    last_gae = torch.zeros_like(next_value)
    for t in reversed(range(num_steps)):
        if t == num_steps - 1:
            next_non_terminal, next_values = 1.0 - next_done, next_value
        else:
            next_non_terminal, next_values = 1.0 - dones[t + 1], values[t + 1]
        delta = rewards[t] + gamma * next_values * next_non_terminal - values[t]
        last_gae = delta + gamma * gae_lambda * next_non_terminal * last_gae
        advantages[t] = last_gae
    return advantages, advantages + values


def normalize_advantages(advantages: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Zero-mean, unit-variance advantages of a minibatch (a single element is only centred)."""
    if advantages.numel() < 2:
        return advantages - advantages.mean()
    return (advantages - advantages.mean()) / (advantages.std() + eps)


def clipped_policy_loss(
    log_probs: torch.Tensor, old_log_probs: torch.Tensor, advantages: torch.Tensor, clip_coef: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """PPO's clipped surrogate, to minimise: mean(max(-A r, -A clip(r, 1-eps, 1+eps))), r = pi / pi_old.

    Returns:
        `tuple`: (loss, approx_kl = mean((r - 1) - log r), old_approx_kl = mean(-log r), clip_fraction).
    """
    log_ratio = log_probs - old_log_probs
    ratio = log_ratio.exp()
    loss = torch.max(-advantages * ratio, -advantages * ratio.clamp(1 - clip_coef, 1 + clip_coef)).mean()
    with torch.no_grad():
        approx_kl = ((ratio - 1) - log_ratio).mean()
        old_approx_kl = (-log_ratio).mean()
        clip_fraction = ((ratio - 1.0).abs() > clip_coef).float().mean()
    return loss, approx_kl, old_approx_kl, clip_fraction


def clipped_value_loss(
    values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, clip_coef: float, clip_vloss: bool = True
) -> torch.Tensor:
    """0.5 * mean(max((V - R)^2, (V_old + clip(V - V_old, -eps, eps) - R)^2)), or the plain squared error."""
    unclipped = (values - returns) ** 2
    if not clip_vloss:
        return 0.5 * unclipped.mean()
    clipped = old_values + (values - old_values).clamp(-clip_coef, clip_coef)
    return 0.5 * torch.max(unclipped, (clipped - returns) ** 2).mean()


def explained_variance(values: torch.Tensor, returns: torch.Tensor) -> float:
    """1 - Var(R - V) / Var(R): the share of the returns' variance that the value estimates explain (CleanRL's
    `explained_var`); 1 is perfect, 0 no better than a constant, negative worse.

    Returns:
        `float`: the explained variance; `nan` when the returns have no variance (sample variance, ddof=1).
    """
    variance = returns.var()
    return float("nan") if variance == 0 else float(1 - (returns - values).var() / variance)
