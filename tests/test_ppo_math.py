"""The PPO formulas against values computed by hand (paper Appendix A; CleanRL's ppo.py)."""

from __future__ import annotations

import math

import pytest
import torch

from flagtrl.trainer.ppo_math import (
    categorical_kl,
    clipped_policy_loss,
    clipped_value_loss,
    compute_gae,
    explained_variance,
    masked_entropy,
    masked_log_softmax,
    normalize_advantages,
)


# --- masked softmax and entropy ---------------------------------------------------------------------------------------
def test_masked_log_softmax_zeroes_masked_actions_and_renormalises():
    logits = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0], [5.0, -1.0, 7.0]])
    mask = torch.tensor([[0, 1, 1], [1, 1, 1], [0, 1, 0]])
    probs = masked_log_softmax(logits, mask).exp()

    # Row 0: sell masked, softmax over logits (2, 3) of hold and buy.
    e = math.e
    assert probs[0, 0].item() == 0.0
    assert probs[0, 1].item() == pytest.approx(1 / (1 + e), abs=1e-6)
    assert probs[0, 2].item() == pytest.approx(e / (1 + e), abs=1e-6)
    # Row 1: all valid, equal logits.
    assert torch.allclose(probs[1], torch.full((3,), 1 / 3))
    # Row 2: only hold valid, whatever the logits of the others.
    assert probs[2].tolist() == [0.0, 1.0, 0.0]
    assert torch.allclose(probs.sum(-1), torch.ones(3))


def test_masked_log_softmax_accepts_bool_masks_and_is_minus_inf_on_masked():
    log_probs = masked_log_softmax(torch.zeros(1, 3), torch.tensor([[True, True, False]]))
    assert log_probs[0, 2].item() == float("-inf")
    assert log_probs[0, 0].item() == pytest.approx(math.log(0.5))


def test_masked_log_softmax_rejects_a_state_without_valid_action():
    with pytest.raises(ValueError, match="at least one valid action"):
        masked_log_softmax(torch.zeros(2, 3), torch.tensor([[1, 1, 1], [0, 0, 0]]))


def test_masked_entropy_is_log_of_the_number_of_valid_actions_for_uniform_policies():
    mask = torch.tensor([[1, 1, 1], [0, 1, 1], [0, 1, 0]])
    entropy = masked_entropy(masked_log_softmax(torch.zeros(3, 3), mask))
    assert torch.isfinite(entropy).all()  # masked actions contribute 0, not 0 * -inf = nan
    assert entropy.tolist() == pytest.approx([math.log(3), math.log(2), 0.0], abs=1e-6)


def test_masked_entropy_of_a_skewed_distribution():
    probs = torch.tensor([[0.0, 0.25, 0.75]])
    expected = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    assert masked_entropy(probs.log()).item() == pytest.approx(expected, abs=1e-6)


# --- KL to the reference policy ---------------------------------------------------------------------------------------
def test_categorical_kl_is_zero_for_identical_distributions():
    log_probs = masked_log_softmax(
        torch.tensor([[0.3, -1.2, 2.0], [1.0, 0.0, 0.0]]), torch.tensor([[1, 1, 1], [0, 1, 1]])
    )
    kl = categorical_kl(log_probs, log_probs.clone())
    assert torch.equal(kl, torch.zeros(2))


def test_categorical_kl_two_actions_by_hand():
    # KL(p || q) with p = (0.25, 0.75), q = (0.5, 0.5): 0.25 ln(0.25 / 0.5) + 0.75 ln(0.75 / 0.5) = 0.1308...
    p = torch.tensor([[0.25, 0.75]]).log()
    q = torch.tensor([[0.5, 0.5]]).log()
    expected = 0.25 * math.log(0.5) + 0.75 * math.log(1.5)
    assert categorical_kl(p, q).item() == pytest.approx(expected, abs=1e-6)
    # Not symmetric: KL(q || p) = 0.5 ln(0.5 / 0.25) + 0.5 ln(0.5 / 0.75).
    assert categorical_kl(q, p).item() == pytest.approx(0.5 * math.log(2) + 0.5 * math.log(2 / 3), abs=1e-6)


def test_categorical_kl_ignores_an_action_masked_in_both():
    # Sell masked in both (-inf - -inf would be nan): KL over hold and buy only.
    mask = torch.tensor([[0, 1, 1]])
    p = masked_log_softmax(torch.tensor([[0.0, 0.0, 0.0]]), mask)  # (0, 0.5, 0.5)
    q = masked_log_softmax(torch.tensor([[0.0, 0.0, math.log(3.0)]]), mask)  # (0, 0.25, 0.75)
    expected = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    kl = categorical_kl(p, q)
    assert torch.isfinite(kl).all()
    assert kl.item() == pytest.approx(expected, abs=1e-6)


