"""`PortfolioConfig`: the settings of a portfolio comparison (`flagtrl portfolio --config <recipe.yaml>`)."""

from __future__ import annotations

from dataclasses import dataclass, field


BASELINES = ("max_sharpe", "max_sharpe_risk", "equal_weight", "buy_and_hold")


@dataclass
class PortfolioConfig:
    r"""
    Settings of `flagtrl portfolio`: the team against the baselines on one window of a prepared dataset.

    Parameters:
        dataset_name (`str`):
            Folder of a prepared market dataset (`datasets/prepare_*.py`).
        assets (`list[str]`):
            Tickers of the portfolio, e.g. `[MSFT, JNJ, UVV, HON, NFLX]`.
        start (`str`), end (`str`):
            Evaluation window, inclusive ISO dates. History before `start` feeds the estimates and the analysts.
        output_dir (`str`):
            Folder of the report (tables, JSON, CSV, plots).
        initial_cash (`float`, *optional*, defaults to `100000.0`):
            Starting cash; every policy starts all in cash.
        transaction_cost_bps (`float`, *optional*, defaults to `10.0`):
            Cost of each asset's traded notional, in basis points.
        risk_free_rate (`float`, *optional*, defaults to `0.0`):
            Annual risk-free rate: r_f of the max-Sharpe problem (compounded to daily) and of the `standard` metrics.
        analysts (`list[str]`, *optional*, defaults to `["momentum", "ma_crossover"]`):
            The analyst of every asset: agent specs as `flagtrl backtest --agent` takes them (`momentum`,
            `ma_crossover`, `buy_and_hold`, `random`, `flag:<adapter>`); several form a committee whose distribution is
            their mean. An empty list gives the team no views.
        asset_analysts (`list[str]`, *optional*, defaults to `[]`):
            Per-asset overrides `ASSET=spec[+spec...]`, e.g. `NFLX=flag:outputs/smollm2-135m-ppo-nflx`.
        view_scale (`float`, *optional*, defaults to `0.05`):
            A certain analyst's expected-return tilt in units of the asset's daily volatility.
        estimation_window (`int`, *optional*, defaults to `60`):
            Trailing trading days of returns behind the mean and covariance estimates.
        min_observations (`int`, *optional*, defaults to `20`):
            Fewest returns needed to estimate; the manager holds equal weight below.
        mean_estimator (`str`, *optional*, defaults to `"shrunk"`):
            `shrunk` (James-Stein, skfolio `ShrunkMu`) or `empirical`.
        covariance_estimator (`str`, *optional*, defaults to `"ledoit_wolf"`):
            `ledoit_wolf`, `oas`, `shrunk` or `empirical`.
        black_litterman_tau (`float`, *optional*, defaults to `0.05`):
            Black-Litterman's uncertainty of the prior mean.
        max_weight (`float`, *optional*, defaults to `0.4`):
            The risk manager's cap on each asset's weight (also a constraint of the team's optimisation).
        volatility_target (`float` or `None`, *optional*, defaults to `0.2`):
            Annualised volatility the risk manager scales down to; `None` switches it off.
        drawdown_limit (`float` or `None`, *optional*, defaults to `0.1`):
            Drawdown beyond which the risk manager brakes; `None` switches it off.
        drawdown_exposure (`float`, *optional*, defaults to `0.5`):
            Multiplier on risky exposure while braking.
        baselines (`list[str]`, *optional*, defaults to `["max_sharpe", "max_sharpe_risk", "equal_weight", "buy_and_hold"]`):
            Policies the team is compared with: `max_sharpe` (the manager without views, fully invested),
            `max_sharpe_risk` (without views, with the risk manager: isolates what the views add), `equal_weight`
            (1/N rebalanced daily) and `buy_and_hold` (one row per asset, all in that asset).
        seed (`int`, *optional*, defaults to `0`):
            Seed of the environment and of the agents.
    """

    dataset_name: str = field(metadata={"help": "Folder of a prepared market dataset."})
    assets: list[str] = field(metadata={"help": "Tickers of the portfolio."})
    start: str = field(metadata={"help": "First day of the evaluation window (YYYY-MM-DD)."})
    end: str = field(metadata={"help": "Last day of the evaluation window (YYYY-MM-DD)."})
    output_dir: str = field(metadata={"help": "Folder of the report."})
    initial_cash: float = field(default=100_000.0, metadata={"help": "Starting cash."})
    transaction_cost_bps: float = field(default=10.0, metadata={"help": "Cost of traded notional, in basis points."})
    risk_free_rate: float = field(default=0.0, metadata={"help": "Annual risk-free rate."})
    analysts: list[str] = field(
        default_factory=lambda: ["momentum", "ma_crossover"],
        metadata={"help": "Agent specs of every asset's analyst committee (empty: no views)."},
    )
    asset_analysts: list[str] = field(
        default_factory=list, metadata={"help": "Per-asset overrides ASSET=spec[+spec...]."}
    )
    view_scale: float = field(default=0.05, metadata={"help": "A certain analyst's tilt, in daily volatilities."})
    estimation_window: int = field(default=60, metadata={"help": "Trailing days behind the estimates."})
    min_observations: int = field(default=20, metadata={"help": "Fewest returns needed to estimate."})
    mean_estimator: str = field(default="shrunk", metadata={"help": "shrunk or empirical."})
    covariance_estimator: str = field(default="ledoit_wolf", metadata={"help": "ledoit_wolf, oas, shrunk, empirical."})
    black_litterman_tau: float = field(default=0.05, metadata={"help": "Black-Litterman tau."})
    max_weight: float = field(default=0.4, metadata={"help": "Cap on each asset's weight."})
    volatility_target: float | None = field(default=0.2, metadata={"help": "Annualised volatility target."})
    drawdown_limit: float | None = field(default=0.1, metadata={"help": "Drawdown beyond which exposure is cut."})
    drawdown_exposure: float = field(default=0.5, metadata={"help": "Exposure multiplier while braking."})
    baselines: list[str] = field(
        default_factory=lambda: list(BASELINES), metadata={"help": f"Baselines among {list(BASELINES)}."}
    )
    seed: int = field(default=0, metadata={"help": "Seed of the environment and of the agents."})

    def __post_init__(self):
        if isinstance(self.assets, str):  # `assets: MSFT,JNJ` in YAML or on the command line
            self.assets = [a for a in self.assets.split(",") if a.strip()]
        self.assets = [a.strip().upper() for a in self.assets]
        if not self.assets:
            raise ValueError("assets: name at least one ticker.")
        unknown = [b for b in self.baselines if b not in BASELINES]
        if unknown:
            raise ValueError(f"Unknown baseline(s) {unknown}; choose among {list(BASELINES)}.")
        if self.start > self.end:
            raise ValueError(f"The window starts on {self.start}, after its end {self.end}.")
        if self.max_weight * len(self.assets) < 1:
            raise ValueError(
                f"max_weight={self.max_weight} cannot hold a fully invested portfolio of {len(self.assets)} assets "
                f"(max_weight · N must be >= 1)."
            )
        for item in self.asset_analysts:
            asset, _, specs = item.partition("=")
            if not specs or asset.strip().upper() not in self.assets:
                raise ValueError(
                    f"asset_analysts: {item!r} must read ASSET=spec[+spec...] with ASSET in {self.assets}."
                )

    def analyst_specs(self) -> dict[str, list[str]]:
        """The agent specs of each asset's analyst committee (assets without any get no view)."""
        specs = {asset: list(self.analysts) for asset in self.assets}
        for item in self.asset_analysts:
            asset, _, given = item.partition("=")
            specs[asset.strip().upper()] = [s.strip() for s in given.split("+") if s.strip()]
        return {asset: s for asset, s in specs.items() if s}
