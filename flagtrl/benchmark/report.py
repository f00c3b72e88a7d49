"""The benchmark's report: the paper's reporting rule, mean ± std over seeds, contamination, and every run.

Files written to the output folder:

- `report.md`: per metric convention and window, a table laid out like FLAG-Trader's Tables 1-2 (agents as rows, a
  CR/SR/AV/MDD/Sortino column group per asset, best per column in bold) of each agent's *median-Sharpe run*; then
  mean ± std over seeds, the contamination verdicts, the LLM answer statistics (per agent: how its answers are read,
  the unparseable rate; then per run) and the failed runs;
- `results.json`: the configuration, the summary per (agent, asset, window) and every run's metrics (strict JSON:
  non-finite values as the strings "inf", "-inf", "nan", `flagtrl.strict_json`);
- `runs.csv`: one row per run (both conventions), the rows the tables were taken from marked;
- `plots/*.png` (see `flagtrl.benchmark.plots`).

Beside each agent's Sharpe ratio the report says how sure it is (`flagtrl.benchmark.differences`): the difference to
buy-and-hold with a paired block-bootstrap interval and the probabilistic Sharpe ratio (optionally StockBench's
composite rank); over many windows, the distribution of that difference; for LLM agents run on real and anonymised
inputs, the two side by side; and the versions, hardware, seeds and prompt versions the runs were made with.

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
from .difference_tables import (
    SIGNIFICANT_MARK,
    distribution_table,
    provenance_lines,
    real_vs_anonymised_table,
    versus_buy_and_hold_table,
)
from .differences import benchmark_agent_name, real_vs_anonymised, versus_buy_and_hold, window_distributions
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


_ANSWER_COUNTS = ("decisions", "unparseable", "masked")


def _generates(spec) -> bool:
    return spec.type == "zero_shot" and spec.scoring == "generate"


def answer_mode(spec) -> str:
    """How an LLM agent turns the model's output into an action, as the answer tables name it."""
    if not _generates(spec):
        return "likelihood" if spec.type == "zero_shot" else "policy head"
    return f"{'constrained' if spec.constrained else 'free'} generation, T={spec.temperature:g}"


def _rate(count: int, total: int) -> str:
    return f"{100 * count / total:.1f} %" if total else "-"


def answer_summary(records: list[dict], specs: list) -> list[dict]:
    """Per LLM agent, over all its finished runs: decisions, unparseable answers (and their rate), masked actions."""
    summary = []
    for spec in specs:
        runs = [r for r in records if r["agent"] == spec.name and r.get("status") == "ok" and r.get("agent_stats")]
        if not runs:
            continue
        decisions, unparseable, masked = (sum(r["agent_stats"].get(k, 0) for r in runs) for k in _ANSWER_COUNTS)
        summary.append(
            {
                "agent": spec.name,
                "answers": answer_mode(spec),
                "runs": len(runs),
                "decisions": decisions,
                "unparseable": unparseable,
                # Likelihood scoring and FLAG policies read probabilities, not text: nothing can be unparseable.
                "unparseable_rate": unparseable / decisions if decisions and _generates(spec) else None,
                "masked": masked,
            }
        )
    return summary


