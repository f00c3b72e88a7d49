"""The portfolio comparison behind `flagtrl portfolio`: the team against the baselines on one window, with a report.

    flagtrl portfolio --config recipes/portfolio/investorbench_stocks.yaml

Any YAML key can be overridden on the command line (`--transaction_cost_bps 5`); unknown keys fail.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict

from trl import TrlParser

from ..agents.registry import make_agent
from .backtest import PortfolioBacktestResult, run_portfolio_backtest
from .baselines import BuyAndHoldPolicy, EqualWeightPolicy, max_sharpe_policy
from .config import PortfolioConfig
from .environment import AlignedMarket, align_market
from .manager import PortfolioManager
from .report import activity_table, metrics_tables, write_portfolio_report
from .risk import RiskManager
from .team import AnalystCommittee, Team


logger = logging.getLogger(__name__)


def load_market(config: PortfolioConfig) -> AlignedMarket:
    """The configured assets of the prepared dataset, aligned on their common days."""
    from ..data.schema import load_market_dataset, market_series

    dataset = load_market_dataset(config.dataset_name)
    return align_market([market_series(dataset, asset) for asset in config.assets])


def make_analyst(specs: list[str], seed: int = 0):
    """One agent, or a committee of several, from `flagtrl backtest --agent` specs."""
    agents = [make_agent(spec, seed=seed) for spec in specs]
    return agents[0] if len(agents) == 1 else AnalystCommittee(agents)


def make_manager(config: PortfolioConfig, trading_days_per_year: int, max_weight: float) -> PortfolioManager:
    return PortfolioManager(
        mean_estimator=config.mean_estimator,
        covariance_estimator=config.covariance_estimator,
        risk_free_rate=(1.0 + config.risk_free_rate) ** (1.0 / trading_days_per_year) - 1.0,
        max_weight=max_weight,
        tau=config.black_litterman_tau,
        min_observations=config.min_observations,
    )


def make_risk_manager(config: PortfolioConfig, trading_days_per_year: int) -> RiskManager:
    return RiskManager(
        max_weight=config.max_weight,
        volatility_target=config.volatility_target,
        drawdown_limit=config.drawdown_limit,
        drawdown_exposure=config.drawdown_exposure,
        trading_days_per_year=trading_days_per_year,
    )


def build_policies(config: PortfolioConfig, market: AlignedMarket) -> dict:
    """The team first, then the configured baselines, by report name."""
    days = market.trading_days_per_year
    analysts = {asset: make_analyst(specs, config.seed) for asset, specs in config.analyst_specs().items()}
    policies = {
        "team": Team(
            make_manager(config, days, config.max_weight),
            analysts=analysts,
            risk_manager=make_risk_manager(config, days),
            estimation_window=config.estimation_window,
            view_scale=config.view_scale,
            name="team",
        )
    }
    for baseline in config.baselines:
        if baseline == "max_sharpe":
            policies[baseline] = max_sharpe_policy(make_manager(config, days, 1.0), config.estimation_window)
        elif baseline == "max_sharpe_risk":
            policies[baseline] = max_sharpe_policy(
                make_manager(config, days, config.max_weight),
                config.estimation_window,
                risk_manager=make_risk_manager(config, days),
                name=baseline,
            )
        elif baseline == "equal_weight":
            policies[baseline] = EqualWeightPolicy()
        elif baseline == "buy_and_hold":
            for asset in market.assets:
                policy = BuyAndHoldPolicy(asset)
                policies[policy.name] = policy
    return policies


def run_portfolio_comparison(config: PortfolioConfig) -> tuple[dict[str, PortfolioBacktestResult], dict]:
    """Backtest the team and the baselines, write the report; returns the results and the report's file paths."""
    started = time.time()
    market = load_market(config)
    dropped = market.dropped_in(config.start, config.end)
    if dropped:
        logger.warning(
            "%d day(s) of the window %s → %s are dropped for every asset because some asset has no price: %s",
            len(dropped),
            config.start,
            config.end,
            ", ".join(f"{day} ({'/'.join(missing)})" for day, missing in dropped.items()),
        )
    policies = build_policies(config, market)
    results = {}
    for name, policy in policies.items():
        tick = time.time()
        results[name] = run_portfolio_backtest(
            policy,
            market,
            config.start,
            config.end,
            initial_cash=config.initial_cash,
            transaction_cost_bps=config.transaction_cost_bps,
            risk_free_rate=config.risk_free_rate,
            seed=config.seed,
        )
        logger.info("%s: %.1f s", name, time.time() - tick)
    first = next(iter(results.values()))
    title = (
        f"Portfolio {', '.join(market.assets)}: {first.start} → {first.end} ({len(first.trajectory)} trading days, "
        f"{config.transaction_cost_bps:g} bps costs)"
    )
    settings = asdict(config) | {"wall_time_s": round(time.time() - started, 1)}
    paths = write_portfolio_report(results, config.output_dir, title, settings)
    return results, {"title": title, "paths": paths, "wall_time_s": time.time() - started}


def main(argv: list[str] | None = None) -> int:
    """`flagtrl portfolio --config <recipe.yaml> [--key value ...]`."""
    (config,) = TrlParser((PortfolioConfig,)).parse_args_and_config(args=argv)
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", level=logging.INFO)
    results, run = run_portfolio_comparison(config)
    print(run["title"])
    print()
    print(metrics_tables(results))
    print()
    print(activity_table(results))
    print()
    print(f"Wall time {run['wall_time_s']:.1f} s. Wrote {', '.join(str(p) for p in run['paths'].values())}")
    return 0
