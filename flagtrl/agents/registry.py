"""One factory for every agent, from one spec string: a baseline name, `flag:<adapter>` or `zero_shot:<model>`.

The command line (`flagtrl backtest --agent`), the benchmark (`AgentSpec`) and the portfolio's analysts all build their
agents here (open-r1's shape: plain classes plus one registry).

    make_agent("momentum")
    make_agent("random", seed=3)
    make_agent("flag:outputs/smollm2-135m-ppo-demo", dtype="float32")
    make_agent("zero_shot:HuggingFaceTB/SmolLM2-135M-Instruct", scoring="likelihood", name="smollm2")
"""

from __future__ import annotations

import inspect
from pathlib import Path

from .base import TradingAgent
from .baselines import BASELINE_AGENTS, make_baseline


FLAG_PREFIX = "flag:"
ZERO_SHOT_PREFIX = "zero_shot:"


def make_agent(spec: str, *, name: str | None = None, seed: int | None = None, **params) -> TradingAgent:
    """Build the agent that `spec` names.

    Args:
        spec (`str`): A baseline name (`BASELINE_AGENTS`: `buy_and_hold`, `random`, `ma_crossover`, `momentum`,
            `news_sentiment`), `flag:<adapter folder or Hub id>` for a trained FLAG policy (`FlagAgent`) or
            `zero_shot:<model id or folder>` for an untrained causal LM (`ZeroShotLLMAgent`).
        name (`str`, *optional*): Name in reports; each agent's own default when `None`.
        seed (`int`, *optional*): Seed of the agents that draw random numbers (`random`, `zero_shot:`); the others
            ignore it. Their own default when `None`.
        **params: Passed to the baseline's constructor or to the LLM agent's `from_pretrained` (e.g. `dtype`,
            `prompt_config`, `scoring`, `temperature`, `max_new_tokens`, `constrained`).

    Returns:
        `TradingAgent`: The agent.

    Raises:
        `ValueError`: for an unknown spec; `FileNotFoundError`: for a FLAG adapter that is neither a folder nor a
            reachable or cached Hub repo.
    """
    if spec.startswith(FLAG_PREFIX):
        return _flag_agent(spec.removeprefix(FLAG_PREFIX), name, **params)
    if spec.startswith(ZERO_SHOT_PREFIX):
        # Imported here: the LLM agents pull in torch and transformers, which the baselines never need.
        from .zero_shot import ZeroShotLLMAgent

        if name is not None:
            params["name"] = name
        if seed is not None:
            params["seed"] = seed
        return ZeroShotLLMAgent.from_pretrained(spec.removeprefix(ZERO_SHOT_PREFIX), **params)
    if spec not in BASELINE_AGENTS:
        raise ValueError(
            f"Unknown agent {spec!r}: use one of {sorted(BASELINE_AGENTS)}, {FLAG_PREFIX}<adapter folder or Hub id> "
            f"or {ZERO_SHOT_PREFIX}<model id or folder>."
        )
    if seed is not None and "seed" in inspect.signature(BASELINE_AGENTS[spec]).parameters:
        params["seed"] = seed
    agent = make_baseline(spec, **params)
    if name is not None:
        agent.name = name
    return agent


def _flag_agent(adapter: str, name: str | None, **params) -> TradingAgent:
    from .flag_agent import FlagAgent  # torch and transformers, as above

    try:
        return FlagAgent.from_pretrained(adapter, name=name, **params)
    except OSError as error:
        if Path(adapter).exists():
            raise
        raise FileNotFoundError(
            f"FLAG adapter {adapter!r} not found: no such folder, and no Hub repo of that name is reachable "
            "or cached. Train one first (`make demo` writes outputs/smollm2-135m-ppo-demo) or fix `adapter`."
        ) from error
