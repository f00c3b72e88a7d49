"""StockBench-style benchmark of trading agents on held-out windows: `flagtrl benchmark --config recipe.yaml`.

- `config`: `BenchmarkConfig` / `AgentSpec`, parsed from YAML by `trl.TrlParser`;
- `contamination`: knowledge cutoff vs evaluation window (warn, or refuse with `--strict`);
- `runner`: agents x assets x windows x seeds, one resumable JSON per run;
- `report`: the paper's median-Sharpe rule, mean ± std, Markdown/JSON/CSV;
- `plots`: equity curves against buy-and-hold and actions over time, the Sharpe differences across windows (PNG);
- `differences` (and `difference_tables`): each agent against buy-and-hold with bootstrap intervals and PSR, across
  many windows, and real against anonymised inputs;
- `provenance`: versions, hardware, dtype, seed and prompt version of each run;
- `distributed`: the ranks of `torchrun` / `accelerate launch`, each running a share of the runs.
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
