from .base import TradingAgent, choose_action, masked_distribution
from .baselines import (
    BASELINE_AGENTS,
    BuyAndHoldAgent,
    MomentumAgent,
    MovingAverageCrossoverAgent,
    NewsSentimentAgent,
    RandomAgent,
    make_baseline,
)
from .registry import make_agent


__all__ = [
    "BASELINE_AGENTS",
    "BuyAndHoldAgent",
    "MomentumAgent",
    "MovingAverageCrossoverAgent",
    "NewsSentimentAgent",
    "RandomAgent",
    "TradingAgent",
    "choose_action",
    "make_agent",
    "make_baseline",
    "masked_distribution",
]
