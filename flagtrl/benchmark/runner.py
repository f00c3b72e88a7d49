"""Run a benchmark: every agent on every asset and window with every seed, one JSON file per run.

Runs are written to `<output_dir>/runs/<agent>__<asset>__<start>_<end>__seed<k>.json` as they finish, each with its
provenance (versions, hardware, dtype, seed, prompt version: `flagtrl.benchmark.provenance`). A re-run skips
the runs whose file says `ok` *and* whose settings (agent spec, mode, costs, cash, risk-free rate) are unchanged; failed
runs are tried again. A run that raises is recorded with its error and the others go on; an agent that cannot be built
(a missing adapter folder, say) fails all its runs with that message. The report, tables and plots are written at the
end from the run files (`flagtrl.benchmark.report`, `flagtrl.benchmark.plots`). Every JSON file is strict JSON:
non-finite metrics are written as the strings "inf", "-inf", "nan" (`flagtrl.strict_json`) and read back as floats.

**Many processes.** Launched by `torchrun` or `accelerate launch` (which set `RANK` and `WORLD_SIZE`), e.g.

    accelerate launch --config_file accelerate_configs/cpu_ddp.yaml -m flagtrl.cli benchmark --config recipe.yaml
    torchrun --nproc_per_node 4 -m flagtrl.cli benchmark --config recipe.yaml

rank k runs every `WORLD_SIZE`-th run of the plan from the k-th (each agent's runs are spread over all ranks, so each
rank loads each LLM once and the shares cost about the same), then all ranks wait for each other (a gloo barrier) and
rank 0 writes the report from the run files: the same report as one process.
"""

from __future__ import annotations

import gc
import hashlib
import json
import logging
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from ..agents.base import TradingAgent
from ..agents.registry import FLAG_PREFIX, ZERO_SHOT_PREFIX, make_agent
from ..backtest import run_backtest, split_windows
from ..data.schema import ASSET_CLASSES, MarketSeries, load_market_dataset, market_series
from ..prompt import PROMPT_VERSION, PromptConfig
from ..strict_json import decode_non_finite, dumps
from .config import AgentSpec, BenchmarkConfig, parse_benchmark_config
from .contamination import ContaminationCheck, check_window, enforce, resolve_cutoff
from .distributed import ProcessGroup
from .provenance import machine_record, run_provenance
from .report import write_report


logger = logging.getLogger(__name__)

RUNS_DIR = "runs"


@dataclass(frozen=True)
class PlannedRun:
    """One cell of agents x assets x windows x seeds."""

    agent: AgentSpec
    asset: str
    start: str
    end: str
    seed: int

    @property
    def filename(self) -> str:
        return f"{self.agent.name}__{self.asset}__{self.start}_{self.end}__seed{self.seed}.json"


def build_agent(spec: AgentSpec) -> TradingAgent:
    """Instantiate the agent an `AgentSpec` describes with `flagtrl.agents.registry.make_agent` (LLMs are loaded here,
    once per agent)."""
    if spec.type == "zero_shot":
        prompt = {**spec.prompt, "anonymise": True} if spec.anonymise else spec.prompt
        return make_agent(
            f"{ZERO_SHOT_PREFIX}{spec.model}",
            name=spec.name,
            dtype=spec.dtype,
            prompt_config=PromptConfig(**prompt),
            scoring=spec.scoring,
            temperature=spec.temperature,
            max_new_tokens=spec.max_new_tokens,
            constrained=spec.constrained,
        )
    if spec.type == "flag":
        if spec.prompt:
            raise ValueError(
                f"Agent {spec.name!r}: a FLAG adapter uses the prompt it was trained with; drop `prompt`."
            )
        # The inputs the benchmark asks for, whatever the adapter was trained with.
        return make_agent(
            f"{FLAG_PREFIX}{spec.adapter}",
            name=spec.name,
            dtype=spec.dtype,
            prompt_overrides={"anonymise": spec.anonymise},
        )
    return make_agent(spec.type, name=spec.name, **spec.params)


