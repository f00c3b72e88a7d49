"""The portfolio manager: long-only maximum-Sharpe weights over the risky assets, from estimates plus analyst views.

w* = argmax_w (mu_w - r_f) / sqrt(w' Sigma w)  subject to  sum w = 1, 0 <= w_i <= max_weight,

solved by skfolio's `MeanRisk(objective_function=MAXIMIZE_RATIO, risk_measure=VARIANCE)` (a convex reformulation
solved with CLARABEL through cvxpy). mu and Sigma come from a trailing window of daily returns: a shrunk mean
(James-Stein, `ShrunkMu`) and a shrunk covariance (Ledoit-Wolf) by default, then the analysts' views blended in with
skfolio's `BlackLitterman` prior (`flagtrl.portfolio.views`). Weights are over the risky assets only; how much stays
in cash is the risk manager's decision (`flagtrl.portfolio.risk`).

Degenerate cases, and what the manager does (the `Allocation` says which path it took and why):

- fewer than `min_observations` returns in the window → equal weight (`method="equal_weight"`);
- an asset whose price did not move over the window (zero variance, which the estimators reject) → left out of the
  optimisation with weight 0, and noted (one asset left to optimise gets weight 1, through the same path);
- the shrunk mean with a single asset, or with assets whose sample means are all equal: James-Stein shrinks each mean
  towards the assets' average, which is then the mean itself, and skfolio's estimate is 0/0 → the sample mean (the
  shrinkage would change nothing), noted;
- a singular sample covariance (collinear assets, fewer days than assets) → the shrinkage estimator makes it invertible
  (skfolio also projects to the nearest positive-definite matrix); the rank is noted;
- no asset's expected return above r_f (e.g. every view bearish): the maximum Sharpe ratio is negative and the
  problem has no long-only solution → the long-only minimum-variance portfolio (`method="min_variance"`);
- the solver fails, or returns non-finite weights → the previous weights when given (`method="previous_weights"`),
  else equal weight (`method="equal_weight"`).

Solver weights are clipped at 0 (CLARABEL returns values like -1e-9) and renormalised to sum to 1.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from skfolio import RiskMeasure
from skfolio.moments import OAS, EmpiricalCovariance, EmpiricalMu, LedoitWolf, ShrunkCovariance, ShrunkMu
from skfolio.optimization import MeanRisk, ObjectiveFunction
from skfolio.prior import BasePrior, BlackLitterman, EmpiricalPrior, ReturnDistribution

from .views import AssetViews, black_litterman_views


logger = logging.getLogger(__name__)

MEAN_ESTIMATORS = {"empirical": EmpiricalMu, "shrunk": ShrunkMu}
COVARIANCE_ESTIMATORS = {
    "empirical": EmpiricalCovariance,
    "ledoit_wolf": LedoitWolf,
    "oas": OAS,
    "shrunk": ShrunkCovariance,
}
METHODS = ("max_sharpe", "min_variance", "previous_weights", "equal_weight")


class FixedMomentsPrior(BasePrior):
    """A skfolio prior with given moments: feeds the optimiser an exact mean and covariance, bypassing estimation.

    Args:
        mu (`np.ndarray`): Expected returns, one per asset.
        covariance (`np.ndarray`): Covariance matrix.
    """

    def __init__(self, mu: np.ndarray | None = None, covariance: np.ndarray | None = None) -> None:
        self.mu = mu
        self.covariance = covariance

    def fit(self, X, y=None, **fit_params) -> FixedMomentsPrior:
        self.return_distribution_ = ReturnDistribution(
            mu=np.asarray(self.mu, dtype=np.float64),
            covariance=np.asarray(self.covariance, dtype=np.float64),
            returns=np.asarray(X, dtype=np.float64),
        )
        return self


@dataclass
class Allocation:
    """The manager's decision for one day.

    Args:
        weights (`np.ndarray`): Weights of the risky assets, >= 0, summing to 1.
        method (`str`): `max_sharpe`, or the fallback taken: `min_variance`, `previous_weights`, `equal_weight`.
        reason (`str`, *optional*): Why a fallback was taken.
        expected_returns (`np.ndarray`, *optional*): The (posterior) mean the optimiser used, per period.
        covariance (`np.ndarray`, *optional*): The (posterior) covariance the optimiser used, per period.
        notes (`list[str]`): Other things worth knowing (assets left out, a singular sample covariance).
    """

    weights: np.ndarray
    method: str
    reason: str | None = None
    expected_returns: np.ndarray | None = None
    covariance: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def is_fallback(self) -> bool:
        return self.method != "max_sharpe"


def equal_weights(num_assets: int) -> np.ndarray:
    return np.full(num_assets, 1.0 / num_assets)


def clean_weights(weights: np.ndarray) -> np.ndarray:
    """Clip a solver's tiny negative weights to 0 and renormalise to sum to 1."""
    weights = np.clip(np.asarray(weights, dtype=np.float64), 0.0, None)
    return weights / weights.sum()


