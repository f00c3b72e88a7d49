"""Trading metrics of a +1/0/-1 position series, as an `evaluate` metric loadable offline by path.

```python
import evaluate

metric = evaluate.load("flagtrl/evaluate_metrics/trading_metrics")  # a local folder: no network
metric.compute(predictions=positions, references=prices, convention="paper", trading_days_per_year=252)
```

The math lives in `flagtrl.metrics` (an installed package, so the copy `evaluate` makes of this script can import it).
"""

import datasets
import evaluate

from flagtrl.metrics import CONVENTIONS, compute_metrics, equity_from_positions


_CITATION = """\
@article{xiong2025flagtrader,
  title   = {FLAG-Trader: Fusion LLM-Agent with Gradient-based Reinforcement Learning for Financial Trading},
  author  = {Xiong, Guojun and others},
  journal = {arXiv preprint arXiv:2502.11433},
  year    = {2025}
}
@inproceedings{li2025investorbench,
  title     = {{INVESTORBENCH}: A Benchmark for Financial Decision-Making Tasks with {LLM}-based Agent},
  author    = {Li, Haohang and others},
  booktitle = {Proceedings of the 63rd Annual Meeting of the Association for Computational Linguistics},
  year      = {2025}
}
"""

_DESCRIPTION = """\
Cumulative return, Sharpe ratio, annualised volatility, maximum drawdown and Sortino ratio of a trading agent's daily
positions on one asset, under a named convention:

- `paper`: InvestorBench's evaluation code, as FLAG-Trader reports it. r_i = a_i * ln(p_{i+1}/p_i); CR = sum(r);
  AV = std(r, ddof=1) * sqrt(D); SR = (CR / ((n+1)/252)) / AV (252 even for crypto); MDD of prod(1 + r_i).
  Sortino is a flagtrl extension.
- `standard`: textbook metrics (they agree with empyrical) of the equity curve of an account exposed a_i * 100 % to
  the asset each day, V_{i+1} = V_i * (1 + a_i * (p_{i+1}/p_i - 1)), with simple returns and excess over a
  risk-free rate; adds the annualised return (CAGR) and the Calmar ratio.

Inputs are per-day pairs (position_i, price_i): for n+1 prices p_0..p_n the n positions a_0..a_{n-1} are paired with
p_0..p_{n-1}, and the position paired with the last price is ignored (nothing is held after the window ends). Pairs
must arrive in date order, from a single process.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `float`): the position on each day, +1 (long), 0 (flat) or -1 (short), held until the next
        day's price. The last one is ignored.
    references (`list` of `float`): the asset's price on each day, p_0..p_n, first and last dates of the window
        included.
    convention (`str`, defaults to `"paper"`): `"paper"` or `"standard"`.
    trading_days_per_year (`int`, required): 252 for stocks, 365 for crypto.
    risk_free_rate (`float`, defaults to `0.0`): annual risk-free rate, `standard` convention only.
Returns:
    A dict with `cumulative_return`, `sharpe_ratio`, `annualized_volatility`, `max_drawdown`, `sortino_ratio` (plain
    fractions, not percent), `convention`, `trading_days_per_year`, `num_periods` and, for `standard`,
    `annualized_return`, `calmar_ratio` and `risk_free_rate`.
Examples:
    >>> metric = evaluate.load("flagtrl/evaluate_metrics/trading_metrics")
    >>> results = metric.compute(
    ...     predictions=[1, 1, 1, 0], references=[100.0, 110.0, 99.0, 108.9], trading_days_per_year=252
    ... )
    >>> round(results["cumulative_return"], 5)  # ln(108.9 / 100)
    0.08526
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class TradingMetrics(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("float64"), "references": datasets.Value("float64")}
            ),
            reference_urls=["https://arxiv.org/abs/2502.11433", "https://arxiv.org/abs/2412.18174"],
        )

    def _compute(
        self,
        predictions,
        references,
        convention="paper",
        trading_days_per_year=None,
        risk_free_rate=0.0,
    ):
        if convention not in CONVENTIONS:
            raise ValueError(
                f"Unknown metrics convention {convention!r}; valid conventions are {', '.join(CONVENTIONS)}."
            )
        if trading_days_per_year is None:
            raise ValueError("Pass `trading_days_per_year` (252 for stocks, 365 for crypto).")
        # One pair per day: the position paired with the last price is never held, so it is dropped.
        positions, prices = list(predictions)[:-1], list(references)
        if convention == "paper":
            metrics = compute_metrics(
                "paper",
                prices=prices,
                positions=positions,
                trading_days_per_year=trading_days_per_year,
                risk_free_rate=risk_free_rate,
            )
        else:
            metrics = compute_metrics(
                "standard",
                equity=equity_from_positions(prices, positions),
                trading_days_per_year=trading_days_per_year,
                risk_free_rate=risk_free_rate,
            )
        return metrics.to_dict()