def resolve_windows(config: BenchmarkConfig, dataset, series: dict[str, MarketSeries]) -> dict[str, list[tuple]]:
    """Each asset's windows as its (first, last) trading dates, capped to `max_days` trading days."""
    windows: dict[str, list[tuple[str, str]]] = {asset: [] for asset in config.assets}
    for window in config.windows:
        if window.get("asset_class") is not None and window["asset_class"] not in ASSET_CLASSES:
            raise ValueError(f"Window {window}: asset_class must be one of {list(ASSET_CLASSES)}.")
        assets = [
            a
            for a in config.assets
            if a in window.get("assets", config.assets)
            and window.get("asset_class", series[a].asset_class) == series[a].asset_class
        ]
        if not assets:
            continue
        if "split" in window:
            spans = [(a, span) for a, span in split_windows(dataset, window["split"], assets).items()]
        elif "months" in window:
            spans = [
                (a, span)
                for a in assets
                for span in month_windows(window["start"], window["end"], window["months"])
                if covers(series[a], *span)
            ]
        else:
            spans = [(a, (window["start"], window["end"])) for a in assets]
        for asset, (start, end) in spans:
            first, last = series[asset].window(start, end)
            if config.max_days is not None:
                last = min(last, first + config.max_days - 1)
            span = (series[asset].dates[first], series[asset].dates[last])
            if span not in windows[asset]:
                windows[asset].append(span)
    empty = [a for a, w in windows.items() if not w]
    if empty:
        raise ValueError(f"No window applies to asset(s) {empty}; check the `assets`/`asset_class` of `windows`.")
    return windows


def month_windows(start: str, end: str, months: int) -> list[tuple[str, str]]:
    """Consecutive calendar windows of `months` months from `start`, each ending the day before the next begins; the
    last one ends on or before `end` (a shorter tail is left out, so that every window is as long as the others)."""
    first, last = pd.Timestamp(start), pd.Timestamp(end)
    spans, k = [], 0
    while (stop := first + pd.DateOffset(months=(k + 1) * months) - pd.Timedelta(days=1)) <= last:
        spans.append(((first + pd.DateOffset(months=k * months)).strftime("%Y-%m-%d"), stop.strftime("%Y-%m-%d")))
        k += 1
    if not spans:
        raise ValueError(f"Window {start} → {end} is shorter than one window of {months} month(s).")
    return spans


def covers(series: MarketSeries, start: str, end: str) -> bool:
    """Whether an asset's data span a rolling window: they begin in its first week and reach its last week (a window
    the data only partly cover would not compare with the others; a week absorbs holidays at either end)."""
    first_week = (pd.Timestamp(start) + pd.Timedelta(days=7)).strftime("%Y-%m-%d")
    last_week = (pd.Timestamp(end) - pd.Timedelta(days=7)).strftime("%Y-%m-%d")
    return series.dates[0] <= first_week and series.dates[-1] >= last_week


def plan_runs(config: BenchmarkConfig, windows: dict[str, list[tuple[str, str]]]) -> list[PlannedRun]:
    """The runs in execution order: agent by agent (each LLM is loaded once), then asset, window and seed."""
    plan = []
    for spec in config.agent_specs:
        unknown = sorted(set(spec.assets or []) - set(config.assets))
        if unknown:
            raise ValueError(f"Agent {spec.name!r} names asset(s) {unknown} that are not in the benchmark's `assets`.")
        seeds = spec.seeds or config.seeds
        seeds = seeds[:1] if spec.deterministic else seeds
        for asset in config.assets:
            if spec.assets is not None and asset not in spec.assets:
                continue
            for start, end in windows[asset]:
                plan += [PlannedRun(spec, asset, start, end, seed) for seed in seeds]
    return plan


