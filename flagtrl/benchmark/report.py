"""The benchmark's report: the paper's reporting rule, mean ± std over seeds, contamination, and every run.

Files written to the output folder:

- `report.md`: per metric convention and window, a table laid out like FLAG-Trader's Tables 1-2 (agents as rows, a
  CR/SR/AV/MDD/Sortino column group per asset, best per column in bold) of each agent's *median-Sharpe run*; then
  mean ± std over seeds, the contamination verdicts, the LLM answer statistics and the failed runs;
- `results.json`: the configuration, the summary per (agent, asset, window) and every run's metrics (strict JSON:
  non-finite values as the strings "inf", "-inf", "nan", `flagtrl.strict_json`);
- `runs.csv`: one row per run (both conventions), the rows the tables were taken from marked;
- `plots/*.png` (see `flagtrl.benchmark.plots`).

The paper's rule (FLAG-Trader §5: "the test run at the median of the metrics over runs"): for each agent and asset, the
run whose Sharpe ratio is the median over its seeds, all its metrics reported together (never a per-metric median
mixing runs). With an even number of runs the lower of the two middle runs is taken. Runs are picked per convention,
by that convention's Sharpe ratio.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from ..metrics import CONVENTION_DESCRIPTIONS, CONVENTIONS, TradingMetrics
from ..metrics_table import TABLE_COLUMNS, WIPED_OUT_MARK, WIPED_OUT_NOTE, format_metrics_table
from ..strict_json import write_json
from .contamination import CONTAMINATED, UNKNOWN, ContaminationCheck
from .plots import plot_benchmark
from .selection import median_sharpe_run


METRIC_FIELDS = ("cumulative_return", "sharpe_ratio", "annualized_volatility", "max_drawdown", "sortino_ratio")
CONTAMINATION_MARK = " †"


def metrics_of(record: dict, convention: str) -> TradingMetrics:
    return TradingMetrics(**record["metrics"][convention])


def mean_std(records: list[dict], convention: str) -> tuple[dict[str, float], dict[str, float]]:
    """Mean and sample standard deviation (ddof=1; 0 for a single run) of each metric over the runs."""
    means, stds = {}, {}
    for name in METRIC_FIELDS:
        values = np.array([r["metrics"][convention][name] for r in records], dtype=np.float64)
        with np.errstate(invalid="ignore"):  # an infinite Sortino (no downside) has an undefined spread: NaN
            means[name] = float(np.mean(values))
            stds[name] = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return means, stds


def summarize(records: list[dict]) -> list[dict]:
    """One entry per (agent, asset, window) with finished runs: the median-Sharpe runs and mean ± std."""
    groups: dict[tuple, list[dict]] = {}
    for record in records:
        if record.get("status") == "ok":
            groups.setdefault((record["agent"], record["asset"], record["start"], record["end"]), []).append(record)
    summary = []
    for (agent, asset, start, end), runs in groups.items():
        entry = {"agent": agent, "asset": asset, "start": start, "end": end, "runs": len(runs), "seeds": []}
        entry["seeds"] = sorted(r["seed"] for r in runs)
        entry["median_seed"], entry["median"], entry["mean"], entry["std"] = {}, {}, {}, {}
        for convention in CONVENTIONS:
            chosen = median_sharpe_run(runs, convention)
            entry["median_seed"][convention] = chosen["seed"]
            entry["median"][convention] = chosen["metrics"][convention]
            entry["mean"][convention], entry["std"][convention] = mean_std(runs, convention)
        entry["wiped_out_runs"] = sum(bool(r.get("wiped_out")) for r in runs)
        entry["contamination"] = runs[0].get("contamination", {}).get("status")
        summary.append(entry)
    return summary


def _label(agent: str, contaminated: set[tuple[str, str, str]], start: str, end: str) -> str:
    return agent + CONTAMINATION_MARK if (agent, start, end) in contaminated else agent


def _number(value: float, scale: float) -> str:
    return f"{round(value * scale, 3) + 0.0:.3f}"


def mean_std_table(summary: list[dict], convention: str) -> str:
    """Markdown: one row per (window, asset, agent), each column `mean ± std` over the seeds; wiped-out runs are counted
    in the Runs column and explained below the table."""
    headers = ["Window", "Asset", "Agent", "Runs"] + [header for header, *_ in TABLE_COLUMNS]
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join([":---"] * 3 + ["---:"] * (len(headers) - 3)) + " |"]
    for entry in summary:
        runs = str(entry["runs"])
        if entry.get("wiped_out_runs"):
            runs += f" ({entry['wiped_out_runs']}{WIPED_OUT_MARK})"
        cells = [f"{entry['start']} → {entry['end']}", entry["asset"], entry["agent"], runs]
        for _, name, scale, _ in TABLE_COLUMNS:
            mean, std = entry["mean"][convention][name], entry["std"][convention][name]
            cells.append(
                f"{_number(mean, scale)} ± {_number(std, scale)}" if entry["runs"] > 1 else _number(mean, scale)
            )
        lines.append("| " + " | ".join(cells) + " |")
    if any(entry.get("wiped_out_runs") for entry in summary):
        lines += ["", WIPED_OUT_NOTE]
    return "\n".join(lines)


def median_tables(summary: list[dict], convention: str, contaminated: set) -> list[tuple[str, str]]:
    """(heading, table) per window: the paper-style wide table of the median-Sharpe runs."""
    by_window: dict[tuple[str, str], dict[str, dict[str, TradingMetrics]]] = {}
    for entry in summary:
        assets = by_window.setdefault((entry["start"], entry["end"]), {})
        label = _label(entry["agent"], contaminated, entry["start"], entry["end"])
        assets.setdefault(entry["asset"], {})[label] = TradingMetrics(**entry["median"][convention])
    tables = []
    for (start, end), results in sorted(by_window.items()):
        table = format_metrics_table(results, convention, layout="wide")
        tables.append((f"{start} → {end} ({', '.join(results)})", table.split("\n", 2)[2]))
    return tables


def _contamination_rows(checks: list[ContaminationCheck]) -> list[str]:
    rows = {}
    for check in checks:
        key = (check.agent, check.status, check.cutoff, check.source)
        rows.setdefault(key, []).append(f"{check.window_start} → {check.window_end}")
    lines = [
        "| Agent | Knowledge cutoff | Source | Windows | Windows after the cutoff? |",
        "| :--- | :--- | :--- | :--- | :--- |",
    ]
    for (agent, status, cutoff, source), windows in rows.items():
        verdict = {
            CONTAMINATED: "**no — starts before the cutoff**",
            UNKNOWN: "unknown — no cutoff given or stated",
        }.get(status, "yes" if status.startswith("after") else status)
        lines.append(f"| {agent} | {cutoff or '-'} | {source} | {', '.join(sorted(set(windows)))} | {verdict} |")
    return lines


def _answer_rows(records: list[dict]) -> list[str]:
    lines = []
    for record in records:
        stats = record.get("agent_stats")
        if record.get("status") != "ok" or not stats:
            continue
        examples = "; ".join(repr(e) for e in stats.get("unparseable_examples", [])[:2]) or "-"
        lines.append(
            f"| {record['agent']} | {record['asset']} | {record['seed']} | {stats.get('decisions', 0)} | "
            f"{stats.get('unparseable', 0)} | {stats.get('masked', 0)} | {examples} |"
        )
    if not lines:
        return []
    header = [
        "| Agent | Asset | Seed | Decisions | Unparseable (→ hold) | Masked (→ hold) | Unparseable examples |",
        "| :--- | :--- | ---: | ---: | ---: | ---: | :--- |",
    ]
    return header + lines


def write_csv(path: Path, records: list[dict], summary: list[dict]) -> None:
    selected = {
        (e["agent"], e["asset"], e["start"], e["end"], e["median_seed"][c], c) for e in summary for c in CONVENTIONS
    }
    columns = ["agent", "agent_type", "asset", "start", "end", "seed", "status", "error"]
    columns += [f"{c}_{name}" for c in CONVENTIONS for name in METRIC_FIELDS]
    columns += ["invalid_actions", "decisions", "unparseable", "masked", "contamination", "knowledge_cutoff"]
    columns += ["elapsed_s"] + [f"median_run_{c}" for c in CONVENTIONS]
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for record in records:
            row = {
                k: record.get(k) for k in ("agent", "agent_type", "asset", "start", "end", "seed", "status", "error")
            }
            for convention in CONVENTIONS:
                metrics = (record.get("metrics") or {}).get(convention, {})
                row.update({f"{convention}_{name}": metrics.get(name) for name in METRIC_FIELDS})
                key = (record["agent"], record["asset"], record["start"], record["end"], record["seed"], convention)
                row[f"median_run_{convention}"] = key in selected
            stats = record.get("agent_stats") or {}
            contamination = record.get("contamination") or {}
            row.update(
                invalid_actions=record.get("invalid_actions"),
                decisions=stats.get("decisions"),
                unparseable=stats.get("unparseable"),
                masked=stats.get("masked"),
                contamination=contamination.get("status"),
                knowledge_cutoff=contamination.get("cutoff"),
                elapsed_s=record.get("elapsed_s"),
            )
            writer.writerow(row)


def write_report(config, records: list[dict], checks: list[ContaminationCheck], timing: dict) -> dict:
    """Write report.md, results.json, runs.csv and the plots; return the summary (also in results.json)."""
    output_dir = Path(config.output_dir)
    order = {spec.name: i for i, spec in enumerate(config.agent_specs)}
    records = sorted(
        records, key=lambda r: (r["start"], config.assets.index(r["asset"]), order[r["agent"]], r["seed"])
    )
    summary = summarize(records)
    contaminated = {(c.agent, c.window_start, c.window_end) for c in checks if c.status == CONTAMINATED}
    failed = [r for r in records if r.get("status") != "ok"]

    files = {"report": str(output_dir / "report.md"), "json": str(output_dir / "results.json")}
    files["csv"] = str(output_dir / "runs.csv")
    files["plots"] = plot_benchmark(records, output_dir / "plots") if config.plots else []

    lines = [
        "# Benchmark report",
        "",
        f"Dataset `{config.dataset}`, trading mode `{config.mode}`, transaction costs {config.transaction_cost_bps:g} bps "
        f"(they lower the `standard` metrics; the `paper` metrics score positions), initial cash "
        f"{config.initial_cash:,.0f}, seeds {config.seeds}.",
        f"{timing['planned']} runs: {timing['ran']} ran now, {timing['skipped']} skipped (finished before), "
        f"{timing['failed']} failed. Wall time {timing['wall_time_s']:.1f} s.",
        "",
        "Reporting rule (FLAG-Trader's): per agent and asset, the run at the **median Sharpe ratio over its seeds**, all "
        "its metrics together (lower middle run for an even count); deterministic agents run one seed. CR, AV and MDD "
        "in %, best per column and asset in **bold** (highest CR, SR, Sortino; lowest AV, MDD). "
        f"`{CONTAMINATION_MARK.strip()}`: the window starts before the agent's knowledge cutoff (see Contamination): "
        "its result may reflect memorised prices, not skill.",
    ]
    for convention in CONVENTIONS:
        lines += [
            "",
            f"## Median-Sharpe runs — `{convention}` convention",
            "",
            f"{CONVENTION_DESCRIPTIONS[convention]}.",
        ]
        for heading, table in median_tables(summary, convention, contaminated):
            lines += ["", f"### {heading}", "", table]
    for convention in CONVENTIONS:
        lines += ["", f"## Mean ± std over seeds — `{convention}` convention", "", mean_std_table(summary, convention)]
    lines += ["", "## Contamination", ""]
    lines += [
        "An LLM agent is contamination-free on a window only if the window starts after its knowledge cutoff "
        "(StockBench's criterion); rule-based agents have no pretrained knowledge.",
        "",
        *_contamination_rows(checks),
    ]
    answers = _answer_rows(records)
    if answers:
        lines += [
            "",
            "## LLM answers",
            "",
            "Unparseable answers are executed as `hold` (the documented fallback); so are masked actions (sell with no "
            "shares, buy with no cash). In likelihood scoring, `masked` counts decisions whose most likely action was "
            "masked.",
            "",
            *answers,
        ]
    if failed:
        lines += ["", "## Failed runs", "", "| Agent | Runs (asset window seed) | Error |", "| :--- | :--- | :--- |"]
        by_error: dict[tuple[str, str], list[str]] = {}
        for r in failed:
            error = str(r.get("error", "")).replace("|", "\\|").replace("\n", " ")
            by_error.setdefault((r["agent"], error), []).append(
                f"{r['asset']} {r['start']} → {r['end']} seed {r['seed']}"
            )
        for (agent, error), runs in by_error.items():
            lines.append(f"| {agent} | {'; '.join(runs)} | {error} |")
    lines += ["", "## Files", "", f"- runs: `{output_dir / 'runs'}/` (one JSON per run, with its trajectory)"]
    lines += [f"- `{files['json']}`, `{files['csv']}`"] + [
        f"- ![{Path(p).stem}]({Path(p).relative_to(output_dir)})" for p in files["plots"]
    ]
    Path(files["report"]).write_text("\n".join(lines) + "\n")

    result = {
        "config": dict(vars(config)),
        "timing": timing,
        "files": files,
        "summary": summary,
        "contamination": [c.to_dict() for c in checks],
        "runs": [{k: v for k, v in r.items() if k != "trajectory"} for r in records],
    }
    write_json(files["json"], result, indent=1, default=str)
    write_csv(Path(files["csv"]), records, summary)
    return result
