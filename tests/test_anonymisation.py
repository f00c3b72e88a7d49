"""Anonymised prompts: nothing identifying survives (ticker, names, dates, price levels), on real InvestorBench news."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from flagtrl.anonymisation import KNOWN_NAMES, anonymise_state, scrub_text
from flagtrl.envs.trading_env import TradingEnv
from flagtrl.prompt import ACCOUNT_MARKER, PromptBuilder, PromptConfig


ROOMY = {"max_prompt_tokens": 8192, "account_tokens": 2048}
MONTHS = "january|february|april|june|july|august|september|october|november|december"


def states(series, start: str, end: str, every: int = 1):
    """Point-in-time states of an episode that buys, holds and sells (so the account holds shares on some days)."""
    env = TradingEnv(series, window=(start, end), episode_length=None, random_start=False)
    _, info = env.reset(seed=0)
    collected, done, day = [], False, 0
    while not done:
        if day % every == 0:
            collected.append(info["state"])
        _, _, terminated, truncated, info = env.step([2, 1, 1, 0][day % 4])
        done, day = terminated or truncated, day + 1
    return collected


def identifying(text: str, asset: str, closes: np.ndarray) -> list[str]:
    """What in `text` could tell a model which asset, which days or which price level it is looking at."""
    found = []
    names = (asset, *KNOWN_NAMES.get(asset, ()))
    found += [n for n in names if re.search(rf"(?<![\w&]){re.escape(n)}(?![\w&])", text, re.I)]
    found += re.findall(r"\b\d{4}-\d{2}-\d{2}\b", text)
    found += re.findall(r"\b(?:19|20)\d{2}\b", text)
    found += re.findall(rf"\b(?:{MONTHS})\b", text, re.I)
    found += re.findall(r"\b(?:March|May)\b", text)  # in lower case, ordinary words
    found += re.findall(r"\b(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)\.? \d", text, re.I)
    # A number within 25 % of any close of the window: a raw price level.
    low, high = closes.min() / 1.25, closes.max() * 1.25
    for number in re.findall(r"(?<![\w.])\d[\d,]*(?:\.\d+)?", text):
        value = float(number.replace(",", ""))
        if low <= value <= high:
            found.append(number)
    return found


@pytest.mark.parametrize(
    "asset, start, end", [("MSFT", "2020-10-01", "2020-12-31"), ("NFLX", "2020-10-01", "2021-01-31")]
)
def test_nothing_identifying_survives_in_an_anonymised_prompt(investorbench_dir, tiny_tokenizer, asset, start, end):
    from conftest import load_investorbench_series

    series = load_investorbench_series(investorbench_dir, asset)
    builder = PromptBuilder(tiny_tokenizer, PromptConfig(anonymise=True, **ROOMY))
    real_builder = PromptBuilder(tiny_tokenizer, PromptConfig(**ROOMY))
    first, last = series.window(start, end)
    closes = np.asarray(series.close[first - 10 : last + 1])  # the window and the history its prompts show
    checked = 0
    for state in states(series, start, end):
        text = "".join(builder.render(state))
        assert identifying(text, asset, closes) == [], state.date
        # The real prompt of the same day does show them (the check can fail).
        if state.news:
            assert identifying("".join(real_builder.render(state)), asset, closes)
            checked += 1
        # The tokens the model reads decode to the same anonymised text.
        encoded = builder.encode(state)
        assert identifying(tiny_tokenizer.decode(encoded.input_ids), asset, closes) == []
    assert checked > 20  # days with news were among them


def test_anonymised_state_keeps_what_a_trader_needs(msft_series, tiny_tokenizer):
    state = states(msft_series, "2020-10-01", "2020-11-30")[9]  # after a buy: shares held
    assert state.shares > 0
    view = anonymise_state(state, history_days=10)
    assert (view.asset, view.date, view.dates[0], view.dates[-1]) == ("ASSET", "day 0", "day -9", "day 0")
    assert view.prices[0] == pytest.approx(100.0)
    # Returns unchanged, and the position is worth what it is worth.
    real = np.asarray(state.prices[-10:])
    assert np.allclose(view.prices[1:] / view.prices[:-1], real[1:] / real[:-1])
    assert view.shares * view.price == pytest.approx(state.shares * state.price)
    assert (view.cash, view.account_value, view.past_values) == (state.cash, state.account_value, state.past_values)

    builder = PromptBuilder(tiny_tokenizer, PromptConfig(anonymise=True, **ROOMY))
    market = json.loads(builder.render(state)[0].split("Market state:\n", 1)[1].split("\n", 1)[0])
    assert market["asset"] == "ASSET" and market["date"] == "day 0"
    assert list(market["recent_prices"])[0] == "day -9" and market["recent_prices"]["day -9"] == 100.0
    # The market prefix still depends only on (asset, date): its tokens are shared by every episode on that date.
    prompt = builder.encode(state)
    assert prompt.market_key[:2] == (state.asset, state.date)
    assert ACCOUNT_MARKER in tiny_tokenizer.decode(prompt.account_ids)


def test_real_prompts_are_unchanged():
    # The fingerprint of a real-input prompt is the one flagtrl computed before anonymisation existed.
    assert PromptConfig().fingerprint() == "623d8a1bf444"
    assert PromptConfig(anonymise=True).fingerprint() != PromptConfig().fingerprint()


@pytest.mark.parametrize(
    "text, asset, price, expected",
    [
        (
            "Microsoft (MSFT) rose to $214.22 on October 26-30, 2020 after Q2 FY21; Satya Nadella spoke. NASDAQ:MSFT",
            "MSFT",
            214.0,
            "ASSET (ASSET) rose to [amount] on [date] after [quarter]; ASSET spoke. NASDAQ:ASSET",
        ),
        (
            "bitcoin drops to $20.8k as btc and ethereum slump; 20k support since march 2023 (2023-03-09)",
            "BTC",
            20363.0,
            "ASSET drops to [amount] as ASSET and OTHER slump; [amount] support since [date] ([date])",
        ),
        (
            "Apple and J&J (JNJ) in May 2020; sales may rise; Fortune 500; a target of 250 vs 90",
            "MSFT",
            214.0,
            "OTHER and OTHER (OTHER) in [date]; sales may rise; Fortune 500; a target of [amount] vs 90",
        ),
        ("GE and ge; 2Q20 capex; $AAPL", "HD", None, "OTHER and ge; [quarter] capex; OTHER"),
    ],
)
def test_scrub_text(text, asset, price, expected):
    assert scrub_text(text, asset, price) == expected


def test_aliases_and_bad_aliases():
    assert scrub_text("Acme Widgets beat estimates", "ACME", aliases={"ACME": ["Acme Widgets"]}) == (
        "ASSET beat estimates"
    )
    with pytest.raises(ValueError, match=r"anonymise_aliases\['ACME'\] must be a list"):
        scrub_text("x", "ACME", aliases={"ACME": "Acme"})
    with pytest.raises(ValueError, match="history_days"):
        anonymise_state(None, history_days=0)


def test_training_and_the_command_line_take_the_option(tmp_path):
    from conftest import tiny_ppo_config

    from flagtrl.cli import main

    assert tiny_ppo_config(tmp_path, anonymise=True).prompt_config().anonymise is True
    assert tiny_ppo_config(tmp_path).prompt_config().anonymise is False
    with pytest.raises(ValueError, match="--anonymise changes what an LLM reads; 'momentum' is a rule"):
        main(
            [
                "backtest",
                "--dataset",
                "x",
                "--asset",
                "MSFT",
                "--start",
                "2020-10-01",
                "--end",
                "2020-10-09",
                "--agent",
                "momentum",
                "--anonymise",
            ]
        )
