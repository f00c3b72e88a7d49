"""Trading rewards as pure functions of an episode's account history, and one registry to pick them by name.

Every reward is credited for the interval that the decision traded (see `flagtrl.envs.trading_env`): the decision
taken on day t executes at day t's close and the reward of that step is computed from the account values
V_0..V_{t+1}, the newest being the value at day t+1's close.

- `sharpe_delta` — FLAG-Trader's reward (paper §3, eq. 3): R_t = SR_t - SR_{t-1}, SR_t = (mean(pnl_1..t) - r_f) /
  std(pnl_1..t) over the episode's profit and loss in account currency. The paper leaves the first steps undefined;
  flagtrl's documented rule: SR_t = 0 while fewer than `min_periods` pnl values exist (default 10: a Sharpe ratio of
  2 or 3 values is noise, and with 2 values it is ±1/sqrt(2) whatever the size of the move) or while their standard
  deviation is 0 (an account that has only held cash). The rewards telescope: their sum is the final SR.
- `differential_sharpe` — the differential Sharpe ratio (Moody & Saffell, "Learning to Trade via Direct
  Reinforcement", IEEE TNN 12(4), 2001, eq. 14; Moody & Wu 1997): the first-order effect of the newest return on an
  exponential-moving-average Sharpe ratio. Per step it behaves like the newest return standardised by the recent
  volatility, so each decision gets its own signal.
- `log_return` — the account's log return ln(V_{t+1} / V_t) (the growth-optimal, Kelly, objective; sums to the
  episode's log return).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from .sharpe import sharpe_ratio


# A wiped-out account (value <= 0, only reachable by a short position) has no log: its last step is scored as the loss
# of all but this fraction, ln(1e-6) = -13.8, a floor well below any real day's log return.
WIPED_OUT_VALUE_RATIO = 1e-6


def running_sharpe(pnl: Sequence[float] | np.ndarray, risk_free: float = 0.0, min_periods: int = 2) -> float:
    """Sharpe ratio SR_t of a pnl history (per step, not annualised), defined as 0 on the first steps.

    Args:
        pnl (`Sequence[float]`): Profit and loss of each step so far, pnl_1..pnl_t, in account currency.
        risk_free (`float`, *optional*, defaults to `0.0`): r_f per step, in the same units as `pnl`.
        min_periods (`int`, *optional*, defaults to `2`): Fewest pnl values for which the ratio is computed.

    Returns:
        `float`: (mean(pnl) - r_f) / std(pnl, ddof=1), or 0.0 with fewer than `max(2, min_periods)` values or a
        zero deviation.
    """
    values = np.asarray(pnl, dtype=np.float64)
    if values.size < max(2, min_periods):
        return 0.0
    deviation = values.std(ddof=1)
    # A relative threshold: a flat account has pnl exactly 0, but float noise on 1e5-sized values must not blow up.
    if deviation <= 1e-12 * max(1.0, float(np.abs(values).max())):
        return 0.0
    return sharpe_ratio(values, risk_free)


def sharpe_delta_reward(pnl: Sequence[float] | np.ndarray, risk_free: float = 0.0, min_periods: int = 2) -> float:
    """FLAG-Trader's reward R_t = SR_t - SR_{t-1} (paper eq. 3), where `pnl` holds pnl_1..pnl_t (the newest last).

    Args:
        pnl (`Sequence[float]`): Profit and loss of each step so far, in account currency.
        risk_free (`float`, *optional*, defaults to `0.0`): r_f per step, in the units of `pnl`.
        min_periods (`int`, *optional*, defaults to `2`): SR is 0 until this many pnl values exist (see
            `running_sharpe`); the environment's default is 10.

    Returns:
        `float`: the reward; 0.0 for an empty history.
    """
    values = np.asarray(pnl, dtype=np.float64)
    if values.size == 0:
        return 0.0
    return running_sharpe(values, risk_free, min_periods) - running_sharpe(values[:-1], risk_free, min_periods)


def simple_returns(account_values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Per-step simple returns V_t / V_{t-1} - 1 of an account-value history V_0..V_t (fractions, `float64`)."""
    values = np.asarray(account_values, dtype=np.float64)
    return values[1:] / values[:-1] - 1.0


