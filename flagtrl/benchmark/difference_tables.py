"""Markdown for the report's measured differences (`flagtrl.benchmark.differences`): against buy-and-hold per window
and across windows, real against anonymised inputs, and the runs' provenance."""

from __future__ import annotations

import json
import math


SIGNIFICANT_MARK = "*"


def _num(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{round(value, digits) + 0.0:.{digits}f}"


def _interval(difference: dict | None) -> tuple[str, str]:
    if difference is None:
        return "-", "-"
    mark = SIGNIFICANT_MARK if difference["low"] > 0 or difference["high"] < 0 else ""
    return f"{_num(difference['difference'])}{mark}", f"[{_num(difference['low'])}, {_num(difference['high'])}]"


def versus_buy_and_hold_table(rows: list[dict], convention: str, confidence: float, label) -> list[str]:
    """Rows of one convention: Sharpe, PSR, the difference to buy-and-hold and its interval (and the composite rank
    when the rows have it). `label(agent, start, end)` adds the contamination mark."""
    rows = [r for r in rows if r["convention"] == convention]
    if not rows:
        return []
    composite = "composite_rank" in rows[0]
    headers = ["Window", "Asset", "Agent", "SR", "PSR", "ΔSR vs B&H", f"{confidence:.0%} CI"]
    headers += ["Composite rank"] if composite else []
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join([":---"] * 3 + ["---:"] * (len(headers) - 3)) + " |"]
    for row in rows:
        difference, interval = _interval(row["difference"])
        cells = [
            f"{row['start']} → {row['end']}",
            row["asset"],
            label(row["agent"], row["start"], row["end"]),
            _num(row["sharpe_ratio"]),
            _num(row["psr"], 2),
            difference,
            interval,
        ]
        if composite:
            cells.append(str(row["composite_rank"]))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def real_vs_anonymised_table(rows: list[dict], convention: str, confidence: float) -> list[str]:
    rows = [r for r in rows if r["convention"] == convention]
    if not rows:
        return []
    lines = [
        f"| Window | Asset | Agent | Window vs cutoff | SR real | SR anonymised | ΔSR real − anon | {confidence:.0%} CI "
        "| CR % real | CR % anonymised |",
        "| :--- | :--- | :--- | :--- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        difference, interval = _interval(row["difference"])
        lines.append(
            f"| {row['start']} → {row['end']} | {row['asset']} | {row['agent']} | {row['contamination'] or '-'} | "
            f"{_num(row['real']['sharpe_ratio'])} | {_num(row['anonymised']['sharpe_ratio'])} | {difference} | "
            f"{interval} | {_num(100 * row['real']['cumulative_return'])} | "
            f"{_num(100 * row['anonymised']['cumulative_return'])} |"
        )
    return lines


def distribution_table(distributions: dict[str, dict], confidence: float) -> list[str]:
    if not distributions:
        return []
    lines = [
        f"| Agent | Cells (windows) | Median ΔSR | {confidence:.0%} CI of the median | Q1 | Q3 | Mean | Win rate |",
        "| :--- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for agent, d in distributions.items():
        lines.append(
            f"| {agent} | {d['cells']} ({d['windows']}) | {_num(d['median'])} | "
            f"[{_num(d['median_low'])}, {_num(d['median_high'])}] | {_num(d['q1'])} | {_num(d['q3'])} | "
            f"{_num(d['mean'])} | {d['win_rate']:.0%} |"
        )
    return lines


def provenance_lines(records: list[dict]) -> list[str]:
    """Each distinct (versions, hardware, processes) the runs were made with, with its run count; then each agent's
    seeds, dtypes and prompt versions."""
    machines: dict[str, int] = {}
    agents: dict[str, dict[str, set]] = {}
    missing = 0
    for record in records:
        provenance = record.get("provenance")
        if record.get("status") != "ok":
            continue
        if not provenance:
            missing += 1
            continue
        machine = {k: provenance.get(k) for k in ("versions", "hardware", "processes")}
        key = json.dumps(machine, sort_keys=True)
        machines[key] = machines.get(key, 0) + 1
        seen = agents.setdefault(record["agent"], {"seeds": set(), "dtype": set(), "prompt": set(), "gpu": set()})
        seen["seeds"].add(provenance.get("seed"))
        seen["dtype"].add(str(provenance.get("dtype") or "-"))
        seen["gpu"].add(str(provenance.get("gpu") or "-"))
        if provenance.get("prompt_version"):
            anonymised = " anonymised" if provenance.get("anonymised") else ""
            seen["prompt"].add(f"{provenance['prompt_version']}{anonymised} ({provenance.get('prompt_fingerprint')})")
    lines = []
    for i, (key, count) in enumerate(machines.items(), 1):
        machine = json.loads(key)
        hardware, versions = machine["hardware"] or {}, machine["versions"] or {}
        flags = ", ".join(hardware.get("cpu_flags") or []) or "none of AVX2/AVX-512/bf16"
        lines.append(
            f"- Machine {i} ({count} runs, {machine['processes']} process(es)): {hardware.get('cpu')}, "
            f"{hardware.get('cpu_count')} cores ({flags}; native bf16: {hardware.get('native_bf16')}, bf16 faster: {hardware.get('fast_bf16')}), "
            f"{hardware.get('platform')}"
        )
        lines.append("  - " + ", ".join(f"{name} {version}" for name, version in versions.items() if version))
    if missing:
        lines.append(f"- {missing} run(s) recorded before provenance was kept.")
    if agents:
        lines += ["", "| Agent | Seeds | dtype | GPU | Prompt |", "| :--- | :--- | :--- | :--- | :--- |"]
        for agent, seen in agents.items():
            seeds = ", ".join(str(s) for s in sorted(seen["seeds"]))
            lines.append(
                f"| {agent} | {seeds} | {', '.join(sorted(seen['dtype']))} | {', '.join(sorted(seen['gpu']))} | "
                f"{', '.join(sorted(seen['prompt'])) or '-'} |"
            )
    return lines
