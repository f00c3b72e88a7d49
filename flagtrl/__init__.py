# ruff: noqa: F401  (the TYPE_CHECKING imports are re-exported through the computed `__all__`)
"""flagtrl: RL fine-tuning of small LLMs into trading agents (FLAG-Trader) on TRL.

The public names are importable from the package, as in TRL (`from trl import GRPOConfig, GRPOTrainer`)::

    from flagtrl import FlagPPOConfig, FlagPPOTrainer, FlagPolicy, run_backtest

Each is imported on first use: `import flagtrl` loads neither torch nor transformers, and the `flagtrl` command loads
torch only for the commands that need it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("flagtrl")
    except PackageNotFoundError:  # a source checkout that is not installed
        return "0.0.0+unknown"


__version__ = _version()

# Module (relative to the package) → the public names it defines, in the layout of TRL's `_import_structure`.
_import_structure = {
    "agents.base": ["TradingAgent"],
    "agents.baselines": [
        "BASELINE_AGENTS",
        "BuyAndHoldAgent",
        "MomentumAgent",
        "MovingAverageCrossoverAgent",
        "NewsSentimentAgent",
        "RandomAgent",
        "make_baseline",
    ],
    "agents.flag_agent": ["FlagAgent"],
    "agents.registry": ["make_agent"],
    "agents.zero_shot": ["ZeroShotLLMAgent"],
    "backtest": ["BacktestResult", "evaluate_agents", "run_backtest"],
    "benchmark.config": ["AgentSpec", "BenchmarkConfig"],
    "benchmark.runner": ["run_benchmark"],
    "data.builder": ["build_market_dataset", "parse_windows", "push_market_dataset", "save_market_dataset"],
    "data.schema": ["MarketSeries", "list_assets", "load_market_dataset", "market_series"],
    "data.sources": ["read_investorbench", "read_price_csv", "read_skfolio", "read_yfinance"],
    "data.synthetic": ["make_synthetic_dataset"],
    "data.validation": ["MarketDataError", "validate_rows"],
    "envs.trading_env": ["TradingEnv"],
    "metrics": ["TradingMetrics", "compute_metrics", "paper_metrics", "standard_metrics"],
    "metrics_table": ["format_metrics_table"],
    "models.flag_policy": ["FlagPolicy", "FlagPolicyConfig"],
    "models.loading": ["load_backbone", "load_tokenizer"],
    "portfolio.backtest": ["PortfolioBacktestResult", "run_portfolio_backtest"],
    "portfolio.baselines": ["BuyAndHoldPolicy", "EqualWeightPolicy", "max_sharpe_policy"],
    "portfolio.comparison": ["run_portfolio_comparison"],
    "portfolio.config": ["PortfolioConfig"],
    "portfolio.environment": ["PortfolioEnv"],
    "portfolio.manager": ["PortfolioManager"],
    "portfolio.risk": ["RiskManager"],
    "portfolio.team": ["AnalystCommittee", "Team"],
    "prompt": ["PromptBuilder", "PromptConfig"],
    "rewards": [
        "REWARDS",
        "differential_sharpe_ratio",
        "get_reward_function",
        "log_return_reward",
        "sharpe_delta_reward",
    ],
    "state": ["TradingState"],
    "trainer.ppo_flag_config": ["FlagPPOConfig"],
    "trainer.ppo_flag_trainer": ["FlagPPOTrainer"],
}

_module_of = {name: module for module, names in _import_structure.items() for name in names}

__all__ = sorted(_module_of)

if TYPE_CHECKING:
    from .agents.base import TradingAgent
    from .agents.baselines import (
        BASELINE_AGENTS,
        BuyAndHoldAgent,
        MomentumAgent,
        MovingAverageCrossoverAgent,
        NewsSentimentAgent,
        RandomAgent,
        make_baseline,
    )
    from .agents.flag_agent import FlagAgent
    from .agents.registry import make_agent
    from .agents.zero_shot import ZeroShotLLMAgent
    from .backtest import BacktestResult, evaluate_agents, run_backtest
    from .benchmark.config import AgentSpec, BenchmarkConfig
    from .benchmark.runner import run_benchmark
    from .data.builder import build_market_dataset, parse_windows, push_market_dataset, save_market_dataset
    from .data.schema import MarketSeries, list_assets, load_market_dataset, market_series
    from .data.sources import read_investorbench, read_price_csv, read_skfolio, read_yfinance
    from .data.synthetic import make_synthetic_dataset
    from .data.validation import MarketDataError, validate_rows
    from .envs.trading_env import TradingEnv
    from .metrics import TradingMetrics, compute_metrics, paper_metrics, standard_metrics
    from .metrics_table import format_metrics_table
    from .models.flag_policy import FlagPolicy, FlagPolicyConfig
    from .models.loading import load_backbone, load_tokenizer
    from .portfolio.backtest import PortfolioBacktestResult, run_portfolio_backtest
    from .portfolio.baselines import BuyAndHoldPolicy, EqualWeightPolicy, max_sharpe_policy
    from .portfolio.comparison import run_portfolio_comparison
    from .portfolio.config import PortfolioConfig
    from .portfolio.environment import PortfolioEnv
    from .portfolio.manager import PortfolioManager
    from .portfolio.risk import RiskManager
    from .portfolio.team import AnalystCommittee, Team
    from .prompt import PromptBuilder, PromptConfig
    from .rewards import (
        REWARDS,
        differential_sharpe_ratio,
        get_reward_function,
        log_return_reward,
        sharpe_delta_reward,
    )
    from .state import TradingState
    from .trainer.ppo_flag_config import FlagPPOConfig
    from .trainer.ppo_flag_trainer import FlagPPOTrainer


def __getattr__(name: str):
    # PEP 562: TRL resolves names with transformers' `_LazyModule`, which would import transformers (and torch) here.
    if name not in _module_of:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_module_of[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
