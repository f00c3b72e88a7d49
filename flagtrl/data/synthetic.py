"""Seeded synthetic markets: regime-switching prices with news that forecasts the next day's move.

Prices follow a hidden Markov chain of regimes (bull, bear, sideways), each with its own drift and volatility of
daily log returns; a regime persists from one day to the next with probability `regime_persistence`. Crypto assets
trade every calendar day with `crypto_volatility_scale` times the volatility; stocks trade on weekdays.

The text carries information, so that an agent that reads it can beat chance:

- **news**: on each day `t` one forecast line about the *next* trading day, published on day `t` (no look-ahead: a
  prompt built on day `t` may show it). Its sentiment matches the sign of the return from `t` to `t + 1` with
  probability `news_accuracy`. Lines end in `(Sentiment: positive|negative)`, as InvestorBench's do.
- **filings**: every `filing_every` trading days a `10-Q: ` line that truthfully describes the current regime.

The same seed gives the same data; each asset's series depends only on the seed and its ticker, not on which other
assets are generated with it.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import pandas as pd
from datasets import DatasetDict

from flagtrl.data.builder import DatasetCardInfo, Windows, build_market_dataset
from flagtrl.data.schema import DEFAULT_WINDOWS


@dataclass(frozen=True)
class Regime:
    """A market regime: mean and standard deviation of the daily log return, and how a filing describes it."""

    name: str
    drift: float
    volatility: float
    outlook: str


REGIMES = (
    Regime("bull", 0.0012, 0.012, "strong quarterly results; management raises its guidance"),
    Regime("bear", -0.0012, 0.020, "weak quarterly results; management cuts its guidance"),
    Regime("sideways", 0.0, 0.008, "flat quarterly results; management keeps its guidance"),
)
DEFAULT_SYNTHETIC_ASSETS = {"SYNA": "stock", "SYNB": "stock", "SYNC": "crypto"}

_POSITIVE_NEWS = (
    "{asset}: analysts expect gains in the next session",
    "{asset}: order flow points to a higher close tomorrow",
    "{asset}: buyers are lining up, traders say",
)
_NEGATIVE_NEWS = (
    "{asset}: analysts expect losses in the next session",
    "{asset}: order flow points to a lower close tomorrow",
    "{asset}: sellers are lining up, traders say",
)


def _calendar(asset_class: str, windows: Windows, history_days: int) -> pd.DatetimeIndex:
    """Trading days from `history_days` before the class's first window to the end of its last window."""
    starts = [start for start, _ in windows[asset_class].values()]
    ends = [end for _, end in windows[asset_class].values()]
    first = pd.Timestamp(min(starts)) - pd.Timedelta(days=history_days)
    last = pd.Timestamp(max(ends))
    return pd.date_range(first, last, freq="D") if asset_class == "crypto" else pd.bdate_range(first, last)


def _regime_path(rng: np.random.Generator, days: int, regimes: int, persistence: float) -> np.ndarray:
    path = np.empty(days, dtype=int)
    path[0] = rng.integers(regimes)
    for t in range(1, days):
        if rng.random() < persistence or regimes == 1:
            path[t] = path[t - 1]
        else:  # switch to one of the other regimes, uniformly
            path[t] = (path[t - 1] + rng.integers(1, regimes)) % regimes
    return path


def synthetic_asset_frame(
    asset: str,
    asset_class: str = "stock",
    seed: int = 0,
    windows: Windows = DEFAULT_WINDOWS,
    history_days: int = 120,
    regimes: tuple[Regime, ...] = REGIMES,
    regime_persistence: float = 0.97,
    crypto_volatility_scale: float = 2.5,
    news_accuracy: float | None = 0.7,
    filing_every: int | None = 63,
    initial_price: float = 100.0,
) -> pd.DataFrame:
    """One synthetic asset's rows (see the module docstring; arguments as in `synthetic_market_frame`)."""
    if news_accuracy is not None and not 0.0 <= news_accuracy <= 1.0:
        raise ValueError(f"news_accuracy is {news_accuracy}; it must lie in [0, 1].")
    rng = np.random.default_rng([seed, zlib.crc32(asset.encode())])
    dates = _calendar(asset_class, windows, history_days)
    days = len(dates)
    # One return more than there are days: the last day's news forecasts a move that the data never show.
    path = _regime_path(rng, days + 1, len(regimes), regime_persistence)
    scale = crypto_volatility_scale if asset_class == "crypto" else 1.0
    drift = np.array([regimes[i].drift for i in path])
    volatility = np.array([regimes[i].volatility for i in path]) * scale
    log_returns = drift + volatility * rng.standard_normal(days + 1)
    close = initial_price * np.exp(np.cumsum(log_returns[:days]))

    gap = np.exp(0.2 * volatility[:days] * rng.standard_normal(days))
    open_ = np.concatenate([[initial_price], close[:-1]]) * gap
    high = np.maximum(open_, close) * np.exp(np.abs(0.5 * volatility[:days] * rng.standard_normal(days)))
    low = np.minimum(open_, close) * np.exp(-np.abs(0.5 * volatility[:days] * rng.standard_normal(days)))
    volume = np.round(rng.lognormal(13.0, 0.3, days) * (1.0 + 20.0 * np.abs(log_returns[:days])))

    news: list[list[str]] = [[] for _ in range(days)]
    if news_accuracy is not None:
        truthful = rng.random(days) < news_accuracy
        templates = rng.integers(len(_POSITIVE_NEWS), size=days)
        for t in range(days):
            rises = log_returns[t + 1] > 0
            positive = rises if truthful[t] else not rises
            text = (_POSITIVE_NEWS if positive else _NEGATIVE_NEWS)[templates[t]].format(asset=asset)
            news[t] = [f"{text} (Sentiment: {'positive' if positive else 'negative'})"]
    filings: list[list[str]] = [[] for _ in range(days)]
    if filing_every:
        for t in range(filing_every - 1, days, filing_every):
            filings[t] = [f"10-Q: {asset} reports {regimes[path[t]].outlook}."]

    return pd.DataFrame(
        {
            "date": dates.strftime("%Y-%m-%d"),
            "asset": asset,
            "asset_class": asset_class,
            "close": close,
            "open": open_,
            "high": high,
            "low": low,
            "volume": volume,
            "news": news,
            "filings": filings,
        }
    )


