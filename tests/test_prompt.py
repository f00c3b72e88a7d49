"""lang(s_t): the four parts, the shared market prefix, the token budget and the text helpers."""

from __future__ import annotations

import copy
import json
import re

import numpy as np
import pytest

from flagtrl.actions import BUY
from flagtrl.envs import TradingState
from flagtrl.prompt import (
    ACCOUNT_MARKER,
    ANSWER_PREFIX,
    NEWS_MARKER,
    OUTPUT_FORMAT,
    PromptBuilder,
    PromptConfig,
    build_messages,
    select_news,
    truncate_text,
)


DATES = ["2021-03-01", "2021-03-02", "2021-03-03", "2021-03-04", "2021-03-05"]
PRICES = np.array([231.5, 233.25, 227.75, 226.0, 231.6])
# The tiny test tokenizer (400 BPE tokens) spends far more tokens on English than SmolLM2's: give it room.
ROOMY = PromptConfig(max_prompt_tokens=8192, account_tokens=2048)


def make_state(day: int = 4, cash: float = 100_000.0, shares: float = 0.0, news=None, filings=None, **kwargs):
    price = float(PRICES[day])
    defaults = dict(
        asset="MSFT",
        asset_class="stock",
        date=DATES[day],
        step=day,
        dates=DATES[: day + 1],
        prices=PRICES[: day + 1],
        news=list(news or []),
        filings=list(filings or []),
        cash=cash,
        shares=shares,
        account_value=cash + shares * price,
        position=int(shares > 0),
        action_mask=np.array([shares > 0, True, cash > 0], dtype=np.int8),
    )
    defaults.update(kwargs)
    return TradingState(**defaults)


def long_news(i: int, sentiment: str = "neutral") -> str:
    return f"Headline {i}: " + " ".join(f"word{i}x{j}" for j in range(120)) + f" (Sentiment: {sentiment})"


def decoded(tokenizer, ids) -> str:
    return tokenizer.decode(ids)


def market_json(text: str) -> dict:
    line = text.split("Market state:\n", 1)[1].split("\n", 1)[0]
    return json.loads(line)


def news_json(text: str) -> list[str]:
    """The news list that follows the account JSON (`news_position="last"`); [] when there is none."""
    if NEWS_MARKER not in text:
        return []
    line = text.split(NEWS_MARKER + "\n", 1)[1].split("\n", 1)[0].split("<|im_end|>", 1)[0]
    return json.loads(line)


def account_json(text: str) -> dict:
    line = text.split(ACCOUNT_MARKER + "\n", 1)[1].split("\n", 1)[0].split("<|im_end|>", 1)[0]
    return json.loads(line)


def test_prompt_has_the_four_parts(tiny_tokenizer):
    builder = PromptBuilder(tiny_tokenizer, ROOMY)
    state = make_state(
        cash=0.0,
        shares=400.0,
        news=["Microsoft wins a cloud contract. (Sentiment: positive)"],
        past_actions=["buy", "hold"],
        past_rewards=[0.0, 0.25],
        past_values=[100_000.0, 101_000.0],
    )
    market, account = builder.render(state)
    text = market + account
    # (1) the task
    assert "MSFT" in text and "maximise the long-term return" in text and "risk" in text
    # (2) the legible actions
    for action in ("buy", "sell", "hold"):
        assert f"{action} =" in text
    # (3) the state as JSON
    market_state = market_json(text)
    assert market_state["date"] == "2021-03-05"
    assert market_state["recent_prices"] == {d: float(p) for d, p in zip(DATES, PRICES)}
    # The day's news comes last, after the account, right before the answer (news_position="last").
    assert "news" not in market_state
    assert news_json(account) == ["Microsoft wins a cloud contract. (Sentiment: positive)"]
    account_state = account_json(text)
    assert account_state["cash_balance"] == 0.0
    assert account_state["asset_position"] == 400.0
    assert account_state["total_account_value"] == pytest.approx(400.0 * 231.6)
    assert account_state["previous_actions"] == ["buy", "hold"]
    assert account_state["previous_rewards"] == [0.0, 0.25]
    assert account_state["previous_net_values"] == [100_000.0, 101_000.0]
    assert account_state["valid_actions"] == ["sell", "hold"]
    # (4) the output format (in the system turn, so it is part of the cached prefix), then the assistant turn opens
    assert OUTPUT_FORMAT in market
    assert '{"action": "buy"}' in market
    assert text.endswith('<|im_start|>assistant\n{"action": "')
    # The split point: the market part holds no account data, the account part starts at the marker.
    assert account.startswith(ACCOUNT_MARKER)
    assert "cash_balance" not in market


