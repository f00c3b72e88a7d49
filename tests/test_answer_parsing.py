"""Reading an action from an LLM's free-text answer (`flagtrl.agents.zero_shot.parse_action`): the formats models
answer in, and negation or refusal as a kind: an action named in order to reject it is not that action."""

from __future__ import annotations

import numpy as np
import pytest

from flagtrl.actions import BUY, HOLD
from flagtrl.agents.zero_shot import ZeroShotLLMAgent, parse_action
from flagtrl.envs.trading_env import TradingState
from flagtrl.prompt import PromptConfig


READ = [
    # The formats models answer in.
    ("Buy.", "buy"),
    ("SELL", "sell"),
    ('{"action": "sell"}', "sell"),
    ('{"Action": "Hold", "reason": "no clear trend"}', "hold"),
    ('{"action": "buy', "buy"),  # cut by max_new_tokens
    ("{'action': 'sell'}", "sell"),
    ("Action: BUY", "buy"),
    ("action = hold", "hold"),
    ("I recommend to hold", "hold"),
    ("I would BUY now", "buy"),
    ("Based on the positive news, the best action is to buy.", "buy"),
    ("It's a no-brainer: buy.", "buy"),
    ("No doubt, sell.", "sell"),
    ("No. Buy.", "buy"),
    ("Nothing has changed, hold", "hold"),
    # A JSON action or an explicit field wins over the text around it.
    ('{"action": "buy", "reason": "do not sell into strength"}', "buy"),
    ("Action: hold, don't buy yet", "hold"),
    # A rejected action next to a chosen one: the chosen one.
    ("Don't sell; hold.", "hold"),
    ("Do not buy, sell.", "sell"),
    ("Sell, not buy.", "sell"),
    ("Not buy, sell.", "sell"),
    ("I would not sell. I would buy.", "buy"),
    ("I would buy rather than sell", "buy"),
    ("Rather than sell, buy", "buy"),
    ("Hold instead of sell", "hold"),
    ("I'd sooner sell than buy", "sell"),
    ("Never sell in a panic; hold.", "hold"),
    ("Neither buy nor sell: hold", "hold"),
    ("Avoid buying for now, but hold", "hold"),
    ("Do not panic, buy", "buy"),
    ("Don't sell but hold", "hold"),
    ("The stock shouldn't fall further, so buy", "buy"),
]

REJECTED = [
    # An answer that only rejects actions chooses none: unparseable (the agent holds, and counts it).
    "Do not buy.",
    "Don't sell yet",
    "Dont sell",
    "Don’t buy",  # typographic apostrophe
    '{"action": "not buy"}',
    '{"action": "do not sell"}',
    "Action: don't buy",
    "not buy",
    "Never sell.",
    "No buy",
    "You shouldn't buy here",
    "I wouldn't sell at this price",
    "We won't sell",
    "I can't recommend to buy",
    "I cannot buy with no cash",
    "Avoid buy",
    "Refrain from selling or buy",  # the refusal reaches to the end of its clause
    "I advise against sell",
    "There is no reason to sell",
    "I don't think you should buy",
    "There is no reason not to buy",  # a double negation is not resolved: unparseable, not a guess
    "Neither buy nor sell",
    "isn't a buy",
    "Instead of buy",
    # Ambiguous or no action at all.
    "buy or sell?",
    "Buy. Sell.",
    "The market looks interesting.",
    '{"action": "short"}',
    "",
]


@pytest.mark.parametrize("answer, action", READ)
def test_answers_that_name_an_action(answer, action):
    assert parse_action(answer) == action


@pytest.mark.parametrize("answer", REJECTED)
def test_answers_that_reject_or_name_no_action_are_unparseable(answer):
    assert parse_action(answer) is None


def test_a_rejected_action_is_executed_as_the_counted_hold_fallback(tiny_tokenizer, tiny_llama, monkeypatch):
    agent = ZeroShotLLMAgent(tiny_llama, tiny_tokenizer, PromptConfig(max_prompt_tokens=1024), scoring="generate")
    answers = iter(["Do not buy.", '{"action": "not buy"}', "Don't sell, buy."])
    monkeypatch.setattr(agent, "generate_answer", lambda state: next(answers))
    state = TradingState(
        asset="AAA",
        asset_class="stock",
        date="2021-01-05",
        step=0,
        dates=["2021-01-04", "2021-01-05"],
        prices=np.array([10.0, 11.0]),
        news=[],
        filings=[],
        cash=1000.0,
        shares=0.0,
        account_value=1000.0,
        position=0,
        action_mask=np.array([0, 1, 1], dtype=np.int8),  # buy is valid: holding is the fallback, not the mask
    )
    assert [int(np.argmax(agent.action_distribution(state))) for _ in range(3)] == [HOLD, HOLD, BUY]
    assert agent.stats["unparseable"] == 2 and agent.stats["masked"] == 0
    assert agent.stats["unparseable_examples"] == ["Do not buy.", '{"action": "not buy"}']
