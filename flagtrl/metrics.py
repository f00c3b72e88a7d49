"""Trading metrics under two named conventions.

Every figure a user reads must say which convention produced it, because the two disagree on what a "return" is:

- `paper`: InvestorBench's evaluation code, which FLAG-Trader reports (arXiv 2502.11433, Table 1). Daily *log*
  returns of a +1/0/-1 position, summed for the cumulative return; the Sharpe ratio annualises that sum with 252
  days even for crypto and divides by the volatility annualised with 252 or 365 days.
- `standard`: the textbook one, from the account's equity curve: simple returns, excess over a risk-free rate,
  Sharpe and Sortino annualised with the same number of days. It matches `empyrical` (pyfolio's metrics).

All functions return plain fractions (0.05 is 5 %); only the tables (`flagtrl.metrics_table`) scale to percent.

Degenerate series get explicit values in both conventions (not whatever NumPy's division warns about):
- a single return: the sample volatility (ddof=1) is undefined, so volatility, Sharpe and Sortino are `nan`;
- zero dispersion (every return equal to 12 significant digits, e.g. flat all period): volatility 0.0 and a Sharpe
  ratio of `+inf` or `-inf` by the sign of the mean (excess) return, 0.0 when it is 0. A steady loss is thus ranked
  below every noisy one, and a steady gain above; a Sharpe of 0 would rank a sure loss above a slightly risky one;
- Sortino keeps its own definition, which stays finite for a steady loss (its denominator, the downside deviation, is
  then |mean| > 0, and its value -sqrt(D) in `standard` is the lowest any Sortino ratio can take); with no downside
  at all (no return below the threshold) it is `inf` if the return is positive, else 0.0 (every return 0);
- no drawdown: maximum drawdown 0.0 and Calmar `inf` if the annualised return is positive, else 0.0;
- an annualised return (CAGR) too large for a float (a tenfold gain in a day, annualised over 365 days) is `inf`; it is
  computed in log space, so this happens only when the true value overflows, never as an exception.

A curve the drawdown is measured on never falls below 0, so the maximum drawdown never exceeds 100 % (1.0):
- `standard`: an account can lose more than it holds only by a short position through a price that more than doubles
  in a day. Its value then reaches 0 or below, the account is *wiped out* (`wiped_out=True`), and the series ends that
  day: the metrics see the value 0 (limited liability: the debt beyond the account is not a return), so the
  cumulative and annualised returns are -100 % (-1.0), the maximum drawdown 100 % and Calmar -1.0. The trajectory of a
  backtest keeps the true (negative) account value;
- `paper`: the paper compounds log returns as if they were simple ones, prod(1 + r_i), which goes negative on a day
  whose log return is below -1 (a long position through a fall of more than 1 - 1/e = 63 %, often an unadjusted split,
  or a short through a rise of more than e - 1 = 172 %). Each factor is floored at 0: the curve stays at 0 from that
  day, the maximum drawdown is 100 % and `wiped_out` is set. This is the paper's formula continued past its domain:
  identical wherever every log return is above -1 (the published rows), continuous at -1, and monotone (a larger fall
  never gives a smaller drawdown). Compounding exp(sum r) instead would switch formulas for the whole curve at -1.
  CR, SR, AV and Sortino stay the paper's sums of log returns.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from .sharpe import sharpe_ratio


CONVENTIONS = ("paper", "standard")

CONVENTION_DESCRIPTIONS = {
    "paper": (
        "paper (InvestorBench/FLAG-Trader): log returns of +1/0/-1 positions, CR = sum, AV = std·sqrt(D), "
        "SR = CR/((n+1)/252)/AV; Sortino is a flagtrl extension (the paper reports none)"
    ),
    "standard": (
        "standard: simple returns of the account equity, excess over r_f, Sharpe and Sortino annualised with "
        "D days, MDD of the equity curve"
    ),
}

# InvestorBench's evaluation code (the paper's Table 1 figures): SR turns CR into a yearly figure with 252 days for every asset, crypto included.
PAPER_SHARPE_DAYS_PER_YEAR = 252


@dataclass
class TradingMetrics:
    r"""
    Metrics of one evaluation window, with the convention that produced them.

    Parameters:
        cumulative_return (`float`):
            `paper`: sum of the daily log returns. `standard`: V_n / V_0 - 1.
        sharpe_ratio (`float`):
            `paper`: (CR / ((n+1)/252)) / AV. `standard`: mean(excess) / std(excess) · sqrt(D).
        annualized_volatility (`float`):
            Sample standard deviation (ddof=1) of the daily returns times sqrt(D).
        max_drawdown (`float`):
            Largest peak-to-trough fall of the curve, as a positive fraction (0.2 is a 20 % fall).
        sortino_ratio (`float`):
            Annualised return over the annualised downside deviation sqrt(mean(min(r, 0)²))·sqrt(D).
        convention (`str`):
            `"paper"` or `"standard"`.
        trading_days_per_year (`int`):
            D: 252 for stocks, 365 for crypto.
        num_periods (`int`):
            n, the number of daily returns (one less than the number of prices or equity values).
        annualized_return (`float` or `None`, *optional*, defaults to `None`):
            `standard` only: CAGR, (V_n / V_0)^(D/n) - 1.
        calmar_ratio (`float` or `None`, *optional*, defaults to `None`):
            `standard` only: annualized_return / max_drawdown.
        risk_free_rate (`float` or `None`, *optional*, defaults to `None`):
            `standard` only: the annual risk-free rate the excess returns were taken over.
        wiped_out (`bool`, *optional*, defaults to `False`):
            The run lost everything: `standard`: the equity reached 0 or below and the series ended there; `paper`:
            the compounded curve reached 0 (module docstring). A backtest sets it in both conventions when its
            account was wiped out (`flagtrl.backtest`).
    """

    cumulative_return: float
    sharpe_ratio: float
    annualized_volatility: float
    max_drawdown: float
    sortino_ratio: float
    convention: str
    trading_days_per_year: int
    num_periods: int
    annualized_return: float | None = None
    calmar_ratio: float | None = None
    risk_free_rate: float | None = None
    wiped_out: bool = False

    def to_dict(self) -> dict[str, float | int | str | None]:
        """Returns the fields as a plain `dict` (for JSON reports and loggers)."""
        return asdict(self)


# ----------------------------------------------------------------------------------------------------------------
# Input validation
# ----------------------------------------------------------------------------------------------------------------


def _as_positive_series(values: Sequence[float] | np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"`{name}` must be one-dimensional, got shape {array.shape}.")
    if array.size < 2:
        raise ValueError(f"`{name}` needs at least 2 values (one daily return), got {array.size}.")
    bad = np.flatnonzero(~(np.isfinite(array) & (array > 0)))
    if bad.size:
        index = int(bad[0])
        raise ValueError(f"`{name}` must be finite and positive, but {name}[{index}] = {float(array[index])!r}.")
    return array


def _as_equity_series(equity: Sequence[float] | np.ndarray) -> tuple[np.ndarray, bool]:
    # A wiped-out account (module docstring) is the one non-positive value allowed: V_0 > 0, every value finite, and
    # once a value is <= 0 none after it is positive (a wiped-out account cannot recover). Returns V_0..V_k with the
    # first non-positive V_k set to 0 (the series ends there), and whether that happened.
    array = np.asarray(equity, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"`equity` must be one-dimensional, got shape {array.shape}.")
    if array.size < 2:
        raise ValueError(f"`equity` needs at least 2 values (one daily return), got {array.size}.")
    bad = np.flatnonzero(~np.isfinite(array))
    if bad.size:
        index = int(bad[0])
        raise ValueError(f"`equity` must be finite, but equity[{index}] = {float(array[index])!r}.")
    if not array[0] > 0:
        raise ValueError(f"`equity` must start positive, but equity[0] = {float(array[0])!r}.")
    wiped = np.flatnonzero(array <= 0)
    if not wiped.size:
        return array, False
    first = int(wiped[0])
    recovered = np.flatnonzero(array[first:] > 0)
    if recovered.size:
        later = first + int(recovered[0])
        raise ValueError(
            f"`equity` must be positive, or stay at or below 0 once the account is wiped out, but equity[{first}] = "
            f"{float(array[first])!r} is followed by equity[{later}] = {float(array[later])!r}."
        )
    return np.concatenate([array[:first], [0.0]]), True


def _as_positions(positions: Sequence[float] | np.ndarray, num_prices: int) -> np.ndarray:
    array = np.asarray(positions, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"`positions` must be one-dimensional, got shape {array.shape}.")
    if array.size != num_prices - 1:
        raise ValueError(
            f"`positions` must hold one position per day between prices (a_i is held from p_i to p_i+1): "
            f"len(prices) = {num_prices} needs len(positions) = {num_prices - 1}, got {array.size}."
        )
    bad = np.flatnonzero(~np.isin(array, (-1.0, 0.0, 1.0)))
    if bad.size:
        index = int(bad[0])
        raise ValueError(
            f"`positions` must be -1 (short), 0 (flat) or +1 (long), but positions[{index}] = {float(array[index])!r}."
        )
    return array


def _check_days(trading_days_per_year: int) -> None:
    if not trading_days_per_year > 0:
        raise ValueError(
            "`trading_days_per_year` must be positive (252 for stocks, 365 for crypto), "
            f"got {trading_days_per_year!r}."
        )


# ----------------------------------------------------------------------------------------------------------------
# Building blocks
# ----------------------------------------------------------------------------------------------------------------


def paper_log_returns(prices: Sequence[float] | np.ndarray, positions: Sequence[float] | np.ndarray) -> np.ndarray:
    r"""
    Daily returns of the `paper` convention: r_i = a_i · ln(p_{i+1} / p_i), i = 0..n-1 (InvestorBench's evaluation code).

    Args:
        prices (`Sequence[float]` or `np.ndarray`):
            Prices p_0..p_n of the evaluation window, first and last dates included.
        positions (`Sequence[float]` or `np.ndarray`):
            Positions a_0..a_{n-1} in {+1, 0, -1}; a_i is held from day i to day i+1.

    Returns:
        `np.ndarray`: the n daily log returns.
    """
    prices = _as_positive_series(prices, "prices")
    positions = _as_positions(positions, prices.size)
    return positions * np.log(prices[1:] / prices[:-1])


def simple_returns(equity: Sequence[float] | np.ndarray) -> np.ndarray:
    r"""
    Daily simple returns of an equity curve: r_i = V_{i+1} / V_i - 1.

    Args:
        equity (`Sequence[float]` or `np.ndarray`):
            Account values V_0..V_n, all positive.

    Returns:
        `np.ndarray`: the n daily returns.
    """
    equity = _as_positive_series(equity, "equity")
    return equity[1:] / equity[:-1] - 1.0


def equity_from_positions(
    prices: Sequence[float] | np.ndarray,
    positions: Sequence[float] | np.ndarray,
    initial_value: float = 1.0,
) -> np.ndarray:
    r"""
    Equity curve of an account exposed a_i · 100 % to the asset from day i to i+1, rebalanced daily:
    V_{i+1} = V_i · (1 + a_i · (p_{i+1}/p_i - 1)).

    For positions in {0, +1} this is the all-in / all-out account of FLAG-Trader's MDP (paper §3) with trades filled
    at the day's price; a -1 is a short re-sized every day. It lets positions be scored with the `standard`
    convention.

    Args:
        prices (`Sequence[float]` or `np.ndarray`):
            Prices p_0..p_n.
        positions (`Sequence[float]` or `np.ndarray`):
            Positions a_0..a_{n-1} in {+1, 0, -1}.
        initial_value (`float`, *optional*, defaults to `1.0`):
            V_0.

    Returns:
        `np.ndarray`: V_0..V_n. A short through a price that more than doubles in one day wipes the account out: its
        value is 0 from that day on (a wiped-out account cannot trade again), which the `standard` metrics report as
        `wiped_out`.
    """
    prices = _as_positive_series(prices, "prices")
    positions = _as_positions(positions, prices.size)
    growth = np.maximum(1.0 + positions * (prices[1:] / prices[:-1] - 1.0), 0.0)
    return initial_value * np.concatenate([[1.0], np.cumprod(growth)])


def max_drawdown(curve: Sequence[float] | np.ndarray) -> float:
    r"""
    Largest peak-to-trough fall of a value curve, max_t (peak_t - V_t) / peak_t, as a positive fraction.

    Args:
        curve (`Sequence[float]` or `np.ndarray`):
            Values V_0..V_n, V_0 > 0; the first one counts as a peak, so a fall on the first day is a drawdown.

    Returns:
        `float`: 0.0 for a curve that never falls below its running peak, at most 1.0: a value below 0 counts as 0
        (nothing can lose more than everything).
    """
    curve = np.maximum(np.asarray(curve, dtype=np.float64), 0.0)
    peaks = np.maximum.accumulate(curve)
    return float(np.max((peaks - curve) / peaks))


def _volatility(returns: np.ndarray, trading_days_per_year: int) -> float:
    if returns.size < 2:
        return math.nan
    # Equal returns have zero sample deviation, but rounding leaves a residue (the mean of equal floats, or log
    # returns of a geometric price series that differ in the last bits) and a Sharpe ratio near 1e16. Returns that
    # agree to 12 significant digits count as equal, so the ratios take their documented value (module docstring).
    if np.ptp(returns) <= 1e-12 * np.max(np.abs(returns)):
        return 0.0
    return float(np.std(returns, ddof=1) * math.sqrt(trading_days_per_year))


def _downside_deviation(returns: np.ndarray, trading_days_per_year: int) -> float:
    # Sortino's downside deviation: root mean square of the shortfalls below 0, over *all* periods (not the standard
    # deviation of the negative ones), annualised; the definition empyrical's `downside_risk` uses.
    return float(np.sqrt(np.mean(np.minimum(returns, 0.0) ** 2)) * math.sqrt(trading_days_per_year))


def _sharpe_like(annual_return: float, annual_volatility: float) -> float:
    if math.isnan(annual_volatility):
        return math.nan
    if annual_volatility == 0.0:
        # A sure gain or loss: +-inf by its sign, so it ranks above (below) every risky one (module docstring).
        return math.copysign(math.inf, annual_return) if annual_return != 0.0 else 0.0
    return annual_return / annual_volatility


def _sortino_like(annual_return: float, annual_volatility: float, annual_downside: float) -> float:
    # A single return has no volatility and, for consistency with Sharpe, no Sortino (module docstring).
    if math.isnan(annual_volatility):
        return math.nan
    if annual_downside == 0.0:
        return math.inf if annual_return > 0 else 0.0
    return annual_return / annual_downside


# ----------------------------------------------------------------------------------------------------------------
# The two conventions
# ----------------------------------------------------------------------------------------------------------------


def paper_metrics(
    prices: Sequence[float] | np.ndarray,
    positions: Sequence[float] | np.ndarray,
    trading_days_per_year: int,
) -> TradingMetrics:
    r"""
    Metrics as FLAG-Trader and InvestorBench computed them (arXiv 2502.11433 Table 1; the `paper` convention).

    With r_i = a_i · ln(p_{i+1}/p_i), n returns and D days a year:
    - CR = sum(r)
    - AV = std(r, ddof=1) · sqrt(D)
    - SR = (CR / ((n+1)/252)) / AV: 252 even for crypto, and n+1 is the number of *prices*, as in the paper's code
    - MDD = max drawdown of the curve 1, prod_{j<=i} max(1 + r_j, 0): log returns compounded as if they were simple,
      each factor floored at 0 (module docstring: a log return below -1 takes the curve to 0, MDD 100 %)
    - Sortino (flagtrl's extension; the paper reports none): the SR numerator over the downside deviation
      sqrt(mean(min(r, 0)²)) · sqrt(D)

    Buy-and-hold is `positions = [1] * n`, whose CR is ln(p_n / p_0).

    Args:
        prices (`Sequence[float]` or `np.ndarray`):
            Prices p_0..p_n of the evaluation window, first and last dates included (at least 2).
        positions (`Sequence[float]` or `np.ndarray`):
            Positions a_0..a_{n-1} in {+1, 0, -1} (long / flat / short); a_i is held from day i to day i+1.
        trading_days_per_year (`int`):
            D used for AV and the Sortino denominator: 252 for stocks, 365 for crypto.

    Returns:
        [`TradingMetrics`] with `convention="paper"`, all values as fractions; `wiped_out` when the curve reached 0.
    """
    _check_days(trading_days_per_year)
    returns = paper_log_returns(prices, positions)
    num_periods = returns.size
    cumulative_return = float(np.sum(returns))
    annualized_volatility = _volatility(returns, trading_days_per_year)
    annual_return = cumulative_return / ((num_periods + 1) / PAPER_SHARPE_DAYS_PER_YEAR)
    curve = np.concatenate([[1.0], np.cumprod(np.maximum(1.0 + returns, 0.0))])
    return TradingMetrics(
        cumulative_return=cumulative_return,
        sharpe_ratio=_sharpe_like(annual_return, annualized_volatility),
        annualized_volatility=annualized_volatility,
        max_drawdown=max_drawdown(curve),
        sortino_ratio=_sortino_like(
            annual_return, annualized_volatility, _downside_deviation(returns, trading_days_per_year)
        ),
        convention="paper",
        trading_days_per_year=trading_days_per_year,
        num_periods=num_periods,
        wiped_out=bool(curve[-1] == 0.0),
    )


def standard_metrics(
    equity: Sequence[float] | np.ndarray,
    trading_days_per_year: int,
    risk_free_rate: float = 0.0,
) -> TradingMetrics:
    r"""
    Textbook metrics of an account's equity curve (the `standard` convention); they agree with `empyrical`.

    With r_i = V_{i+1}/V_i - 1, n returns, D days a year and the daily risk-free rate rf_d = (1 + rf)^(1/D) - 1,
    excess e_i = r_i - rf_d:
    - cumulative_return = V_n / V_0 - 1
    - annualized_return = (V_n / V_0)^(D/n) - 1 (CAGR), computed as expm1(ln(V_n / V_0) · D/n): `inf` only when
      the value overflows a float
    - annualized_volatility = std(r, ddof=1) · sqrt(D)
    - sharpe_ratio = mean(e) / std(e, ddof=1) · sqrt(D) (`flagtrl.sharpe.sharpe_ratio`)
    - sortino_ratio = mean(e) · D / (sqrt(mean(min(e, 0)²)) · sqrt(D))
    - max_drawdown = largest (peak - V_t) / peak, positive
    - calmar_ratio = annualized_return / max_drawdown

    A wiped-out account (a value <= 0, module docstring) ends the series that day with V = 0: CR and CAGR -1.0,
    MDD 1.0, `wiped_out=True`, and n counts the days up to the wipe-out.

    Args:
        equity (`Sequence[float]` or `np.ndarray`):
            Account values V_0..V_n (cash plus holdings at market), at least 2, finite, V_0 > 0; values may reach 0 or
            below only at the end, once the account is wiped out.
        trading_days_per_year (`int`):
            D: 252 for stocks, 365 for crypto.
        risk_free_rate (`float`, *optional*, defaults to `0.0`):
            Annual risk-free rate as a fraction (0.02 is 2 %), compounded to a daily rate.

    Returns:
        [`TradingMetrics`] with `convention="standard"`, all values as fractions.
    """
    _check_days(trading_days_per_year)
    if not (math.isfinite(risk_free_rate) and risk_free_rate > -1.0):
        raise ValueError(f"`risk_free_rate` must be a finite annual rate above -1, got {risk_free_rate!r}.")
    equity, wiped_out = _as_equity_series(equity)
    with np.errstate(over="ignore"):  # a ratio beyond the float range is inf, as documented
        returns = equity[1:] / equity[:-1] - 1.0
    num_periods = returns.size
    excess = returns - ((1.0 + risk_free_rate) ** (1.0 / trading_days_per_year) - 1.0)

    # In log space: (V_n / V_0)^(D/n) overflows a float (OverflowError) for a tenfold gain annualised over a year of
    # single days, although its logarithm is small. A wiped-out account has ln 0 = -inf and a CAGR of -1.
    log_growth = math.log(equity[-1]) - math.log(equity[0]) if equity[-1] > 0 else -math.inf
    with np.errstate(over="ignore"):
        cumulative_return = float(equity[-1] / equity[0]) - 1.0
    annualized_return = _expm1_or_inf(log_growth * trading_days_per_year / num_periods)
    drawdown = max_drawdown(equity)
    if drawdown == 0.0:
        calmar_ratio = math.inf if annualized_return > 0 else 0.0
    else:
        calmar_ratio = annualized_return / drawdown

    excess_volatility = _volatility(excess, trading_days_per_year)
    annual_excess = float(np.mean(excess)) * trading_days_per_year
    return TradingMetrics(
        cumulative_return=cumulative_return,
        sharpe_ratio=sharpe_ratio(excess, periods_per_year=trading_days_per_year),
        annualized_volatility=_volatility(returns, trading_days_per_year),
        max_drawdown=drawdown,
        sortino_ratio=_sortino_like(
            annual_excess, excess_volatility, _downside_deviation(excess, trading_days_per_year)
        ),
        convention="standard",
        trading_days_per_year=trading_days_per_year,
        num_periods=num_periods,
        annualized_return=annualized_return,
        calmar_ratio=calmar_ratio,
        risk_free_rate=risk_free_rate,
        wiped_out=wiped_out,
    )


def _expm1_or_inf(exponent: float) -> float:
    try:
        return math.expm1(exponent)
    except OverflowError:  # the true value exceeds the largest float
        return math.inf


def check_convention(convention: str) -> None:
    """Raise a `ValueError` naming the valid conventions unless `convention` is one of `CONVENTIONS`."""
    if convention not in CONVENTIONS:
        raise ValueError(f"Unknown metrics convention {convention!r}; valid conventions are {', '.join(CONVENTIONS)}.")


def compute_metrics(
    convention: str,
    *,
    trading_days_per_year: int,
    prices: Sequence[float] | np.ndarray | None = None,
    positions: Sequence[float] | np.ndarray | None = None,
    equity: Sequence[float] | np.ndarray | None = None,
    risk_free_rate: float = 0.0,
) -> TradingMetrics:
    r"""
    Computes the metrics of one window under a named convention.

    Args:
        convention (`str`):
            `"paper"` (needs `prices` and `positions`) or `"standard"` (needs `equity`).
        trading_days_per_year (`int`):
            252 for stocks, 365 for crypto.
        prices (`Sequence[float]`, *optional*):
            `paper` only: p_0..p_n.
        positions (`Sequence[float]`, *optional*):
            `paper` only: a_0..a_{n-1} in {+1, 0, -1}.
        equity (`Sequence[float]`, *optional*):
            `standard` only: V_0..V_n.
        risk_free_rate (`float`, *optional*, defaults to `0.0`):
            `standard` only: annual risk-free rate. The paper convention has none, so a non-zero value is an error
            there rather than silently ignored.

    Returns:
        [`TradingMetrics`].
    """
    check_convention(convention)
    if convention == "paper":
        if prices is None or positions is None:
            raise ValueError("The 'paper' convention needs `prices` and `positions`.")
        if equity is not None:
            raise ValueError("The 'paper' convention works from `prices` and `positions`; `equity` is for 'standard'.")
        if risk_free_rate != 0.0:
            raise ValueError("The 'paper' convention has no risk-free rate; pass `risk_free_rate` only to 'standard'.")
        return paper_metrics(prices, positions, trading_days_per_year)
    if equity is None:
        raise ValueError(
            "The 'standard' convention needs `equity`; build it from positions with `equity_from_positions`."
        )
    if prices is not None or positions is not None:
        raise ValueError("The 'standard' convention works from `equity`; `prices` and `positions` are for 'paper'.")
    return standard_metrics(equity, trading_days_per_year, risk_free_rate)
