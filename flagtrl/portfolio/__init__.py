"""Portfolio mode: a multi-asset environment, a team of analysts with a max-Sharpe manager and a risk manager.

- `environment`: `PortfolioEnv` (N assets + cash, target-weight actions, next-close rebalancing with costs);
- `views`: analyst distributions → Black-Litterman views;
- `manager`: `PortfolioManager`, long-only max-Sharpe weights with skfolio (and its documented fallbacks);
- `risk`: `RiskManager`, position caps, volatility target and drawdown brake;
- `team`: `Team`, the policy that chains them;
- `baselines`: equal weight, buy-and-hold of each asset, max-Sharpe without views;
- `backtest`, `report`, `comparison`: run policies through a window, score them, write the report (`flagtrl portfolio`).
"""

from .backtest import PortfolioBacktestResult, portfolio_metrics, run_portfolio_backtest
from .baselines import BuyAndHoldPolicy, EqualWeightPolicy, PortfolioPolicy, max_sharpe_policy
from .config import PortfolioConfig
from .environment import AlignedMarket, PortfolioEnv, PortfolioState, align_market
from .manager import Allocation, FixedMomentsPrior, PortfolioManager
from .risk import RiskManager
from .team import AnalystCommittee, Team
from .views import AssetViews, analyst_views, view_confidence, view_tilt


__all__ = [
    "AlignedMarket",
    "Allocation",
    "AnalystCommittee",
    "AssetViews",
    "BuyAndHoldPolicy",
    "EqualWeightPolicy",
    "FixedMomentsPrior",
    "PortfolioBacktestResult",
    "PortfolioConfig",
    "PortfolioEnv",
    "PortfolioManager",
    "PortfolioPolicy",
    "PortfolioState",
    "RiskManager",
    "Team",
    "align_market",
    "analyst_views",
    "max_sharpe_policy",
    "portfolio_metrics",
    "run_portfolio_backtest",
    "view_confidence",
    "view_tilt",
]