def run_settings(config: BenchmarkConfig, spec: AgentSpec) -> dict:
    """What a finished run depends on besides its key: a changed value makes a re-run redo it."""
    agent = asdict(spec)
    agent.pop("assets")
    agent.pop("seeds")
    agent.pop("knowledge_cutoff")
    agent.pop("inputs")
    if not agent["anonymise"]:  # runs recorded before the anonymised mode existed stay valid
        agent.pop("anonymise")
    settings = {
        "agent": agent,
        "mode": config.mode,
        "transaction_cost_bps": config.transaction_cost_bps,
        "initial_cash": config.initial_cash,
        "risk_free_rate": config.risk_free_rate,
    }
    if spec.is_llm:  # a changed prompt makes a different LLM agent
        settings["prompt_version"] = PROMPT_VERSION
    return settings


def settings_fingerprint(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def load_run(path: Path) -> dict | None:
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if isinstance(record, dict) and isinstance(record.get("metrics"), dict):
        record["metrics"] = decode_non_finite(record["metrics"])  # "inf" back to inf (strict JSON, module docstring)
    return record


def _write_json(path: Path, data) -> None:
    # Write then rename, so an interrupted benchmark never leaves a half-written run that a re-run would trust.
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(dumps(data, indent=1, default=str))
    tmp.replace(path)


class _DayProgress:
    """Wraps an agent to advance a per-day progress bar (LLM runs take minutes each)."""

    def __init__(self, agent: TradingAgent, bar):
        self._agent, self._bar = agent, bar

    def __getattr__(self, name):
        return getattr(self._agent, name)

    def action_distribution(self, state):
        self._bar.update(1)
        return self._agent.action_distribution(state)


def _failed_record(run: PlannedRun, fingerprint: str, check: ContaminationCheck, error: BaseException) -> dict:
    return {
        "agent": run.agent.name,
        "agent_type": run.agent.type,
        "asset": run.asset,
        "start": run.start,
        "end": run.end,
        "seed": run.seed,
        "status": "failed",
        "error": f"{type(error).__name__}: {error}",
        "traceback": "".join(traceback.format_exception(type(error), error, error.__traceback__)[-3:]),
        "settings_fingerprint": fingerprint,
        "contamination": check.to_dict(),
    }


def run_benchmark(
    config: BenchmarkConfig, agent_factory: Callable[[AgentSpec], TradingAgent] = build_agent
) -> dict | None:
    """Run (or resume) the benchmark and write its report; returns the summary that `report.write_report` wrote (on
    rank 0; the other ranks of a multi-process run return `None`, module docstring).

    Raises:
        `ContaminationError`: in strict mode, before any run, when an LLM agent's window starts before its cutoff.
    """
    started = time.time()
    group = ProcessGroup.from_environment()
    try:
        return _run(config, agent_factory, group, started)
    finally:
        group.close()


def _run(config: BenchmarkConfig, agent_factory, group: ProcessGroup, started: float) -> dict | None:
    output_dir = Path(config.output_dir)
    runs_dir = output_dir / RUNS_DIR
    dataset = load_market_dataset(config.dataset)
    series = {asset: market_series(dataset, asset) for asset in config.assets}
    windows = resolve_windows(config, dataset, series)
    plan = plan_runs(config, windows)

    cutoffs = {spec.name: resolve_cutoff(spec) for spec in config.agent_specs if spec.is_llm}
    checks = {
        (run.agent.name, run.start, run.end): check_window(run.agent, run.start, run.end, cutoffs.get(run.agent.name))
        for run in plan
    }
    enforce(list(checks.values()), config.strict)

    runs_dir.mkdir(parents=True, exist_ok=True)
    if group.is_main:
        _write_json(output_dir / "benchmark_config.json", asdict(config))
    machine = machine_record(group.world_size)
    share = plan[group.rank :: group.world_size]

    records, counts = [], {"ran": 0, "skipped": 0, "failed": 0}
    bar = tqdm(total=len(share), desc="benchmark runs", unit="run", disable=not config.progress or not group.is_main)
    by_agent: dict[str, list[PlannedRun]] = {}
    for run in share:
        by_agent.setdefault(run.agent.name, []).append(run)
    for runs in by_agent.values():
        spec = runs[0].agent
        fingerprint = settings_fingerprint(run_settings(config, spec))
        pending = []
        for run in runs:
            previous = load_run(runs_dir / run.filename)
            if previous and previous.get("status") == "ok" and previous.get("settings_fingerprint") == fingerprint:
                records.append(previous)
                counts["skipped"] += 1
                bar.update(1)
            else:
                pending.append(run)
        if not pending:
            continue
        try:
            agent = agent_factory(spec)
        except Exception as error:  # the agent cannot exist: each of its runs says why
            logger.error("Agent %r could not be built: %s: %s", spec.name, type(error).__name__, error)
            for run in pending:
                record = _failed_record(run, fingerprint, checks[(spec.name, run.start, run.end)], error)
                _write_json(runs_dir / run.filename, record)
                records.append(record)
                counts["failed"] += 1
                bar.update(1)
            continue
        for run in pending:
            check = checks[(spec.name, run.start, run.end)]
            bar.set_postfix_str(f"{spec.name} {run.asset} seed {run.seed}")
            run_started = time.time()
            days = series[run.asset].window(run.start, run.end)
            day_bar = tqdm(
                total=days[1] - days[0],
                desc=f"  {spec.name} {run.asset}",
                unit="day",
                leave=False,
                disable=not (config.progress and spec.is_llm),
            )
            try:
                result = run_backtest(
                    _DayProgress(agent, day_bar),
                    series[run.asset],
                    run.start,
                    run.end,
                    seed=run.seed,
                    greedy=spec.greedy,
                    mode=config.mode,
                    initial_cash=config.initial_cash,
                    transaction_cost_bps=config.transaction_cost_bps,
                    risk_free_rate=config.risk_free_rate,
                )
                result.agent = spec.name
                record = result.to_dict()
                stats = getattr(agent, "stats", None)
                record.update(
                    agent_type=spec.type,
                    status="ok",
                    error=None,
                    settings_fingerprint=fingerprint,
                    prompt_version=PROMPT_VERSION if spec.is_llm else None,
                    provenance=run_provenance(machine, agent, run.seed, spec.is_llm, spec.anonymise),
                    contamination=check.to_dict(),
                    agent_stats=json.loads(json.dumps(stats, default=str)) if stats else None,
                    elapsed_s=round(time.time() - run_started, 3),
                )
                counts["ran"] += 1
            except Exception as error:  # one failed run must not lose the others
                logger.error("Run %s failed: %s: %s", run.filename, type(error).__name__, error)
                record = _failed_record(run, fingerprint, check, error)
                counts["failed"] += 1
            finally:
                day_bar.close()
            _write_json(runs_dir / run.filename, record)
            records.append(record)
            bar.update(1)
        del agent
        gc.collect()
    bar.close()

    counts = group.sum_counts(counts)
    if group.world_size > 1:
        group.barrier()  # every rank's run files are written
        if not group.is_main:
            return None
        records = [record for run in plan if (record := load_run(runs_dir / run.filename)) is not None]
    timing = {"wall_time_s": round(time.time() - started, 1), **counts, "planned": len(plan)}
    timing["processes"] = group.world_size
    return write_report(config, records, list(checks.values()), timing)


def benchmark_main(argv: list[str]) -> int:
    """`flagtrl benchmark --config recipe.yaml [--strict] [...]`: run, then print the report's main table."""
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", level=logging.INFO)
    config = parse_benchmark_config(argv)
    summary = run_benchmark(config)
    if summary is None:  # not rank 0 of a multi-process run: rank 0 prints the report
        return 0
    print(Path(summary["files"]["report"]).read_text())
    timing = summary["timing"]
    print(
        f"{timing['planned']} runs: {timing['ran']} ran, {timing['skipped']} skipped (already done), "
        f"{timing['failed']} failed; wall time {timing['wall_time_s']} s. Files in {config.output_dir}."
    )
    return 1 if timing["failed"] else 0