def differential_sharpe_ratio(
    returns: Sequence[float] | np.ndarray, eta: float = 0.05, initial_volatility: float = 0.01
) -> float:
    """Differential Sharpe ratio D_t of the newest return (Moody & Saffell 2001, eq. 14).

    With exponential moving estimates of the first two moments of the returns, A_t = A_{t-1} + eta (R_t - A_{t-1})
    and B_t = B_{t-1} + eta (R_t^2 - B_{t-1}),

        D_t = (B_{t-1} dA_t - 0.5 A_{t-1} dB_t) / (B_{t-1} - A_{t-1}^2)^(3/2),  dA_t = R_t - A_{t-1},
        dB_t = R_t^2 - B_{t-1}.

    The paper leaves the start open; flagtrl starts from A_0 = 0 and B_0 = `initial_volatility`^2 (a prior daily
    volatility), so D_1 = R_1 / `initial_volatility` and B - A^2 stays positive on every step (it shrinks at most by
    the factor 1 - eta a step).

    Args:
        returns (`Sequence[float]`): The episode's simple returns R_1..R_t (fractions per step), the newest last.
        eta (`float`, *optional*, defaults to `0.05`): Adaptation rate of the moving moments (about 1/eta steps).
        initial_volatility (`float`, *optional*, defaults to `0.01`): Prior per-step volatility (0.01: 1 % a day).

    Returns:
        `float`: D_t (dimensionless, of the order of a standardised return); 0.0 for an empty history.

    Raises:
        `ValueError`: if `eta` is not in (0, 1] or `initial_volatility` is not positive.
    """
    if not 0.0 < eta <= 1.0:
        raise ValueError(f"eta must lie in (0, 1], got {eta}.")
    if not initial_volatility > 0.0:
        raise ValueError(f"initial_volatility must be positive, got {initial_volatility}.")
    values = np.asarray(returns, dtype=np.float64)
    if values.size == 0:
        return 0.0
    first, second = 0.0, initial_volatility**2
    for r in values[:-1]:
        first, second = first + eta * (r - first), second + eta * (r * r - second)
    r = values[-1]
    d_first, d_second = r - first, r * r - second
    return float((second * d_first - 0.5 * first * d_second) / (second - first * first) ** 1.5)


def log_return_reward(account_values: Sequence[float] | np.ndarray) -> float:
    """ln(V_t / V_{t-1}) of the newest step of an account-value history V_0..V_t.

    A wiped-out account (V_t <= 0) is scored as ln(`WIPED_OUT_VALUE_RATIO`) = -13.8.

    Returns:
        `float`: the log return (a fraction per step); 0.0 when fewer than two values exist.
    """
    values = np.asarray(account_values, dtype=np.float64)
    if values.size < 2:
        return 0.0
    ratio = values[-1] / values[-2]
    return float(np.log(max(ratio, WIPED_OUT_VALUE_RATIO)))


RewardFunction = Callable[[np.ndarray], float]

REWARDS = ("sharpe_delta", "differential_sharpe", "log_return")


def get_reward_function(
    name: str,
    risk_free: float = 0.0,
    sharpe_min_periods: int = 10,
    dsr_eta: float = 0.05,
    dsr_initial_volatility: float = 0.01,
) -> RewardFunction:
    """The reward `name` as a function of the episode's account values V_0..V_{t+1} (`float64` array, currency).

    Args:
        name (`str`): One of `REWARDS`: `sharpe_delta` (paper eq. 3), `differential_sharpe` (Moody & Saffell 2001),
            `log_return`.
        risk_free (`float`, *optional*, defaults to `0.0`): r_f per step in currency, for `sharpe_delta`.
        sharpe_min_periods (`int`, *optional*, defaults to `10`): `sharpe_delta`'s warm-up (see `running_sharpe`).
        dsr_eta (`float`, *optional*, defaults to `0.05`), dsr_initial_volatility (`float`, *optional*, defaults to
            `0.01`): `differential_sharpe`'s adaptation rate and prior volatility.

    Raises:
        `ValueError`: for an unknown name (the message lists the known ones) or a `sharpe_min_periods` below 2.
    """
    if sharpe_min_periods < 2:
        raise ValueError(f"sharpe_min_periods must be >= 2 (a deviation needs two values), got {sharpe_min_periods}.")
    if name == "sharpe_delta":
        return lambda values: sharpe_delta_reward(np.diff(values), risk_free, sharpe_min_periods)
    if name == "differential_sharpe":
        differential_sharpe_ratio([], dsr_eta, dsr_initial_volatility)  # validate the parameters now, not mid-episode
        return lambda values: differential_sharpe_ratio(simple_returns(values), dsr_eta, dsr_initial_volatility)
    if name == "log_return":
        return log_return_reward
    raise ValueError(f"Unknown reward {name!r}; choose one of {list(REWARDS)}.")
