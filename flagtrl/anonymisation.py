"""Anonymised inputs: the `TradingState` an LLM sees with what it could have memorised hidden.

An LLM evaluated on a window its training data cover may recall how that market went (every window of the paper's
setting predates SmolLM2). Studies that mask tickers, company names and dates (arXiv 2309.17322, 2603.17692,
2605.28359) measure how much of an agent's result is memory: run it on real and on anonymised inputs and compare.
`anonymise_state` hides, in the state the prompt is rendered from:

- **the asset**: its ticker becomes `ASSET`; in the news and filings its ticker and names (the company, its main
  brands and leaders, `KNOWN_NAMES`, plus any `aliases`) become `ASSET`, and the other known companies' become
  `OTHER`;
- **the calendar**: the price history's dates become day offsets (`day -9` ... `day 0`, today); dates, months with a
  day or year, years, quarters and fiscal years in the text become `[date]`, `[year]`, `[quarter]`;
- **the price level**: the shown closes are rebased to 100 on the first day shown (the account's share count is
  rescaled with them, so that shares x price is still the position's value); currency amounts in the text (`$214.3`,
  `$1.5 billion`, `20k`) and any number within a factor of `PRICE_LEVEL_FACTOR` of the day's real close become
  `[amount]`.

The account (cash, value, rewards) is in the account's own currency units and starts from the configured initial cash,
so it says nothing about the asset. What survives: the asset class (stock or crypto), unknown companies' names, and
the events themselves (a pandemic, an acquisition) — a model that recognises an event can still date it. The anchor
of the rebasing is the first *shown* day, so a prompt depends only on (asset, date), as the trunk cache requires.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Mapping, Sequence

import numpy as np

from .state import TradingState


ANONYMOUS_ASSET = "ASSET"
OTHER_COMPANY = "OTHER"
DATE_LABEL, YEAR_LABEL, QUARTER_LABEL, AMOUNT_LABEL = "[date]", "[year]", "[quarter]", "[amount]"
REBASE_LEVEL = 100.0
# A number in the text within this factor of the day's real close may be a price level (a target, a close): hidden.
PRICE_LEVEL_FACTOR = 2.0
ANONYMISED_NOTE = (
    "The asset's name, the calendar and the price level are hidden: ASSET is the asset, OTHER any other company, "
    f"prices are rebased to {REBASE_LEVEL:g} on the first day shown, and days are counted from today (day 0)."
)

# Names that identify the assets whose data ship with flagtrl's recipes (InvestorBench's and skfolio's): the company,
# its main brands and its leaders. Names are matched whole-word and case-insensitively; tickers case-sensitively (so
# that "ge", "hd" or "ko" in ordinary text are left alone), except where a lower-case ticker is itself a name (btc).
KNOWN_NAMES: dict[str, tuple[str, ...]] = {
    "AAPL": ("Apple", "iPhone", "iPad", "Tim Cook"),
    "AMD": ("Advanced Micro Devices", "Lisa Su"),
    "BAC": ("Bank of America", "BofA"),
    "BBY": ("Best Buy",),
    "BTC": ("Bitcoin", "btc", "XBT"),
    "CVX": ("Chevron",),
    "ETH": ("Ethereum", "Ether", "eth", "Vitalik Buterin"),
    "GE": ("General Electric",),
    "HD": ("Home Depot",),
    "HON": ("Honeywell", "Darius Adamczyk"),
    "JNJ": ("Johnson & Johnson", "Johnson and Johnson", "J&J", "Janssen", "Tylenol", "Neutrogena", "Alex Gorsky"),
    "JPM": ("JPMorgan", "JP Morgan", "J.P. Morgan", "JPMorgan Chase", "Jamie Dimon"),
    "KO": ("Coca-Cola", "Coca Cola", "Coke"),
    "LLY": ("Eli Lilly", "Lilly"),
    "MRK": ("Merck",),
    "MSFT": ("Microsoft", "Azure", "Xbox", "LinkedIn", "GitHub", "Satya Nadella", "Nadella", "Bill Gates"),
    "NFLX": ("Netflix", "Reed Hastings", "Ted Sarandos"),
    "PEP": ("PepsiCo", "Pepsi"),
    "PFE": ("Pfizer",),
    "PG": ("Procter & Gamble", "Procter and Gamble", "P&G"),
    "RRC": ("Range Resources",),
    "TSLA": ("Tesla", "Elon Musk"),
    "UNH": ("UnitedHealth", "United Health"),
    "UVV": ("Universal Corporation", "Universal Corp", "Universal Leaf"),
    "WMT": ("Walmart", "Wal-Mart"),
    "XOM": ("ExxonMobil", "Exxon Mobil", "Exxon", "Mobil"),
}

_MONTHS = "january|february|april|june|july|august|september|october|november|december"
_SHORT_MONTHS = r"jan|feb|mar|apr|jun|jul|aug|sep|sept|oct|nov|dec"
_DAY = r"\d{1,2}(?:st|nd|rd|th)?(?:\s*[-–]\s*\d{1,2}(?:st|nd|rd|th)?)?"
_DATE_PATTERNS = [
    re.compile(r"\b\d{4}-\d{1,2}-\d{1,2}\b"),
    re.compile(r"\b\d{1,2}[/.]\d{1,2}[/.]\d{2,4}\b"),
    # A full month name (not "may" or "march", ordinary words in lower case), with its day and year when given.
    re.compile(rf"\b(?:{_MONTHS})\b(?:\s+{_DAY}\b)?(?:,?\s+\d{{4}}\b)?", re.I),
    re.compile(rf"\b(?:March|May)\b(?:\s+{_DAY}\b)?(?:,?\s+\d{{4}}\b)?"),
    # "march 12", "Mar. 2020", "may 5th": a month word followed by a day or a year.
    re.compile(rf"\b(?:march|may|{_SHORT_MONTHS})\.?\s+(?:{_DAY}\b(?:,?\s+\d{{4}}\b)?|\d{{4}}\b)", re.I),
]
_QUARTER = re.compile(r"\b(?:[1-4]Q\s?'?\d{2}|Q[1-4]\s*(?:FY\s*)?'?\d{2,4}|FY\s*'?\d{2,4}|H[12]\s*'?\d{2,4})\b", re.I)
_YEAR = re.compile(r"(?<![\d.,$])\b(?:19|20)\d{2}s?\b(?![.,]\d)")
_AMOUNT = re.compile(
    r"(?:US\s?)?[$€£]\s?\d[\d,]*(?:\.\d+)?(?:\s?(?:k|m|bn|b|million|billion|trillion|thousand)\b)?"
    r"|\b\d[\d,]*(?:\.\d+)?\s?(?:k\b|(?:million|billion|trillion)?\s?(?:usd|dollars)\b)",
    re.I,
)
_NUMBER = re.compile(r"(?<![\w.])\d[\d,]*(?:\.\d+)?(?![\w.]*\d)")


def day_label(offset: int) -> str:
    """`day 0` is today, `day -3` three trading days before."""
    return f"day {offset}"


def _name_pattern(names: Sequence[str], tickers: Sequence[str]) -> re.Pattern | None:
    alternatives = [re.escape(n) for n in sorted(set(names), key=len, reverse=True)]
    if tickers:
        alternatives.append(
            "(?-i:" + "|".join(re.escape(t) for t in sorted(set(tickers), key=len, reverse=True)) + ")"
        )
    if not alternatives:
        return None
    # Whole words; a ticker may carry a cashtag ($MSFT).
    return re.compile(r"(?<![\w&])\$?(?:" + "|".join(alternatives) + r")(?![\w&])", re.I)


@functools.lru_cache(maxsize=256)
def _patterns(asset: str, aliases: tuple[tuple[str, tuple[str, ...]], ...]) -> tuple[re.Pattern | None, ...]:
    names = {ticker: tuple(values) for ticker, values in KNOWN_NAMES.items()}
    for ticker, values in aliases:
        names[ticker] = names.get(ticker, ()) + tuple(values)
    own = _name_pattern(names.get(asset, ()), [asset])
    others = [t for t in names if t != asset]
    other = _name_pattern([n for t in others for n in names[t]], others)
    return own, other


def scrub_text(
    text: str, asset: str, price: float | None = None, aliases: Mapping[str, Sequence[str]] | None = None
) -> str:
    """`text` with the asset's names and ticker, the other known companies', dates, years, quarters, currency amounts
    and (with `price`) numbers near the real price level replaced by neutral labels (module docstring)."""
    own, other = _patterns(asset.upper(), _freeze(aliases))
    text = _AMOUNT.sub(AMOUNT_LABEL, text)
    for pattern in _DATE_PATTERNS:
        text = pattern.sub(DATE_LABEL, text)
    text = _QUARTER.sub(QUARTER_LABEL, text)
    text = _YEAR.sub(YEAR_LABEL, text)
    if own is not None:
        text = own.sub(ANONYMOUS_ASSET, text)
    if other is not None:
        text = other.sub(OTHER_COMPANY, text)
    if price is not None and price > 0:

        def near_price(match: re.Match) -> str:
            value = float(match.group(0).replace(",", ""))
            return (
                AMOUNT_LABEL if price / PRICE_LEVEL_FACTOR <= value <= price * PRICE_LEVEL_FACTOR else match.group(0)
            )

        text = _NUMBER.sub(near_price, text)
    return text


def _freeze(aliases: Mapping[str, Sequence[str]] | None) -> tuple[tuple[str, tuple[str, ...]], ...]:
    if not aliases:
        return ()
    if not isinstance(aliases, Mapping):
        raise ValueError(f"anonymise_aliases must map tickers to lists of names, got {aliases!r}.")
    frozen = []
    for ticker, names in sorted(aliases.items()):
        if isinstance(names, str) or not all(isinstance(n, str) and n.strip() for n in names):
            raise ValueError(f"anonymise_aliases[{ticker!r}] must be a list of non-empty names, got {names!r}.")
        frozen.append((str(ticker).upper(), tuple(n.strip() for n in names)))
    return tuple(frozen)


def anonymise_state(
    state: TradingState, history_days: int, aliases: Mapping[str, Sequence[str]] | None = None
) -> TradingState:
    """The state with the asset, the calendar and the price level hidden (module docstring).

    Args:
        state (`TradingState`): The real point-in-time state.
        history_days (`int`): Closes the prompt shows; the first of them is rebased to 100, and only they are kept.
        aliases (`Mapping[str, Sequence[str]]`, *optional*): More names per ticker, beside `KNOWN_NAMES`.

    Returns:
        `TradingState`: a copy; the account's cash and value are unchanged, its share count is rescaled with the
        prices.
    """
    if history_days < 1:
        raise ValueError(f"history_days must be at least 1, got {history_days}.")
    keep = min(history_days, len(state.prices))
    real = np.asarray(state.prices[-keep:], dtype=np.float64)
    scale = REBASE_LEVEL / real[0]
    price = float(real[-1])

    def scrub(text: str) -> str:
        return scrub_text(text, state.asset, price, aliases)

    return dataclasses.replace(
        state,
        asset=ANONYMOUS_ASSET,
        date=day_label(0),
        dates=[day_label(i - keep + 1) for i in range(keep)],
        prices=real * scale,
        news=[scrub(item) for item in state.news],
        filings=[scrub(item) for item in state.filings],
        shares=state.shares / scale,
    )
