"""The investment team: per-asset analysts, a portfolio manager and a risk manager, as one portfolio policy.

Each day, from the point-in-time `PortfolioState` only:

1. every analyst (any single-asset `TradingAgent`: a rule, a zero-shot LLM, a trained FLAG policy) reads a
   `TradingState` of its asset in `position` mode — the asset's own history up to today, today's news and filings,
   the account as seen from that asset — and answers a distribution over (sell, hold, buy);
2. the distributions become views (`flagtrl.portfolio.views`), scaled by each asset's trailing volatility;
3. the portfolio manager estimates the mean and covariance over the trailing `estimation_window` days, blends the views
   in and sets max-Sharpe weights over the risky assets (`flagtrl.portfolio.manager`);
4. the risk manager caps them, targets volatility and brakes in drawdowns, deciding the cash share
   (`flagtrl.portfolio.risk`).

Without analysts the team is the plain max-Sharpe manager; without a risk manager it stays fully invested.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ..actions import ACTIONS
from ..agents.base import TradingAgent
from ..state import TradingState
from .environment import PortfolioState
from .manager import PortfolioManager
from .risk import RiskManager
from .views import analyst_views


class AnalystCommittee:
    """Several agents covering one asset; the committee's distribution is the mean of theirs.

    Two rules that agree give a confident view; two that disagree (buy and sell) a flat, unconfident one.

    Args:
        agents (`Sequence[TradingAgent]`): The members.
        name (`str`, *optional*): Defaults to the members' names joined with `+`.
    """

    def __init__(self, agents: Sequence[TradingAgent], name: str | None = None):
        if not agents:
            raise ValueError("An analyst committee needs at least one agent.")
        self.agents = list(agents)
        self.name = name or "+".join(getattr(agent, "name", type(agent).__name__) for agent in self.agents)

    def reset(self, seed: int | None = None) -> None:
        for agent in self.agents:
            agent.reset(seed)

    def action_distribution(self, state: TradingState) -> np.ndarray:
        return np.mean([np.asarray(agent.action_distribution(state), dtype=np.float64) for agent in self.agents], 0)


def asset_trading_state(
    state: PortfolioState, asset: str, past_actions: Sequence[str] = (), history: int = 10
) -> TradingState:
    """The single-asset view of a portfolio state that an analyst reads (position mode, all actions valid).

    Prices are the asset's own closes up to the portfolio's date (days that another asset lacks included); the
    account is the whole portfolio, with `shares` the asset's holding and `cash` everything else.
    """
    index = state.assets.index(asset)
    prices = state.asset_prices[asset]
    shares = float(state.shares[index])
    value = float(state.account_value)
    return TradingState(
        asset=asset,
        asset_class=state.asset_classes[asset],
        date=state.date,
        step=state.step,
        dates=list(state.asset_dates[asset]),
        prices=prices,
        news=list(state.news[asset]),
        filings=list(state.filings[asset]),
        cash=value - shares * float(prices[-1]),
        shares=shares,
        account_value=value,
        position=1 if shares > 0 else 0,
        past_actions=list(past_actions)[-history:],
        past_rewards=list(state.past_rewards)[-history:],
        past_values=list(state.past_values)[-history:],
        action_mask=np.ones(len(ACTIONS), dtype=np.int8),
        mode="position",
    )


class Team:
    """A portfolio policy: analysts' views → max-Sharpe manager → risk manager (see the module docstring).

    Args:
        manager (`PortfolioManager`): Sets the risky weights.
        analysts (`Mapping[str, TradingAgent]`, *optional*): One agent (or `AnalystCommittee`) per asset with a view;
            assets without one get no view.
        risk_manager (`RiskManager`, *optional*): Decides the cash share; without it the team is fully invested.
        estimation_window (`int`, *optional*, defaults to `60`): Trailing days of returns the manager estimates from.
        view_scale (`float`, *optional*, defaults to `0.05`): A certain analyst's tilt in units of daily volatility.
        name (`str`, *optional*, defaults to `"team"`): Name in reports.
    """

    def __init__(
        self,
        manager: PortfolioManager,
        analysts: Mapping[str, TradingAgent] | None = None,
        risk_manager: RiskManager | None = None,
        estimation_window: int = 60,
        view_scale: float = 0.05,
        name: str = "team",
    ):
        if estimation_window < 2:
            raise ValueError(f"estimation_window must be >= 2, got {estimation_window}.")
        if view_scale < 0:
            raise ValueError(f"view_scale must be >= 0, got {view_scale}.")
        self.manager = manager
        self.analysts = dict(analysts or {})
        self.risk_manager = risk_manager
        self.estimation_window = estimation_window
        self.view_scale = view_scale
        self.name = name
        self.reset()

    def reset(self, seed: int | None = None) -> None:
        for analyst in self.analysts.values():
            analyst.reset(seed)
        self.past_actions: dict[str, list[str]] = {asset: [] for asset in self.analysts}
        self.last_decision: dict = {}

    def target_weights(self, state: PortfolioState) -> np.ndarray:
        """Target weights of the assets and cash (last) for the next rebalance."""
        unknown = [asset for asset in self.analysts if asset not in state.assets]
        if unknown:
            raise ValueError(f"Analysts for {unknown}, which are not in the portfolio {state.assets}.")
        returns = state.trailing_returns(self.estimation_window)
        volatilities = returns.std(axis=0, ddof=1) if len(returns) >= 2 else np.zeros(len(state.assets))

        distributions = {}
        for asset, analyst in self.analysts.items():
            probs = np.asarray(
                analyst.action_distribution(asset_trading_state(state, asset, self.past_actions[asset]))
            )
            distributions[asset] = probs
            self.past_actions[asset].append(ACTIONS[int(np.argmax(probs))])
        views = None
        if distributions:
            views = analyst_views(
                distributions, {a: float(volatilities[state.assets.index(a)]) for a in distributions}, self.view_scale
            )

        invested = state.weights[:-1].sum()
        previous = state.weights[:-1] / invested if invested > 1e-12 else None
        allocation = self.manager.allocate(returns, state.assets, views=views, previous_weights=previous)

        if self.risk_manager is None:
            target = np.append(allocation.weights, 0.0)
            risk_notes, exposure = [], 1.0
        else:
            decision = self.risk_manager.apply(allocation.weights, allocation.covariance, state.past_values)
            target, risk_notes, exposure = decision.weights, decision.notes, decision.exposure
        self.last_decision = {
            "method": allocation.method,
            "reason": allocation.reason,
            "notes": allocation.notes,
            "views": views.to_dict() if views is not None else {},
            "distributions": {asset: [round(float(p), 6) for p in probs] for asset, probs in distributions.items()},
            "exposure": exposure,
            "risk_notes": risk_notes,
        }
        return target