def test_market_prefix_shared_across_accounts_and_distinct_across_dates(tiny_tokenizer):
    builder = PromptBuilder(tiny_tokenizer, ROOMY)
    flat = builder.encode(make_state(cash=100_000.0, shares=0.0))
    # A fresh builder, so that the equality does not come from its cache.
    long = PromptBuilder(tiny_tokenizer, ROOMY).encode(
        make_state(cash=0.0, shares=431.7, past_actions=["buy"], past_rewards=[0.0], past_values=[99_000.0])
    )
    assert flat.market_ids == long.market_ids
    assert flat.market_key == long.market_key
    assert flat.account_ids != long.account_ids
    other_day = builder.encode(make_state(day=3))
    assert other_day.market_ids != flat.market_ids
    assert other_day.market_key != flat.market_key


def test_input_ids_are_the_two_segments(tiny_tokenizer):
    builder = PromptBuilder(tiny_tokenizer, ROOMY)
    state = make_state(news=["Short item. (Sentiment: negative)"])
    encoded = builder.encode(state)
    assert encoded.input_ids == encoded.market_ids + encoded.account_ids
    assert len(encoded) == len(encoded.input_ids)
    # The segments decode back to the rendered prompt, split at the account marker.
    market, account = builder.render(state)
    assert decoded(tiny_tokenizer, encoded.market_ids) == market
    assert decoded(tiny_tokenizer, encoded.account_ids) == account
    assert (
        decoded(tiny_tokenizer, encoded.input_ids)
        == tiny_tokenizer.apply_chat_template(
            build_messages(state, builder.config), tokenize=False, add_generation_prompt=True
        )
        + ANSWER_PREFIX
    )