# --- GAE --------------------------------------------------------------------------------------------------------------
def test_compute_gae_three_steps_with_an_episode_boundary():
    gamma, lam = 0.9, 0.8
    # Env 0: the episode ends after step 1, so s_2 is the first state of a new one (dones[2] = 1).
    # Env 1: no boundary inside the rollout, but the state after it starts a new episode (next_done = 1).
    rewards = torch.tensor([[1.0, 0.0], [2.0, 0.0], [3.0, 1.0]])
    values = torch.tensor([[0.5, 0.0], [1.0, 0.0], [1.5, 0.0]])
    dones = torch.tensor([[0.0, 0.0], [0.0, 0.0], [1.0, 0.0]])
    next_value = torch.tensor([2.0, 5.0])
    next_done = torch.tensor([0.0, 1.0])

    advantages, returns = compute_gae(rewards, values, dones, next_value, next_done, gamma, lam)

    # Env 0, backwards:
    #   t=2: delta_2 = r_2 + gamma V(s_3) (1 - next_done) - V(s_2) = 3 + 0.9 * 2.0 - 1.5 = 3.3;  A_2 = 3.3
    #   t=1: s_2 starts a new episode: delta_1 = 2 + 0 - 1.0 = 1.0;  A_1 = delta_1 (no bootstrap either) = 1.0
    #   t=0: delta_0 = 1 + 0.9 * 1.0 - 0.5 = 1.4;  A_0 = 1.4 + 0.9 * 0.8 * A_1 = 1.4 + 0.72 = 2.12
    # Env 1: V = 0 everywhere and V(s_3) = 5 is not bootstrapped (next_done = 1):
    #   t=2: delta = 1, A_2 = 1;  t=1: delta = 0, A_1 = 0.72 * 1 = 0.72;  t=0: A_0 = 0.72 * 0.72 = 0.5184
    expected = torch.tensor([[2.12, 0.5184], [1.0, 0.72], [3.3, 1.0]])
    assert torch.allclose(advantages, expected, atol=1e-6)
    assert torch.allclose(returns, expected + values, atol=1e-6)


def test_compute_gae_with_lambda_one_gives_discounted_returns_minus_values():
    gamma = 0.5
    rewards = torch.tensor([[1.0], [1.0], [1.0]])
    values = torch.tensor([[0.2], [0.4], [0.6]])
    advantages, returns = compute_gae(
        rewards, values, torch.zeros(3, 1), torch.tensor([8.0]), torch.tensor([0.0]), gamma, 1.0
    )
    # Monte-Carlo returns bootstrapped at the end: G_2 = 1 + 0.5 * 8 = 5, G_1 = 1 + 0.5 * 5 = 3.5, G_0 = 2.75.
    assert torch.allclose(returns.squeeze(1), torch.tensor([2.75, 3.5, 5.0]), atol=1e-6)
    assert torch.allclose(advantages.squeeze(1), torch.tensor([2.55, 3.1, 4.4]), atol=1e-6)


# --- advantage normalisation --------------------------------------------------------------------------------------------
def test_normalize_advantages():
    # mean 2, sample std 1.
    assert torch.allclose(
        normalize_advantages(torch.tensor([1.0, 2.0, 3.0])), torch.tensor([-1.0, 0.0, 1.0]), atol=1e-6
    )
    normalised = normalize_advantages(torch.tensor([4.0, -2.0, 7.0, 0.5]))
    assert normalised.mean().item() == pytest.approx(0.0, abs=1e-6)
    assert normalised.std().item() == pytest.approx(1.0, abs=1e-6)
    # One element has no spread: only centred, never nan.
    assert normalize_advantages(torch.tensor([3.0])).tolist() == [0.0]
    # Equal advantages: zeros, not nan (eps in the denominator).
    assert torch.equal(normalize_advantages(torch.full((4,), 2.5)), torch.zeros(4))


