"""StockBench-style benchmark of trading agents on held-out windows: `flagtrl benchmark --config recipe.yaml`.

- `config`: `BenchmarkConfig` / `AgentSpec`, parsed from YAML by `trl.TrlParser`;
- `contamination`: knowledge cutoff vs evaluation window (warn, or refuse with `--strict`);
- `runner`: agents x assets x windows x seeds, one resumable JSON per run;
- `report`: the paper's median-Sharpe rule, mean ± std, Markdown/JSON/CSV;
- `plots`: equity curves against buy-and-hold and actions over time (PNG).
"""

from .config import AgentSpec, BenchmarkConfig, parse_benchmark_config
from .contamination import ContaminationError, check_window, parse_cutoff, resolve_cutoff
from .report import median_sharpe_run, summarize
from .runner import build_agent, run_benchmark


__all__ = [
    "AgentSpec",
    "BenchmarkConfig",
    "ContaminationError",
    "build_agent",
    "check_window",
    "median_sharpe_run",
    "parse_benchmark_config",
    "parse_cutoff",
    "resolve_cutoff",
    "run_benchmark",
    "summarize",
]