@pytest.mark.parametrize("news_position", ["market", "last"])
def test_token_budget_drops_news_and_filings(tiny_tokenizer, news_position):
    news = [long_news(i, "positive" if i % 2 else "neutral") for i in range(8)]
    filings = ["10-Q summary: " + " ".join(f"item{j}" for j in range(200))]
    state = make_state(news=news, filings=filings)
    generous = PromptConfig(max_prompt_tokens=100_000, account_tokens=4096, news_position=news_position)
    full = PromptBuilder(tiny_tokenizer, generous).encode(state)
    full_market = market_json(decoded(tiny_tokenizer, full.market_ids))
    full_news = (
        full_market["news"] if news_position == "market" else news_json(decoded(tiny_tokenizer, full.account_ids))
    )
    assert len(full_news) == generous.max_news_items
    assert "filings" in full_market

    if news_position == "market":
        config = PromptConfig(max_prompt_tokens=len(full) // 2, account_tokens=400, news_position="market")
    else:  # the news are in the suffix: its budget makes them go (after the previous decisions)
        config = PromptConfig(
            max_prompt_tokens=len(full.market_ids) + len(full.account_ids) // 2,
            account_tokens=len(full.account_ids) // 2,
            news_position="last",
        )
    assert config.max_prompt_tokens - config.account_tokens > 0
    encoded = PromptBuilder(tiny_tokenizer, config).encode(state)
    assert len(encoded) <= config.max_prompt_tokens
    assert len(encoded.market_ids) <= config.max_prompt_tokens - config.account_tokens
    assert len(encoded.account_ids) <= config.account_tokens
    market = market_json(decoded(tiny_tokenizer, encoded.market_ids))
    kept = (
        market.get("news", [])
        if news_position == "market"
        else news_json(decoded(tiny_tokenizer, encoded.account_ids))
    )
    assert len(kept) < generous.max_news_items
    assert market["recent_prices"]  # the price history is the last thing to go
    # Every item that remains is cut to max_news_chars.
    assert all(len(item) <= config.max_news_chars for item in kept)


def test_news_items_are_truncated(tiny_tokenizer):
    config = PromptConfig(max_prompt_tokens=100_000, account_tokens=512, max_news_chars=80)
    encoded = PromptBuilder(tiny_tokenizer, config).encode(make_state(news=[long_news(1, "negative")]))
    (item,) = news_json(decoded(tiny_tokenizer, encoded.account_ids))
    assert len(item) <= 80
    assert item.endswith("(Sentiment: negative)")
    assert item.startswith("Headline 1:")


def test_unknown_news_position_is_refused():
    with pytest.raises(ValueError, match="news_position"):
        PromptConfig(news_position="first")


def test_too_small_budget_raises(tiny_tokenizer):
    config = PromptConfig(max_prompt_tokens=250, account_tokens=200)
    with pytest.raises(ValueError, match=r"MSFT on 2021-03-05 .*max_prompt_tokens - account_tokens = 50 is too small"):
        PromptBuilder(tiny_tokenizer, config).encode(make_state(news=[long_news(0)]))


def test_too_small_account_budget_raises(tiny_tokenizer):
    config = PromptConfig(max_prompt_tokens=100_000, account_tokens=10)
    with pytest.raises(ValueError, match="account_tokens=10"):
        PromptBuilder(tiny_tokenizer, config).encode(make_state())


def test_truncate_text_keeps_the_sentiment_tag():
    text = "Microsoft   reports record  revenue " + "and more " * 30 + "(Sentiment: positive)"
    cut = truncate_text(text, 60)
    assert len(cut) <= 60
    assert cut.endswith(" ... (Sentiment: positive)")
    assert cut.startswith("Microsoft reports record")  # whitespace normalised
    assert "  " not in cut
    # Cut at a word boundary: every word before the ellipsis is a whole word of the original.
    words = cut.removesuffix(" ... (Sentiment: positive)").split()
    assert set(words) <= set(text.split())
    # Short text passes unchanged (whitespace normalised), and text without a tag is cut plainly.
    assert truncate_text("Short  news. (Sentiment: neutral)", 60) == "Short news. (Sentiment: neutral)"
    plain = truncate_text("alpha beta gamma delta epsilon zeta", 20)
    assert len(plain) <= 20 and plain.endswith(" ...") and plain.startswith("alpha beta")


def test_select_news_puts_non_neutral_first():
    news = [
        "A. (Sentiment: neutral)",
        "B. (Sentiment: positive)",
        "C, untagged",
        "D. (Sentiment: negative)",
        "E. (Sentiment: neutral)",
    ]
    assert select_news(news, 3, 300) == [
        "B. (Sentiment: positive)",
        "D. (Sentiment: negative)",
        "A. (Sentiment: neutral)",
    ]
    assert select_news(news, 10, 300) == [news[1], news[3], news[0], news[2], news[4]]
    assert select_news(news, 0, 300) == []
    (item,) = select_news([long_news(3, "negative")], 1, 50)
    assert len(item) <= 50 and item.endswith("(Sentiment: negative)")


def test_tokenizer_without_chat_template_raises(tiny_tokenizer):
    tokenizer = copy.deepcopy(tiny_tokenizer)
    tokenizer.chat_template = None
    with pytest.raises(ValueError, match="no chat template"):
        PromptBuilder(tokenizer)


def test_prompt_describes_the_mode(tiny_tokenizer):
    builder = PromptBuilder(tiny_tokenizer, ROOMY)
    paper = builder.encode(make_state())
    position = builder.encode(make_state(mode="position", action_mask=np.ones(3, dtype=np.int8)))
    paper_text = decoded(tiny_tokenizer, paper.market_ids)
    position_text = decoded(tiny_tokenizer, position.market_ids)
    assert "invest all cash" in paper_text and "short" not in paper_text
    assert re.search(r"sell = be short", position_text)
    assert paper.market_key != position.market_key


def test_prompt_from_environment_state(tiny_tokenizer, msft_series):
    from flagtrl.envs import TradingEnv

    env = TradingEnv(msft_series, window=("2020-10-01", "2021-05-05"), episode_length=5, random_start=False)
    _, info = env.reset(seed=0)
    builder = PromptBuilder(tiny_tokenizer, ROOMY)
    config = builder.config
    done = False
    while not done:
        encoded = builder.encode(info["state"])
        assert len(encoded) <= config.max_prompt_tokens
        market = market_json(decoded(tiny_tokenizer, encoded.market_ids))
        assert market["date"] == info["date"]
        assert max(market["recent_prices"]) == info["date"]
        assert len(market["recent_prices"]) <= config.price_history_days
        _, _, terminated, truncated, info = env.step(BUY)
        done = terminated or truncated