def synthetic_market_frame(
    assets: dict[str, str] | None = None,
    seed: int = 0,
    windows: Windows = DEFAULT_WINDOWS,
    history_days: int = 120,
    regimes: tuple[Regime, ...] = REGIMES,
    regime_persistence: float = 0.97,
    crypto_volatility_scale: float = 2.5,
    news_accuracy: float | None = 0.7,
    filing_every: int | None = 63,
    initial_price: float = 100.0,
) -> pd.DataFrame:
    """Rows of synthetic assets in the market-episode schema, covering each asset class's windows.

    Args:
        assets (`dict[str, str]`, *optional*):
            Ticker → asset class; defaults to two stocks and one crypto asset (`SYNA`, `SYNB`, `SYNC`).
        seed (`int`, *optional*, defaults to `0`):
            Random seed; the same seed gives the same rows.
        windows (`dict`, *optional*, defaults to `DEFAULT_WINDOWS`):
            The windows the data must cover: each class's series runs from `history_days` before its first window
            to the end of its last.
        history_days (`int`, *optional*, defaults to `120`):
            Calendar days of history before the first window (for look-back in prompts).
        regimes (`tuple[Regime, ...]`, *optional*, defaults to `REGIMES`):
            The regimes of the hidden Markov chain.
        regime_persistence (`float`, *optional*, defaults to `0.97`):
            Probability that a regime lasts another day (mean regime length 1 / (1 - p) days).
        crypto_volatility_scale (`float`, *optional*, defaults to `2.5`):
            Volatility multiplier for crypto assets.
        news_accuracy (`float` or `None`, *optional*, defaults to `0.7`):
            Probability that a day's news sentiment matches the sign of the next day's return (0.5: no information).
            `None`: no news.
        filing_every (`int` or `None`, *optional*, defaults to `63`):
            Trading days between two filings (about a quarter for stocks); `None`: no filings.
        initial_price (`float`, *optional*, defaults to `100.0`):
            Price level before the first day.

    Returns:
        `pandas.DataFrame`: One row per asset and trading day, with every schema column.

    Raises:
        `ValueError`: for an asset class without windows, or a `news_accuracy`
            outside [0, 1].
    """
    assets = DEFAULT_SYNTHETIC_ASSETS if assets is None else assets
    for asset, asset_class in assets.items():
        if asset_class not in windows:
            raise ValueError(
                f"Asset {asset} has the class {asset_class!r}; expected one of {list(windows)} (the classes with windows)."
            )
    if news_accuracy is not None and not 0 <= news_accuracy <= 1:
        raise ValueError(f"news_accuracy is {news_accuracy}; it is a probability, between 0 and 1.")
    frames = [
        synthetic_asset_frame(
            asset.upper(),
            asset_class,
            seed=seed,
            windows=windows,
            history_days=history_days,
            regimes=regimes,
            regime_persistence=regime_persistence,
            crypto_volatility_scale=crypto_volatility_scale,
            news_accuracy=news_accuracy,
            filing_every=filing_every,
            initial_price=initial_price,
        )
        for asset, asset_class in assets.items()
    ]
    return pd.concat(frames, ignore_index=True)


def make_synthetic_dataset(
    assets: dict[str, str] | None = None,
    seed: int = 0,
    windows: Windows = DEFAULT_WINDOWS,
    min_window_days: int = 2,
    **kwargs,
) -> DatasetDict:
    """A synthetic market-episode `DatasetDict` (splits `full`, `train`, `test`); keyword arguments as in
    `synthetic_market_frame`."""
    rows = synthetic_market_frame(assets, seed=seed, windows=windows, **kwargs)
    return build_market_dataset(rows, windows, min_window_days=min_window_days, source=f"synthetic(seed={seed})")


def synthetic_card(seed: int, news_accuracy: float | None = 0.7) -> DatasetCardInfo:
    news = (
        f"News forecast the next day's move correctly with probability {news_accuracy}."
        if news_accuracy is not None
        else "No news."
    )
    return DatasetCardInfo(
        pretty_name=f"Synthetic regime-switching market (seed {seed})",
        license="cc0-1.0",
        source=f"generated by `flagtrl.data.synthetic` with seed {seed}",
        description=(
            "Synthetic prices from a hidden Markov chain of bull, bear and sideways regimes. "
            + news
            + " Quarterly 10-Q lines describe the current regime. For tests and for checking that an agent can learn "
            "from text at all; not market data."
        ),
        tags=["synthetic"],
    )
