"""The agent protocol: a point-in-time `TradingState` in, a distribution over (sell, hold, buy) out."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from ..actions import HOLD
from ..state import TradingState


@runtime_checkable
class TradingAgent(Protocol):
    """Anything that trades: rules, zero-shot LLMs and trained FLAG policies alike.

    `action_distribution` returns probabilities over `flagtrl.actions.ACTIONS` that are 0 on masked actions
    (`state.action_mask`) and sum to 1. `reset` starts a new episode (and reseeds any sampling).
    """

    name: str

    def reset(self, seed: int | None = None) -> None: ...

    def action_distribution(self, state: TradingState) -> np.ndarray: ...


def masked_distribution(scores: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Normalise non-negative scores over the valid actions; uniform over them when all valid scores are 0."""
    scores = np.where(np.asarray(mask, dtype=bool), np.asarray(scores, dtype=np.float64), 0.0)
    total = scores.sum()
    if total <= 0:
        scores = np.asarray(mask, dtype=np.float64)
        total = scores.sum()
    return scores / total


def one_hot(index: int, mask: np.ndarray, fallback: int = HOLD) -> np.ndarray:
    """A deterministic choice: `index` if it is valid, else `fallback` (hold, always valid)."""
    choice = index if mask[index] else fallback
    probs = np.zeros(len(mask), dtype=np.float64)
    probs[choice] = 1.0
    return probs


def choose_action(probs: np.ndarray, rng: np.random.Generator | None = None, greedy: bool = True) -> int:
    """Pick an action index from a distribution: its argmax (`greedy`), or a sample drawn with `rng`."""
    if greedy or rng is None:
        return int(np.argmax(probs))
    return int(rng.choice(len(probs), p=probs))
