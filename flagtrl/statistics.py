"""How sure a backtest result is: pure functions on daily returns, each tested against hand-computed or library values.

- `sharpe_difference_ci`: the Sharpe ratio of one return series minus another's over the *same days* (an agent against
  buy-and-hold, or one agent on real against anonymised inputs), with a confidence interval from `arch`'s stationary
  block bootstrap (Politis & Romano 1994): both series are resampled with the same blocks of days, which keeps their
  correlation (a trading agent and buy-and-hold share every day's market move) and the short-range dependence of
  daily returns;
- `probabilistic_sharpe_ratio`: Bailey & López de Prado (2012), the probability that the true Sharpe ratio exceeds a
  benchmark given the sample's length, skewness and kurtosis;
- `paper_sharpe`: the `paper` convention's Sharpe ratio (InvestorBench's) from daily log returns;
- `composite_scores`: StockBench's composite (arXiv 2510.02209): the mean of the z-scores of cumulative return, maximum
  drawdown (negated: smaller is better) and Sortino ratio across the agents compared;
- `median_ci`: median, quartiles and win rate of many Sharpe differences (the rolling benchmark), with a bootstrap
  interval of the median that resamples whole clusters (windows), since assets in one window share its market.

`arch` is imported on first use (about 3 s; statsmodels comes with it).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from .sharpe import sharpe_ratio


# Bailey & López de Prado's benchmark Sharpe ratio: "is it better than nothing?".
DEFAULT_BENCHMARK_SHARPE = 0.0
# Resamples of a bootstrap interval: 2,000 keeps the Monte Carlo error of a 95 % percentile bound near 1 % of the
# interval's width, at ~0.1 s per interval.
DEFAULT_RESAMPLES = 2000
# InvestorBench's Sharpe ratio annualises the cumulative log return with 252 days for every asset (`flagtrl.metrics`).
PAPER_SHARPE_DAYS = 252


@dataclass
class SharpeDifference:
    """A Sharpe-ratio difference and its bootstrap confidence interval.

    Args:
        difference (`float`): Sharpe(a) - Sharpe(b) on the observed returns.
        low (`float`), high (`float`): The percentile interval of the resampled differences.
        confidence (`float`): Coverage of the interval, e.g. 0.95.
        block_length (`float`): Expected block length of the stationary bootstrap, in days.
        num_resamples (`int`): Resamples drawn; `finite_resamples` of them had a finite difference (a resample of
            identical returns has an infinite Sharpe ratio and is left out).
        finite_resamples (`int`): See above.
    """

    difference: float
    low: float
    high: float
    confidence: float
    block_length: float
    num_resamples: int
    finite_resamples: int

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def excludes_zero(self) -> bool:
        """Whether the interval lies entirely above or below 0 (the difference is significant at its level)."""
        return self.low > 0 or self.high < 0


def _as_returns(values: Sequence[float] | np.ndarray, name: str, min_length: int = 2) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"`{name}` must be one-dimensional, got shape {array.shape}.")
    if array.size < min_length:
        raise ValueError(f"`{name}` needs at least {min_length} daily returns, got {array.size}.")
    bad = np.flatnonzero(~np.isfinite(array))
    if bad.size:
        raise ValueError(f"`{name}` must be finite, but {name}[{int(bad[0])}] = {float(array[bad[0]])!r}.")
    return array


def paper_sharpe(log_returns: Sequence[float] | np.ndarray, trading_days_per_year: int) -> float:
    """The `paper` convention's Sharpe ratio, (CR / ((n+1)/252)) / (std(r, ddof=1) · sqrt(D)), from its n daily log
    returns: `sharpe_ratio(r, D)` times n·252 / ((n+1)·D), the same degenerate values (`flagtrl.sharpe`)."""
    returns = np.asarray(log_returns, dtype=np.float64)
    n = returns.size
    return (
        sharpe_ratio(returns, periods_per_year=trading_days_per_year)
        * n
        * PAPER_SHARPE_DAYS
        / ((n + 1) * trading_days_per_year)
    )


def annualised_sharpe(periods_per_year: int | float) -> Callable[[np.ndarray], float]:
    """The textbook Sharpe ratio annualised with `periods_per_year` (`flagtrl.sharpe.sharpe_ratio`) as a function."""
    return lambda returns: sharpe_ratio(returns, periods_per_year=periods_per_year)


def default_block_length(returns_a: np.ndarray, returns_b: np.ndarray) -> float:
    """Politis & White's (2004, corrected 2009) optimal expected block length of a stationary bootstrap, the larger of
    the two series' (`arch.bootstrap.optimal_block_length`), at least 1 day. A constant series (a flat agent) or one too short for the estimator has no
    estimate and counts as 1."""
    from arch.bootstrap import optimal_block_length

    lengths = []
    for series in (returns_a, returns_b):
        if np.ptp(series) > 0:
            try:
                with np.errstate(all="ignore"):
                    value = float(optimal_block_length(series)["stationary"].iloc[0])
            except ValueError:  # too short for the estimator's autocorrelations (a few days)
                continue
            if math.isfinite(value):
                lengths.append(value)
    return max([1.0, *lengths])


def sharpe_difference_ci(
    returns_a: Sequence[float] | np.ndarray,
    returns_b: Sequence[float] | np.ndarray,
    periods_per_year: int | float = 252,
    confidence: float = 0.95,
    num_resamples: int = DEFAULT_RESAMPLES,
    block_length: float | None = None,
    seed: int = 0,
    sharpe: Callable[[np.ndarray], float] | None = None,
) -> SharpeDifference:
    """Sharpe(a) - Sharpe(b) with a stationary-block-bootstrap percentile interval, the two series resampled together.

    Args:
        returns_a (`Sequence[float]` or `np.ndarray`), returns_b (`Sequence[float]` or `np.ndarray`): Daily returns
            of the same days (e.g. an agent's and buy-and-hold's), in any units `sharpe` accepts.
        periods_per_year (`int` or `float`, *optional*, defaults to `252`): D of the annualised Sharpe ratio
            (ignored when `sharpe` is given).
        confidence (`float`, *optional*, defaults to `0.95`): Coverage of the interval.
        num_resamples (`int`, *optional*, defaults to `2000`): Bootstrap resamples.
        block_length (`float`, *optional*): Expected block length in days; Politis & White's estimate when `None`
            (`default_block_length`).
        seed (`int`, *optional*, defaults to `0`): Seed of the resampling (the same seed gives the same interval).
        sharpe (`Callable[[np.ndarray], float]`, *optional*): The Sharpe ratio of a return series; the annualised
            textbook one (`flagtrl.sharpe.sharpe_ratio`) by default, `lambda r: paper_sharpe(r, D)` for the `paper`
            convention.

    Returns:
        `SharpeDifference`: the observed difference and the interval (`nan` bounds when fewer than half the resamples
        give a finite difference).

    Raises:
        `ValueError`: for series of different lengths, shorter than 3 days, with non-finite values, or bad settings.
    """
    from arch.bootstrap import StationaryBootstrap

    a, b = _as_returns(returns_a, "returns_a", 3), _as_returns(returns_b, "returns_b", 3)
    if a.size != b.size:
        raise ValueError(
            f"`returns_a` and `returns_b` must cover the same days (paired resampling), got {a.size} and {b.size}."
        )
    if not 0 < confidence < 1:
        raise ValueError(f"`confidence` must lie between 0 and 1, got {confidence!r}.")
    if num_resamples < 10:
        raise ValueError(f"`num_resamples` must be at least 10, got {num_resamples!r}.")
    if block_length is not None and not block_length >= 1:
        raise ValueError(f"`block_length` must be at least 1 day, got {block_length!r}.")
    sharpe = sharpe or annualised_sharpe(periods_per_year)
    block = default_block_length(a, b) if block_length is None else float(block_length)

    bootstrap = StationaryBootstrap(block, a, b, seed=np.random.default_rng(seed))
    with np.errstate(all="ignore"):
        resampled = np.array([sharpe(ra) - sharpe(rb) for (ra, rb), _ in bootstrap.bootstrap(num_resamples)])
        difference = float(sharpe(a) - sharpe(b))
    finite = resampled[np.isfinite(resampled)]
    alpha = (1.0 - confidence) / 2.0
    if finite.size >= num_resamples / 2:
        low, high = (float(v) for v in np.percentile(finite, [100 * alpha, 100 * (1 - alpha)]))
    else:
        low = high = math.nan
    return SharpeDifference(difference, low, high, confidence, block, num_resamples, int(finite.size))


def probabilistic_sharpe_ratio(
    returns: Sequence[float] | np.ndarray, benchmark_sharpe: float = DEFAULT_BENCHMARK_SHARPE
) -> float:
    """Bailey & López de Prado's probabilistic Sharpe ratio (J. Risk 15(2), 2012, eq. 11):

        PSR(SR*) = Φ( (SR - SR*) · sqrt(n - 1) / sqrt(1 - γ3 · SR + (γ4 - 1) / 4 · SR²) )

    with SR the *per-period* (not annualised) Sharpe ratio of the n returns, γ3 their skewness and γ4 their kurtosis
    (3 for a normal distribution; both the population moments the paper uses, `scipy.stats.skew` / `kurtosis` with
    `bias=True`).

    Args:
        returns (`Sequence[float]` or `np.ndarray`): Per-period (daily) returns, excess over the risk-free rate when
            there is one.
        benchmark_sharpe (`float`, *optional*, defaults to `0.0`): SR*, per period (an annual 1.0 is 1/sqrt(252)
            a day).

    Returns:
        `float`: a probability; 1.0 or 0.0 for returns that do not vary (a sure gain or loss; 0.5 at SR = SR*), `nan`
        when the variance term under the root is not positive (extreme skewness).

    Raises:
        `ValueError`: for fewer than 3 returns or non-finite values.
    """
    from scipy import stats

    r = _as_returns(returns, "returns", 3)
    per_period = sharpe_ratio(r)
    if math.isinf(per_period) or np.ptp(r) == 0:
        if per_period == benchmark_sharpe:
            return 0.5
        return 1.0 if per_period > benchmark_sharpe else 0.0
    skewness = float(stats.skew(r, bias=True))
    kurtosis = float(stats.kurtosis(r, fisher=False, bias=True))
    variance = 1.0 - skewness * per_period + (kurtosis - 1.0) / 4.0 * per_period**2
    if not variance > 0:
        return math.nan
    return float(stats.norm.cdf((per_period - benchmark_sharpe) * math.sqrt(r.size - 1) / math.sqrt(variance)))


def _z_scores(values: np.ndarray) -> np.ndarray:
    # An infinite value (a Sortino ratio with no downside) counts as one spread of the finite values beyond the most
    # extreme one of its sign, so that it ranks first (last) without turning every other z-score into 0 or nan; a NaN
    # counts as the median.
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return np.zeros_like(values)
    step = float(np.ptp(finite)) or 1.0
    filled = np.where(np.isnan(values), float(np.median(finite)), values)
    filled = np.where(filled == np.inf, finite.max() + step, np.where(filled == -np.inf, finite.min() - step, filled))
    spread = filled.std()
    return np.zeros_like(values) if spread == 0 else (filled - filled.mean()) / spread


def composite_scores(
    cumulative_returns: Sequence[float], max_drawdowns: Sequence[float], sortino_ratios: Sequence[float]
) -> np.ndarray:
    """StockBench's composite score of the agents compared on one asset and window: the mean of the z-scores (population
    standard deviation) of cumulative return, of the negated maximum drawdown and of the Sortino ratio. Higher is
    better; `composite_ranks` turns it into ranks.

    A metric on which every agent ties contributes 0; an infinite value counts as one spread (max - min of the finite
    values) beyond the group's extreme finite value, a NaN as its median.

    Raises:
        `ValueError`: when the three sequences differ in length or are empty.
    """
    values = [np.asarray(v, dtype=np.float64) for v in (cumulative_returns, max_drawdowns, sortino_ratios)]
    if len({v.size for v in values}) != 1 or values[0].size == 0:
        raise ValueError(
            "composite_scores needs one cumulative return, maximum drawdown and Sortino ratio per agent, got "
            f"{[v.size for v in values]}."
        )
    cr, mdd, sortino = values
    return (_z_scores(cr) + _z_scores(-mdd) + _z_scores(sortino)) / 3.0


def composite_ranks(scores: Sequence[float]) -> list[int]:
    """1 for the highest composite score; ties share the better rank ("1, 1, 3")."""
    scores = [float(s) for s in scores]
    return [1 + sum(other > score for other in scores) for score in scores]


@dataclass
class DifferenceDistribution:
    """Sharpe differences over many (asset, window) cells, as the rolling benchmark reports them.

    Args:
        cells (`int`): Differences summarised; `windows`: distinct windows among them.
        median (`float`), q1 (`float`), q3 (`float`): Median and quartiles.
        mean (`float`): Mean.
        win_rate (`float`): Share of cells with a positive difference (the agent's Sharpe above the benchmark's).
        median_low (`float`), median_high (`float`): Percentile interval of the median from resampling whole windows.
        confidence (`float`): Coverage of that interval.
    """

    cells: int
    windows: int
    median: float
    q1: float
    q3: float
    mean: float
    win_rate: float
    median_low: float
    median_high: float
    confidence: float

    def to_dict(self) -> dict:
        return asdict(self)


def median_ci(
    differences: Sequence[float],
    clusters: Sequence,
    confidence: float = 0.95,
    num_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> DifferenceDistribution:
    """Summarise many Sharpe differences and bound their median by a cluster bootstrap (`arch`'s `IIDBootstrap` over
    the clusters: whole windows are drawn with replacement, each bringing all its cells).

    Args:
        differences (`Sequence[float]`): One difference per cell; non-finite ones are left out.
        clusters (`Sequence`): The cluster (e.g. the window) of each cell; cells of one window share its market, so
            they are resampled together.
        confidence (`float`, *optional*, defaults to `0.95`), num_resamples (`int`, *optional*, defaults to `2000`),
            seed (`int`, *optional*, defaults to `0`): As in `sharpe_difference_ci`.

    Raises:
        `ValueError`: when the lengths differ or no finite difference is left.
    """
    from arch.bootstrap import IIDBootstrap

    values = np.asarray(differences, dtype=np.float64)
    labels = list(clusters)
    if values.size != len(labels):
        raise ValueError(f"median_ci needs one cluster per difference, got {values.size} and {len(labels)}.")
    keep = np.isfinite(values)
    values, labels = values[keep], [c for c, k in zip(labels, keep) if k]
    if values.size == 0:
        raise ValueError("median_ci: no finite Sharpe difference to summarise.")
    names = sorted(set(labels), key=str)
    groups = [values[[i for i, c in enumerate(labels) if c == name]] for name in names]
    alpha = (1.0 - confidence) / 2.0
    if len(groups) > 1:
        bootstrap = IIDBootstrap(np.arange(len(groups)), seed=np.random.default_rng(seed))
        medians = [
            float(np.median(np.concatenate([groups[i] for i in picked])))
            for (picked,), _ in bootstrap.bootstrap(num_resamples)
        ]
        low, high = (float(v) for v in np.percentile(medians, [100 * alpha, 100 * (1 - alpha)]))
    else:
        low = high = math.nan
    q1, median, q3 = (float(v) for v in np.percentile(values, [25, 50, 75]))
    return DifferenceDistribution(
        cells=int(values.size),
        windows=len(groups),
        median=median,
        q1=q1,
        q3=q3,
        mean=float(values.mean()),
        win_rate=float(np.mean(values > 0)),
        median_low=low,
        median_high=high,
        confidence=confidence,
    )