class PortfolioManager:
    """Sets the long-only maximum-Sharpe weights of the risky assets (see the module docstring).

    Args:
        mean_estimator (`str`, *optional*, defaults to `"shrunk"`): `shrunk` (James-Stein) or `empirical`.
        covariance_estimator (`str`, *optional*, defaults to `"ledoit_wolf"`): `ledoit_wolf`, `oas`, `shrunk` or
            `empirical`.
        risk_free_rate (`float`, *optional*, defaults to `0.0`): r_f *per period* (daily for daily returns).
        max_weight (`float`, *optional*, defaults to `1.0`): Upper bound on each asset's weight (the risk manager's
            position cap); `max_weight · N` must be at least 1.
        tau (`float`, *optional*, defaults to `0.05`): Black-Litterman's uncertainty of the prior mean.
        min_observations (`int`, *optional*, defaults to `20`): Fewest returns needed to estimate; equal weight below.
        solver (`str`, *optional*, defaults to `"CLARABEL"`): cvxpy solver used by skfolio.
    """

    def __init__(
        self,
        mean_estimator: str = "shrunk",
        covariance_estimator: str = "ledoit_wolf",
        risk_free_rate: float = 0.0,
        max_weight: float = 1.0,
        tau: float = 0.05,
        min_observations: int = 20,
        solver: str = "CLARABEL",
    ):
        if mean_estimator not in MEAN_ESTIMATORS:
            raise ValueError(f"Unknown mean_estimator {mean_estimator!r}; choose one of {sorted(MEAN_ESTIMATORS)}.")
        if covariance_estimator not in COVARIANCE_ESTIMATORS:
            raise ValueError(
                f"Unknown covariance_estimator {covariance_estimator!r}; choose one of {sorted(COVARIANCE_ESTIMATORS)}."
            )
        if not 0 < max_weight <= 1:
            raise ValueError(f"max_weight must be in (0, 1], got {max_weight}.")
        if min_observations < 2:
            raise ValueError(f"min_observations must be >= 2, got {min_observations}.")
        self.mean_estimator = mean_estimator
        self.covariance_estimator = covariance_estimator
        self.risk_free_rate = risk_free_rate
        self.max_weight = max_weight
        self.tau = tau
        self.min_observations = min_observations
        self.solver = solver

    # --- estimation ------------------------------------------------------------------------------------------
    def prior_estimator(self, mean_estimator: str | None = None) -> EmpiricalPrior:
        """A fresh skfolio prior that estimates the mean (with `mean_estimator`, defaults to the manager's) and the
        covariance from returns."""
        return EmpiricalPrior(
            mu_estimator=MEAN_ESTIMATORS[mean_estimator or self.mean_estimator](),
            covariance_estimator=COVARIANCE_ESTIMATORS[self.covariance_estimator](),
        )

    def mean_estimator_for(self, returns: np.ndarray) -> tuple[str, str | None]:
        """The mean estimator that applies to these returns, and a note when it is not the configured one.

        James-Stein (`shrunk`) pulls each sample mean towards their cross-sectional average by a factor divided by
        their dispersion around it: with one asset, or equal sample means, that dispersion is 0 and skfolio returns
        NaN (or, for means equal up to rounding, a mean blown up by a factor of 1/rounding), while the shrinkage has
        nothing to do; the sample mean is the same estimate, well defined.
        """
        means = returns.mean(axis=0)
        if self.mean_estimator == "shrunk" and np.ptp(means) <= 1e-9 * np.abs(means).max():
            what = "one asset" if len(means) == 1 else "equal sample means"
            return "empirical", f"sample mean used: the shrunk (James-Stein) mean is undefined with {what}"
        return self.mean_estimator, None

    def allocate(
        self,
        returns: np.ndarray,
        assets: list[str],
        views: AssetViews | None = None,
        previous_weights: np.ndarray | None = None,
    ) -> Allocation:
        """Weights from a window of daily returns (shape (days, N)), plus optional views.

        Args:
            returns (`np.ndarray`): Simple returns, oldest first, one column per asset.
            assets (`list[str]`): Asset names, in column order.
            views (`AssetViews`, *optional*): The analysts' views.
            previous_weights (`np.ndarray`, *optional*): Current risky weights (summing to 1), the solver-failure
                fallback.
        """
        returns = np.asarray(returns, dtype=np.float64)
        num_assets = len(assets)
        if returns.ndim != 2 or returns.shape[1] != num_assets:
            raise ValueError(f"returns must have shape (days, {num_assets}), got {returns.shape}.")
        self._check_feasible(num_assets)
        if len(returns) < self.min_observations:
            return Allocation(
                equal_weights(num_assets),
                "equal_weight",
                f"insufficient_history: {len(returns)} returns, {self.min_observations} needed",
            )
        notes = []
        active = returns.std(axis=0) > 1e-12
        if not active.any():
            return Allocation(equal_weights(num_assets), "equal_weight", "no asset moved over the window")
        if not active.all():
            notes.append(f"left out (no price change over the window): {[a for a, k in zip(assets, active) if not k]}")
        rank = np.linalg.matrix_rank(np.atleast_2d(np.cov(returns[:, active], rowvar=False)))
        if rank < active.sum():
            notes.append(
                f"sample covariance singular (rank {rank} < {active.sum()}); {self.covariance_estimator} estimate used"
            )
        active_assets = [a for a, k in zip(assets, active) if k]
        mean_estimator, note = self.mean_estimator_for(returns[:, active])
        notes += [note] if note else []
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                prior = self.prior_estimator(mean_estimator).fit(self._frame(returns[:, active])).return_distribution_
            # e.g. "not positive definite ... nearest positive definite covariance": worth a note, not a console line.
            notes += list(dict.fromkeys(str(w.message) for w in caught if issubclass(w.category, UserWarning)))
        except Exception as error:  # estimators reject degenerate data with several exception types
            fallback = self._fallback(num_assets, previous_weights, f"estimation failed: {error}")
            fallback.notes = notes
            return fallback
        if views is not None and len(views):
            keep = [i for i, a in enumerate(views.assets) if a in active_assets]
            views = AssetViews([views.assets[i] for i in keep], views.tilts[keep], views.confidences[keep])
        allocation = self.allocate_from_moments(prior.mu, prior.covariance, active_assets, views=views)
        if allocation.method in ("previous_weights", "equal_weight"):
            # A failure on the active assets falls back on the whole portfolio's previous weights, else on equal
            # weights of the active assets (an asset left out stays out).
            fallback = self._fallback(num_assets, previous_weights, allocation.reason)
            if fallback.method == "equal_weight":
                fallback.weights = np.where(active, 1.0 / active.sum(), 0.0)
            allocation.weights, allocation.method = fallback.weights, fallback.method
        else:
            weights = np.zeros(num_assets)
            weights[active] = allocation.weights
            allocation.weights = weights
        if allocation.expected_returns is not None and not active.all():
            # Back to the whole portfolio: a left-out asset did not move, so its mean and covariances are 0.
            mu, covariance = np.zeros(num_assets), np.zeros((num_assets, num_assets))
            mu[active] = allocation.expected_returns
            covariance[np.ix_(active, active)] = allocation.covariance
            allocation.expected_returns, allocation.covariance = mu, covariance
        allocation.notes = notes + allocation.notes
        return allocation

    # --- optimisation ----------------------------------------------------------------------------------------
    def allocate_from_moments(
        self,
        mu: np.ndarray,
        covariance: np.ndarray,
        assets: list[str],
        views: AssetViews | None = None,
        previous_weights: np.ndarray | None = None,
    ) -> Allocation:
        """Weights from a given mean and covariance (per period), plus optional views: no estimation.

        Args:
            mu (`np.ndarray`): Expected returns of the assets.
            covariance (`np.ndarray`): Their covariance matrix.
            assets (`list[str]`): Asset names, in order.
            views (`AssetViews`, *optional*): The analysts' views, blended in with Black-Litterman.
            previous_weights (`np.ndarray`, *optional*): The solver-failure fallback.
        """
        mu = np.asarray(mu, dtype=np.float64)
        covariance = np.asarray(covariance, dtype=np.float64)
        num_assets = len(assets)
        if mu.shape != (num_assets,) or covariance.shape != (num_assets, num_assets):
            raise ValueError(
                f"mu must have shape ({num_assets},) and covariance ({num_assets}, {num_assets}); got {mu.shape} and "
                f"{covariance.shape}."
            )
        if not (np.all(np.isfinite(mu)) and np.all(np.isfinite(covariance))):
            return self._fallback(num_assets, previous_weights, "non-finite mean or covariance")
        notes = []
        max_weight = self.max_weight
        if max_weight * num_assets < 1:
            # Reached when assets were left out: the cap is loosened so that a fully invested solution exists.
            max_weight = 1.0 / num_assets
            notes.append(f"max_weight raised to 1/{num_assets} for the {num_assets} assets optimised")
        names = [f"asset_{i}" for i in range(num_assets)]
        # skfolio needs a returns table to fit on; with fixed moments only its shape and column names matter.
        frame = pd.DataFrame(np.zeros((2, num_assets)), columns=names)
        try:
            distribution = FixedMomentsPrior(mu, covariance).fit(frame).return_distribution_
            if views is not None and len(views):
                equations, confidences = black_litterman_views(views, mu, assets, names)
                if equations:
                    blended = BlackLitterman(
                        views=equations,
                        view_confidences=np.array(confidences),
                        prior_estimator=FixedMomentsPrior(mu, covariance),
                        tau=self.tau,
                    ).fit(frame)
                    distribution = blended.return_distribution_
        except Exception as error:
            return self._fallback(num_assets, previous_weights, f"view blending failed: {error}")
        posterior_mu, posterior_covariance = distribution.mu, distribution.covariance

        if np.max(posterior_mu) - self.risk_free_rate <= 0:
            method, reason = "min_variance", "no asset's expected return exceeds the risk-free rate"
            objective = ObjectiveFunction.MINIMIZE_RISK
        else:
            method, reason, objective = "max_sharpe", None, ObjectiveFunction.MAXIMIZE_RATIO
        model = MeanRisk(
            objective_function=objective,
            risk_measure=RiskMeasure.VARIANCE,
            min_weights=0.0,
            max_weights=max_weight,
            budget=1.0,
            risk_free_rate=self.risk_free_rate,
            prior_estimator=FixedMomentsPrior(posterior_mu, posterior_covariance),
            solver=self.solver,
        )
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # cvxpy/skfolio solver chatter; failures raise and are handled below
                model.fit(frame)
            weights = np.asarray(model.weights_, dtype=np.float64)
            if not np.all(np.isfinite(weights)) or weights.clip(0.0, None).sum() <= 0:
                raise ValueError(f"the solver returned weights {weights.tolist()}")
        except Exception as error:
            fallback = self._fallback(num_assets, previous_weights, f"{method} solver failed: {error}")
            fallback.expected_returns, fallback.covariance = posterior_mu, posterior_covariance
            fallback.notes = notes
            return fallback
        return Allocation(clean_weights(weights), method, reason, posterior_mu, posterior_covariance, notes)

    # --- helpers ---------------------------------------------------------------------------------------------
    def _check_feasible(self, num_assets: int) -> None:
        if self.max_weight * num_assets < 1 - 1e-12:
            raise ValueError(
                f"max_weight={self.max_weight} cannot hold a fully invested portfolio of {num_assets} assets "
                f"(max_weight · N must be >= 1)."
            )

    @staticmethod
    def _frame(returns: np.ndarray) -> pd.DataFrame:
        return pd.DataFrame(returns, columns=[f"asset_{i}" for i in range(returns.shape[1])])

    @staticmethod
    def _fallback(num_assets: int, previous_weights: np.ndarray | None, reason: str) -> Allocation:
        logger.info("Portfolio manager fallback: %s", reason)
        if previous_weights is not None:
            previous = np.asarray(previous_weights, dtype=np.float64)
            if previous.shape == (num_assets,) and np.all(np.isfinite(previous)) and previous.clip(0).sum() > 0:
                return Allocation(clean_weights(previous), "previous_weights", reason)
        return Allocation(equal_weights(num_assets), "equal_weight", reason)