def _answer_rows(records: list[dict], summary: list[dict]) -> list[str]:
    if not summary:
        return []
    lines = [
        "| Agent | Answers | Runs | Decisions | Unparseable (→ hold) | Unparseable rate | Masked (→ hold) |",
        "| :--- | :--- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for entry in summary:
        rate = "n/a" if entry["unparseable_rate"] is None else _rate(entry["unparseable"], entry["decisions"])
        lines.append(
            f"| {entry['agent']} | {entry['answers']} | {entry['runs']} | {entry['decisions']} | "
            f"{entry['unparseable']} | {rate} | {entry['masked']} |"
        )
    lines += [
        "",
        "| Agent | Asset | Seed | Decisions | Unparseable (→ hold) | Unparseable rate | Masked (→ hold) | "
        "Unparseable examples |",
        "| :--- | :--- | ---: | ---: | ---: | ---: | ---: | :--- |",
    ]
    generated = {entry["agent"] for entry in summary if entry["unparseable_rate"] is not None}
    for record in records:
        stats = record.get("agent_stats")
        if record.get("status") != "ok" or not stats:
            continue
        examples = "; ".join(repr(e) for e in stats.get("unparseable_examples", [])[:2]) or "-"
        decisions, unparseable = stats.get("decisions", 0), stats.get("unparseable", 0)
        lines.append(
            f"| {record['agent']} | {record['asset']} | {record['seed']} | {decisions} | {unparseable} | "
            f"{_rate(unparseable, decisions) if record['agent'] in generated else 'n/a'} | {stats.get('masked', 0)} | "
            f"{examples} |"
        )
    return lines


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
    statistics = {"confidence": config.confidence, "num_resamples": config.bootstrap_resamples}
    versus = (
        versus_buy_and_hold(summary, records, config.risk_free_rate, composite=config.composite_rank, **statistics)
        if config.per_window
        else []
    )
    distributions = window_distributions(summary, records, **statistics)
    twins = {spec.name: spec.base_name for spec in config.agent_specs if spec.anonymise}
    memorisation = real_vs_anonymised(summary, records, twins, config.risk_free_rate, **statistics)
    title = f"{config.dataset}: {len({(e['start'], e['end']) for e in summary})} windows, {config.mode} mode"
    files["plots"] = (
        plot_benchmark(records, output_dir / "plots", config.per_window, distributions, title) if config.plots else []
    )

    def label(agent: str, start: str, end: str) -> str:
        return _label(agent, contaminated, start, end)

    lines = [
        "# Benchmark report",
        "",
        f"Dataset `{config.dataset}`, trading mode `{config.mode}`, transaction costs {config.transaction_cost_bps:g} bps "
        f"(they lower the `standard` metrics; the `paper` metrics score positions), initial cash "
        f"{config.initial_cash:,.0f}, seeds {config.seeds}.",
        f"{timing['planned']} runs: {timing['ran']} ran now, {timing['skipped']} skipped (finished before), "
        f"{timing['failed']} failed. Wall time {timing['wall_time_s']:.1f} s "
        f"({timing.get('processes', 1)} process(es)).",
        "",
        "Reporting rule (FLAG-Trader's): per agent and asset, the run at the **median Sharpe ratio over its seeds**, all "
        "its metrics together (lower middle run for an even count); deterministic agents run one seed. CR, AV and MDD "
        "in %, best per column and asset in **bold** (highest CR, SR, Sortino; lowest AV, MDD). "
        f"`{CONTAMINATION_MARK.strip()}`: the window starts before the agent's knowledge cutoff (see Contamination): "
        "its result may reflect memorised prices, not skill.",
    ]
    for convention in CONVENTIONS if config.per_window else ():
        lines += [
            "",
            f"## Median-Sharpe runs — `{convention}` convention",
            "",
            f"{CONVENTION_DESCRIPTIONS[convention]}.",
        ]
        for heading, table in median_tables(summary, convention, contaminated):
            lines += ["", f"### {heading}", "", table]
    benchmark = benchmark_agent_name(records)
    for convention in CONVENTIONS if versus else ():
        lines += [
            "",
            f"## How sure: Sharpe against {benchmark or 'buy-and-hold'} — `{convention}` convention",
            "",
            f"The median-Sharpe runs' Sharpe ratio (SR) and probabilistic Sharpe ratio (PSR: the probability that the true "
            f"SR is above 0, Bailey & López de Prado 2012, from the run's length, skewness and kurtosis); ΔSR = SR − "
            f"SR({benchmark or 'buy-and-hold'}) over the same days, with a {config.confidence:.0%} interval from a "
            f"stationary block bootstrap of the daily returns ({config.bootstrap_resamples} resamples of the two series "
            f"together, Politis-White block length; `{SIGNIFICANT_MARK}`: the interval excludes 0)."
            + (
                " Composite rank: StockBench's, the mean z-score of CR, −MDD and Sortino among the agents of the cell."
                if config.composite_rank
                else ""
            )
            + ("" if benchmark else " No buy-and-hold agent ran: add `{type: buy_and_hold}` for the differences."),
            "",
            *versus_buy_and_hold_table(versus, convention, config.confidence, label),
        ]
    if any(d["windows"] > 1 for agents in distributions.values() for d in agents.values()):
        for convention, agents in distributions.items():
            lines += [
                "",
                f"## Across windows: Sharpe difference to {benchmark} — `{convention}` convention",
                "",
                f"Each agent's ΔSR = SR − SR({benchmark}) on every (asset, window) cell (its median-Sharpe run): median, "
                f"quartiles, mean and win rate (the share of cells where it beat {benchmark}); the median's "
                f"{config.confidence:.0%} interval resamples whole windows (assets in one window share its market).",
                "",
                *distribution_table(agents, config.confidence),
            ]
    if memorisation:
        lines += [
            "",
            "## Memorisation: real against anonymised inputs",
            "",
            "Each LLM agent on real prompts and on anonymised ones (no ticker, company names, dates or price levels: "
            "`flagtrl.anonymisation`) over the same days. A Sharpe ratio that falls when the model cannot tell which "
            "asset and which days it trades is a measured sign of memorisation, beside the cutoff check; an interval "
            "that contains 0 means no difference was measured.",
        ]
        for convention in CONVENTIONS:
            lines += ["", f"### `{convention}` convention", ""]
            lines += real_vs_anonymised_table(memorisation, convention, config.confidence)
    for convention in CONVENTIONS if config.per_window else ():
        lines += ["", f"## Mean ± std over seeds — `{convention}` convention", "", mean_std_table(summary, convention)]
    lines += ["", "## Contamination", ""]
    lines += [
        "An LLM agent is contamination-free on a window only if the window starts after its knowledge cutoff "
        "(StockBench's criterion); rule-based agents have no pretrained knowledge.",
        "",
        *_contamination_rows(checks),
    ]
    answer_stats = answer_summary(records, config.agent_specs)
    answers = _answer_rows(records, answer_stats)
    if answers:
        lines += [
            "",
            "## LLM answers",
            "",
            "Unparseable answers are executed as `hold` (the documented fallback); so are masked actions (sell with no "
            "shares, buy with no cash). In likelihood scoring, `masked` counts decisions whose most likely action was "
            "masked. Free generation is InvestorBench's protocol (sample, then parse the text); constrained generation "
            "samples only among the JSON answers whose actions are valid, so none is unparseable or masked.",
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
    lines += ["", "## Reproducibility", ""]
    lines += [
        "What the runs were made with (each run file keeps its own `provenance`): compare two machines' tables only "
        "where these agree.",
        "",
        *provenance_lines(records),
    ]
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
        "versus_buy_and_hold": versus,
        "window_distributions": distributions,
        "real_vs_anonymised": memorisation,
        "contamination": [c.to_dict() for c in checks],
        "answers": answer_stats,
        "runs": [{k: v for k, v in r.items() if k != "trajectory"} for r in records],
    }
    write_json(files["json"], result, indent=1, default=str)
    write_csv(Path(files["csv"]), records, summary)
    return result