# --- clipped losses ---------------------------------------------------------------------------------------------------
def test_clipped_policy_loss_by_hand():
    ratios = torch.tensor([1.5, 0.5, 0.5, 1.1])
    advantages = torch.tensor([1.0, -1.0, 1.0, 2.0])
    old_log_probs = torch.tensor([-1.0, -0.5, -2.0, -0.3])
    log_probs = (old_log_probs + ratios.log()).requires_grad_(True)

    loss, approx_kl, old_approx_kl, clip_fraction = clipped_policy_loss(log_probs, old_log_probs, advantages, 0.2)

    # Per sample max(-A r, -A clip(r, 0.8, 1.2)):
    #   r=1.5, A=+1: max(-1.5, -1.2) = -1.2   (clipped: no incentive to push r further up)
    #   r=0.5, A=-1: max( 0.5,  0.8) =  0.8   (clipped)
    #   r=0.5, A=+1: max(-0.5, -0.8) = -0.5   (pessimistic bound keeps the unclipped term)
    #   r=1.1, A=+2: max(-2.2, -2.2) = -2.2   (inside the trust region)
    assert loss.item() == pytest.approx((-1.2 + 0.8 - 0.5 - 2.2) / 4, abs=1e-6)
    # |r - 1| > 0.2 for the first three.
    assert clip_fraction.item() == pytest.approx(0.75)
    assert approx_kl.item() == pytest.approx(sum((r - 1) - math.log(r) for r in (1.5, 0.5, 0.5, 1.1)) / 4, abs=1e-6)
    assert old_approx_kl.item() == pytest.approx(-sum(math.log(r) for r in (1.5, 0.5, 0.5, 1.1)) / 4, abs=1e-6)

    # Clipped samples get no gradient; the others d(-A r)/d log pi / 4 = -A r / 4.
    loss.backward()
    assert torch.allclose(log_probs.grad, torch.tensor([0.0, 0.0, -0.5 / 4, -2.2 / 4]), atol=1e-6)


def test_clipped_policy_loss_at_ratio_one_is_minus_mean_advantage():
    log_probs = torch.tensor([-0.7, -1.3])
    loss, approx_kl, old_approx_kl, clip_fraction = clipped_policy_loss(
        log_probs, log_probs.clone(), torch.tensor([1.0, 3.0]), 0.2
    )
    assert loss.item() == pytest.approx(-2.0)
    assert approx_kl.item() == 0.0 and old_approx_kl.item() == 0.0 and clip_fraction.item() == 0.0


def test_clipped_value_loss_by_hand():
    values = torch.tensor([2.0, 0.0, 2.0])
    old_values = torch.tensor([1.0, 0.0, 1.0])
    returns = torch.tensor([3.0, 1.0, 1.2])
    # Unclipped squared errors: (2-3)^2 = 1, (0-1)^2 = 1, (2-1.2)^2 = 0.64.
    assert clipped_value_loss(values, old_values, returns, 0.5, clip_vloss=False).item() == pytest.approx(
        0.5 * (1 + 1 + 0.64) / 3, abs=1e-6
    )
    # Clipped values V_old + clip(V - V_old, -0.5, 0.5) = 1.5, 0.0, 1.5 → errors 2.25, 1, 0.09;
    # the max with the unclipped error per sample: 2.25, 1, 0.64.
    assert clipped_value_loss(values, old_values, returns, 0.5).item() == pytest.approx(
        0.5 * (2.25 + 1 + 0.64) / 3, abs=1e-6
    )


def test_clipped_value_loss_without_movement_equals_plain_loss():
    values = torch.tensor([0.3, -0.2])
    returns = torch.tensor([1.0, 0.0])
    plain = 0.5 * (0.7**2 + 0.2**2) / 2
    assert clipped_value_loss(values, values.clone(), returns, 0.2).item() == pytest.approx(plain, abs=1e-6)
    assert clipped_value_loss(values, values.clone(), returns, 0.2, clip_vloss=False).item() == pytest.approx(
        plain, abs=1e-6
    )


# --- explained variance -----------------------------------------------------------------------------------------------
def test_explained_variance_hand_computed():
    returns = torch.tensor([1.0, 2.0, 3.0])  # Var(R) = 1 (ddof=1)
    assert explained_variance(returns.clone(), returns) == pytest.approx(1.0)  # perfect values
    assert explained_variance(torch.zeros(3), returns) == pytest.approx(0.0)  # a constant explains nothing
    # R - V = (0, 0, -1): mean -1/3, squared deviations 1/9 + 1/9 + 4/9 over 2 = 1/3, so EV = 1 - 1/3.
    assert explained_variance(torch.tensor([1.0, 2.0, 4.0]), returns) == pytest.approx(2 / 3)
    # R - V = (2, -2, 2): variance 16/3 > Var(R), worse than a constant.
    assert explained_variance(torch.tensor([-1.0, 4.0, 1.0]), returns) == pytest.approx(1 - 16 / 3)


def test_explained_variance_is_nan_without_return_variance():
    assert math.isnan(explained_variance(torch.tensor([0.5, 1.0]), torch.tensor([2.0, 2.0])))
