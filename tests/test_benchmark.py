"""`flagtrl benchmark`: a tiny end-to-end run with tiny models, resume, failures, the paper's reporting rule, the
contamination guard, zero-shot answer parsing, no look-ahead for every agent type, and the evaluate module."""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import account_state
from datasets import Dataset, DatasetDict

from flagtrl.actions import BUY, HOLD, SELL
from flagtrl.agents import BuyAndHoldAgent, MomentumAgent, MovingAverageCrossoverAgent, RandomAgent
from flagtrl.agents.flag_agent import FlagAgent
from flagtrl.agents.zero_shot import ZeroShotLLMAgent, parse_action
from flagtrl.backtest import run_backtest, split_windows
from flagtrl.benchmark import (
    AgentSpec,
    ContaminationError,
    check_window,
    median_sharpe_run,
    parse_benchmark_config,
    parse_cutoff,
    resolve_cutoff,
    run_benchmark,
    summarize,
)
from flagtrl.benchmark.contamination import CLEAN, CONTAMINATED, NOT_APPLICABLE, UNKNOWN, normalize_cutoff
from flagtrl.benchmark.runner import build_agent
from flagtrl.cli import COMMANDS, main
from flagtrl.data.schema import MARKET_FEATURES, MarketSeries, market_series
from flagtrl.data.synthetic import make_synthetic_dataset
from flagtrl.envs.trading_env import TradingState
from flagtrl.models import FlagPolicy
from flagtrl.prompt import PromptConfig


ROOT = Path(__file__).resolve().parents[1]
TINY_RECIPE = ROOT / "recipes" / "benchmark" / "tiny_synthetic.yaml"
METRICS_MODULE = ROOT / "flagtrl" / "evaluate_metrics" / "trading_metrics"
TINY_PROMPT = {"max_prompt_tokens": 1024}  # the tiny tokenizer spends about 2.5x SmolLM2's tokens on a prompt


# --- fixtures ------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def synthetic_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("synthetic") / "market"
    make_synthetic_dataset({"SYNA": "stock", "SYNC": "crypto"}, seed=0, history_days=40).save_to_disk(str(path))
    return path


@pytest.fixture(scope="module")
def tiny_model_dirs(tmp_path_factory, tiny_tokenizer):
    """A tiny Llama saved as a model folder, and a FLAG adapter on it (what the config's paths point to)."""
    from conftest import build_tiny_llama

    root = tmp_path_factory.mktemp("tiny_models")
    model_dir, adapter_dir = root / "tiny-llama", root / "tiny-flag"
    model = build_tiny_llama(len(tiny_tokenizer))
    model.save_pretrained(model_dir)
    tiny_tokenizer.save_pretrained(model_dir)
    policy = FlagPolicy.from_backbone(
        build_tiny_llama(len(tiny_tokenizer), seed=1),
        tiny_tokenizer,
        num_trainable_layers=2,
        base_model_name_or_path=str(model_dir),
        prompt_config=TINY_PROMPT,
    )
    policy.save_pretrained(adapter_dir, tokenizer=tiny_tokenizer)
    return model_dir, adapter_dir


def tiny_recipe(tmp_path: Path, dataset: Path, model_dir: Path, adapter_dir: Path, **overrides) -> Path:
    """The tiny recipe with the tiny models in place of SmolLM2 (and the test's dataset and output folder)."""
    recipe = yaml.safe_load(TINY_RECIPE.read_text())
    recipe.update(dataset=str(dataset), output_dir=str(tmp_path / "bench"), max_days=6, progress=False)
    for agent in recipe["agents"]:
        if agent["type"] == "zero_shot":
            agent.update(model=str(model_dir), prompt=TINY_PROMPT)
        if agent["type"] == "flag":
            agent["adapter"] = str(adapter_dir)
    recipe.update(overrides)
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def baseline_recipe(tmp_path: Path, dataset: Path, **overrides) -> Path:
    recipe = {
        "dataset": str(dataset),
        "output_dir": str(tmp_path / "bench"),
        "assets": ["SYNA"],
        "windows": [{"split": "test"}],
        "max_days": 12,
        "seeds": [0, 1, 2],
        "progress": False,
        "plots": False,
        "agents": [{"type": "buy_and_hold"}, {"type": "random"}, {"type": "momentum", "params": {"lookback": 3}}],
    }
    recipe.update(overrides)
    path = tmp_path / "baselines.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def config_from(path: Path, *extra: str):
    return parse_benchmark_config(["--config", str(path), *extra])


# --- the tiny benchmark end to end ------------------------------------------------------------------------------------


def test_tiny_benchmark_end_to_end(tmp_path, synthetic_dir, tiny_model_dirs, capsys):
    recipe = tiny_recipe(tmp_path, synthetic_dir, *tiny_model_dirs)
    assert main(["benchmark", "--config", str(recipe)]) == 0
    out_dir = tmp_path / "bench"
    printed = capsys.readouterr().out
    assert "# Benchmark report" in printed and "0 failed" in printed

    # Every run: rules once (deterministic), random/generate/sampled FLAG per seed, greedy likelihood once.
    runs = sorted((out_dir / "runs").glob("*.json"))
    per_asset = {"buy_and_hold": 1, "random": 2, "ma_crossover": 1, "momentum": 1}
    per_asset.update({"smollm2-generate": 2, "smollm2-constrained": 2, "smollm2-likelihood": 1, "flag-demo": 2})
    assert len(runs) == 2 * sum(per_asset.values())
    records = [json.loads(p.read_text()) for p in runs]
    assert all(r["status"] == "ok" for r in records)
    assert {r["agent"] for r in records} == set(per_asset)

    # Files: report, JSON, CSV, two plots per asset.
    report = (out_dir / "report.md").read_text()
    results = json.loads((out_dir / "results.json").read_text())
    with (out_dir / "runs.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(runs) == len(results["runs"])
    for asset in ("SYNA", "SYNC"):
        assert len(list((out_dir / "plots").glob(f"equity_{asset}_*.png"))) == 1
        assert len(list((out_dir / "plots").glob(f"actions_{asset}_*.png"))) == 1
    for png in (out_dir / "plots").glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5_000
    for heading in ("`paper` convention", "`standard` convention", "Mean ± std over seeds", "## Contamination"):
        assert heading in report
    assert "| Agent | SYNA CR% | SYNA SR | SYNA AV% | SYNA MDD% | SYNA Sortino |" in report
    # Both LLMs are marked: the synthetic windows (2020, 2023) predate the cutoff the recipe gives SmolLM2.
    assert "smollm2-generate †" in report and "flag-demo †" in report and "buy_and_hold †" not in report
    assert "**no — starts before the cutoff**" in report
    assert "## LLM answers" in report

    # Numbers: buy-and-hold's row is run_backtest's, in both conventions, in the JSON, the CSV and the table.
    dataset = DatasetDict.load_from_disk(str(synthetic_dir))
    for asset in ("SYNA", "SYNC"):
        series = market_series(dataset, asset)
        start, _ = split_windows(dataset, "test", [asset])[asset]
        first, _ = series.window(start, "9999-12-31")
        expected = run_backtest(
            BuyAndHoldAgent(), series, start, series.dates[first + 5], transaction_cost_bps=3.0, mode="all_in"
        )
        entry = next(e for e in results["summary"] if e["agent"] == "buy_and_hold" and e["asset"] == asset)
        assert (entry["start"], entry["end"]) == (expected.start, expected.end)
        for convention in ("paper", "standard"):
            assert entry["median"][convention] == pytest.approx(expected.metrics[convention].to_dict())
            row = next(r for r in rows if r["agent"] == "buy_and_hold" and r["asset"] == asset)
            assert float(row[f"{convention}_cumulative_return"]) == pytest.approx(
                expected.metrics[convention].cumulative_return
            )
        table_row = next(line for line in report.splitlines() if line.startswith("| buy_and_hold |"))
        assert f"{100 * expected.metrics['paper'].cumulative_return:.3f}" in report
        assert table_row.count("|") == 7  # one asset per window table: agent + 5 metrics

    # The LLM agents' answer statistics reach the report; unparseable answers of a random tiny model fell back to hold.
    generate = [r for r in records if r["agent"] == "smollm2-generate"]
    assert all(r["agent_stats"]["decisions"] == 5 for r in generate)
    assert all(r["agent_stats"]["unparseable"] <= r["agent_stats"]["decisions"] for r in generate)
    # Constrained generation: every answer of the random model parses, and none names a masked action.
    constrained = [r for r in records if r["agent"] == "smollm2-constrained"]
    assert [r["agent_stats"]["decisions"] for r in constrained] == [5] * 4
    assert all(r["agent_stats"]["unparseable"] == r["agent_stats"]["masked"] == 0 for r in constrained)
    # The report gives each LLM agent's unparseable rate over its runs (results.json too).
    answers = {entry["agent"]: entry for entry in results["answers"]}
    free_unparseable = sum(r["agent_stats"]["unparseable"] for r in generate)
    assert answers["smollm2-generate"]["unparseable_rate"] == pytest.approx(free_unparseable / 20)
    assert answers["smollm2-constrained"]["unparseable_rate"] == 0.0
    assert answers["smollm2-likelihood"]["unparseable_rate"] is None  # probabilities, no text to parse
    assert (
        "| Agent | Answers | Runs | Decisions | Unparseable (→ hold) | Unparseable rate | Masked (→ hold) |" in report
    )
    assert "| smollm2-constrained | constrained generation, T=0.6 | 4 | 20 | 0 | 0.0 % | 0 |" in report
    free_rate = f"{100 * free_unparseable / 20:.1f} %"
    assert f"| smollm2-generate | free generation, T=0.6 | 4 | 20 | {free_unparseable} | {free_rate} |" in report
    assert "| smollm2-likelihood | likelihood | 2 | 10 | 0 | n/a |" in report


def test_rerun_skips_finished_runs_and_redoes_changed_ones(tmp_path, synthetic_dir):
    recipe = baseline_recipe(tmp_path, synthetic_dir)
    first = run_benchmark(config_from(recipe))
    assert first["timing"]["ran"] == first["timing"]["planned"] == 5  # 1 + 3 random seeds + 1
    stamps = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "bench" / "runs").glob("*.json")}

    again = run_benchmark(config_from(recipe))
    assert (again["timing"]["ran"], again["timing"]["skipped"]) == (0, 5)
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "bench" / "runs").glob("*.json")} == stamps
    assert json.dumps(again["summary"]) == json.dumps(first["summary"])  # NaN-safe comparison

    # A setting a run depends on changes: the runs are redone, not trusted.
    costly = run_benchmark(config_from(recipe, "--transaction_cost_bps", "10"))
    assert costly["timing"]["ran"] == 5


class ExplodingAgent(MomentumAgent):
    def __init__(self, fail_after: int):
        super().__init__(lookback=3)
        self.calls, self.fail_after = 0, fail_after

    def action_distribution(self, state):
        self.calls += 1
        if self.calls > self.fail_after:
            raise RuntimeError("simulated agent crash")
        return super().action_distribution(state)


def test_failed_runs_are_reported_and_the_others_complete(tmp_path, synthetic_dir):
    agents = [
        {"type": "buy_and_hold"},
        {"type": "momentum", "name": "crashes", "params": {"lookback": 3}},
        {
            "type": "flag",
            "name": "no-adapter",
            "adapter": str(tmp_path / "missing-adapter"),
            "knowledge_cutoff": "2019",
        },
        {"type": "random"},
    ]
    recipe = baseline_recipe(tmp_path, synthetic_dir, agents=agents, seeds=[0, 1])

    def factory(spec):
        return ExplodingAgent(fail_after=4) if spec.name == "crashes" else build_agent(spec)

    summary = run_benchmark(config_from(recipe), agent_factory=factory)
    runs = {p.name: json.loads(p.read_text()) for p in (tmp_path / "bench" / "runs").glob("*.json")}
    status = {(r["agent"], r["seed"]): r["status"] for r in runs.values()}
    assert status == {
        ("buy_and_hold", 0): "ok",
        ("crashes", 0): "failed",
        ("no-adapter", 0): "failed",
        ("no-adapter", 1): "failed",
        ("random", 0): "ok",
        ("random", 1): "ok",
    }
    crashed = next(r for r in runs.values() if r["agent"] == "crashes")
    assert "RuntimeError: simulated agent crash" in crashed["error"]
    missing = next(r for r in runs.values() if r["agent"] == "no-adapter")
    assert "not found" in missing["error"] and "missing-adapter" in missing["error"]
    assert summary["timing"]["failed"] == 3
    report = (tmp_path / "bench" / "report.md").read_text()
    assert "## Failed runs" in report and "simulated agent crash" in report
    assert {e["agent"] for e in summary["summary"]} == {"buy_and_hold", "random"}

    # A re-run retries the failed runs only.
    again = run_benchmark(config_from(recipe), agent_factory=lambda spec: build_agent(spec))
    assert (again["timing"]["skipped"], again["timing"]["ran"], again["timing"]["failed"]) == (3, 1, 2)


# --- the paper's reporting rule ---------------------------------------------------------------------------------------


def fake_run(seed: int, sharpe: float, cr: float, convention_sharpe: dict | None = None) -> dict:
    metrics = {}
    for convention in ("paper", "standard"):
        metrics[convention] = {
            "cumulative_return": cr,
            "sharpe_ratio": (convention_sharpe or {}).get(convention, sharpe),
            "annualized_volatility": 0.2,
            "max_drawdown": 0.1,
            "sortino_ratio": 2 * sharpe,
            "convention": convention,
            "trading_days_per_year": 252,
            "num_periods": 10,
        }
    return {
        "agent": "a",
        "asset": "X",
        "start": "2021-01-04",
        "end": "2021-01-15",
        "seed": seed,
        "status": "ok",
        "metrics": metrics,
    }


def test_median_sharpe_rule():
    runs = [fake_run(0, 0.5, 0.01), fake_run(1, -1.0, 0.30), fake_run(2, 2.0, -0.2)]
    assert median_sharpe_run(runs, "paper")["seed"] == 0
    # Even count: the lower middle run; NaN Sharpe ranks last.
    runs4 = [fake_run(0, 4.0, 0), fake_run(1, 1.0, 0), fake_run(2, 3.0, 0), fake_run(3, 2.0, 0)]
    assert median_sharpe_run(runs4, "paper")["seed"] == 3
    assert (
        median_sharpe_run([fake_run(0, math.nan, 0), fake_run(1, 1.0, 0), fake_run(2, 2.0, 0)], "paper")["seed"] == 2
    )

    # All metrics come from that one run, never per-metric medians mixing runs.
    runs = [fake_run(0, 0.5, 0.90), fake_run(1, -1.0, 0.30), fake_run(2, 2.0, 0.10)]
    (entry,) = summarize(runs)
    assert entry["median_seed"]["paper"] == 0
    assert entry["median"]["paper"]["cumulative_return"] == 0.90  # the median CR would be 0.30
    assert entry["mean"]["paper"]["cumulative_return"] == pytest.approx(np.mean([0.9, 0.3, 0.1]))
    assert entry["std"]["paper"]["cumulative_return"] == pytest.approx(np.std([0.9, 0.3, 0.1], ddof=1))
    # Each convention picks its run by its own Sharpe.
    runs = [
        fake_run(0, 1.0, 0.0, {"standard": 3.0}),
        fake_run(1, 2.0, 0.0, {"standard": 1.0}),
        fake_run(2, 3.0, 0.0, {"standard": 2.0}),
    ]
    (entry,) = summarize(runs)
    assert (entry["median_seed"]["paper"], entry["median_seed"]["standard"]) == (1, 2)


# --- contamination guard -----------------------------------------------------------------------------------------------


def test_cutoff_parsing():
    assert parse_cutoff("## Training\nKnowledge cutoff: June 2024. More text") == "2024-06-30"
    assert parse_cutoff("**Training data cutoff:** 2023-12") == "2023-12-31"
    assert parse_cutoff("The knowledge cut-off date is 2024-03-15.") == "2024-03-15"
    assert parse_cutoff("data cutoff: Sep 2021") == "2021-09-30"
    assert parse_cutoff("Trained on 2 trillion tokens in 2024.") is None
    assert normalize_cutoff("2024") == "2024-12-31"
    assert normalize_cutoff("2024-02") == "2024-02-29"
    with pytest.raises(ValueError, match="not a date"):
        normalize_cutoff("late 2024")


def test_cutoff_from_config_or_model_card(tmp_path):
    card_model = tmp_path / "model-with-card"
    card_model.mkdir()
    (card_model / "README.md").write_text("# A model\n\nKnowledge cutoff: March 2021.\n")
    spec = AgentSpec(type="zero_shot", model=str(card_model))
    assert resolve_cutoff(spec) == ("2021-03-31", str(card_model / "README.md"))
    assert check_window(spec, "2021-04-01", "2021-06-30").status == CLEAN
    assert check_window(spec, "2021-03-31", "2021-06-30").status == CONTAMINATED
    # The config wins over the card; no card and no config: unknown; rules: not applicable.
    assert (
        resolve_cutoff(AgentSpec(type="zero_shot", model=str(card_model), knowledge_cutoff="2022-01"))[0]
        == "2022-01-31"
    )
    bare = tmp_path / "bare"
    bare.mkdir()
    assert check_window(AgentSpec(type="zero_shot", model=str(bare)), "2021-04-01", "2021-06-30").status == UNKNOWN
    assert check_window(AgentSpec(type="momentum"), "2021-04-01", "2021-06-30").status == NOT_APPLICABLE


def test_contamination_warns_and_strict_refuses(tmp_path, synthetic_dir, caplog):
    agents = [
        {"type": "buy_and_hold"},
        {"type": "zero_shot", "name": "llm", "model": "x", "knowledge_cutoff": "2024-10"},
    ]
    recipe = baseline_recipe(tmp_path, synthetic_dir, agents=agents)

    def factory(spec):  # no real LLM needed to test the guard: a rule stands in for it
        return build_agent(AgentSpec(type="buy_and_hold", name=spec.name)) if spec.is_llm else build_agent(spec)

    with pytest.raises(ContaminationError, match="llm: 2020-10-01"):
        run_benchmark(config_from(recipe, "--strict"), agent_factory=factory)
    assert not (tmp_path / "bench" / "runs").exists()  # refused before any run

    with caplog.at_level(logging.WARNING):
        summary = run_benchmark(config_from(recipe), agent_factory=factory)
    assert "starts before its knowledge cutoff 2024-10-31" in caplog.text
    verdicts = {c["agent"]: c["status"] for c in summary["contamination"]}
    assert verdicts == {"buy_and_hold": NOT_APPLICABLE, "llm": CONTAMINATED}
    report = (tmp_path / "bench" / "report.md").read_text()
    assert "| llm | 2024-10-31 | config |" in report and "llm †" in report

    # A cutoff before the window: clean, strict mode runs.
    agents[1]["knowledge_cutoff"] = "2019-12"
    clean = run_benchmark(config_from(baseline_recipe(tmp_path, synthetic_dir, agents=agents), "--strict"), factory)
    assert {c["agent"]: c["status"] for c in clean["contamination"]}["llm"] == CLEAN
    assert "llm †" not in (tmp_path / "bench" / "report.md").read_text()


# --- configuration -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("recipe", sorted((ROOT / "recipes" / "benchmark").glob("*.yaml")), ids=lambda p: p.name)
def test_benchmark_recipes_parse(recipe):
    config = config_from(recipe)
    assert config.agent_specs and config.assets
    assert any(spec.type == "buy_and_hold" for spec in config.agent_specs)
    # `__post_init__` validates and normalises declared fields; it adds no attribute of its own.
    assert set(vars(config)) == {f.name for f in dataclasses.fields(config)}


def test_benchmark_recipes_run_a_zero_shot_llm_and_a_trained_adapter():
    # The rolling recipe runs rules only by default (an LLM over its 660 cells takes days on a CPU).
    types = {
        spec.type
        for recipe in (ROOT / "recipes" / "benchmark").glob("*.yaml")
        for spec in config_from(recipe).agent_specs
    }
    assert {"zero_shot", "flag"} <= types


def test_unknown_keys_fail(tmp_path, synthetic_dir):
    with pytest.raises(ValueError, match="Unknown arguments"):
        config_from(baseline_recipe(tmp_path, synthetic_dir, not_an_option=1))
    with pytest.raises(ValueError, match="Unknown key.*temprature"):
        config_from(baseline_recipe(tmp_path, synthetic_dir, agents=[{"type": "random", "temprature": 0.6}]))
    with pytest.raises(ValueError, match="Unknown key.*begin"):
        config_from(baseline_recipe(tmp_path, synthetic_dir, windows=[{"begin": "2020-10-01"}]))
    with pytest.raises(ValueError, match="needs `model`"):
        config_from(baseline_recipe(tmp_path, synthetic_dir, agents=[{"type": "zero_shot"}]))
    assert "benchmark" in COMMANDS


# --- zero-shot agent ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "answer, action",
    [
        ('{"action": "buy"}', "buy"),
        ('Sure! {"Action": "SELL"} is my answer', "sell"),
        ('```json\n{\n  "action": "hold"\n}\n```', "hold"),
        ('{"action": "buy', "buy"),  # cut by max_new_tokens
        ("{'action': 'sell'}", "sell"),
        ("Hold.", "hold"),
        ("I would BUY now", "buy"),
        ("buy or sell?", None),  # ambiguous
        ("The market looks interesting.", None),
        ('{"action": "short"}', None),
        ("", None),
    ],
)
def test_parse_action(answer, action):
    assert parse_action(answer) == action


def state_of(cash: float, shares: float, date: str = "2021-01-05") -> TradingState:
    return account_state(cash, shares, date)


def test_zero_shot_fallback_and_masked_actions_are_counted(tiny_tokenizer, tiny_llama, monkeypatch):
    agent = ZeroShotLLMAgent(tiny_llama, tiny_tokenizer, PromptConfig(**TINY_PROMPT), scoring="generate")
    answers = iter(['{"action": "buy"}', "no idea", '{"action": "sell"}', "SELL"])
    monkeypatch.setattr(agent, "generate_answer", lambda state: next(answers))
    flat = state_of(cash=1000.0, shares=0.0)  # sell is masked
    assert np.argmax(agent.action_distribution(flat)) == BUY
    assert np.argmax(agent.action_distribution(flat)) == HOLD  # unparseable: the documented fallback
    assert np.argmax(agent.action_distribution(flat)) == HOLD  # masked sell: executed as hold
    invested = state_of(cash=0.0, shares=90.0)
    assert np.argmax(agent.action_distribution(invested)) == SELL
    assert agent.stats == {"decisions": 4, "unparseable": 1, "masked": 1, "unparseable_examples": ["no idea"]}
    agent.reset(3)
    assert agent.stats["decisions"] == 0 and agent.seed == 3


def test_zero_shot_generation_is_seeded_per_decision(tiny_tokenizer, tiny_llama):
    agent = ZeroShotLLMAgent(tiny_llama, tiny_tokenizer, PromptConfig(**TINY_PROMPT), temperature=1.0, seed=0)
    state = state_of(cash=1000.0, shares=0.0)
    first = agent.generate_answer(state)
    assert agent.generate_answer(state) == first  # same seed, asset and date: same answer
    answers = {
        ZeroShotLLMAgent(
            tiny_llama, tiny_tokenizer, PromptConfig(**TINY_PROMPT), temperature=1.0, seed=s
        ).generate_answer(state)
        for s in range(6)
    }
    assert len(answers) > 1


def test_zero_shot_likelihood_scoring(tiny_tokenizer, tiny_llama):
    agent = ZeroShotLLMAgent(tiny_llama, tiny_tokenizer, PromptConfig(**TINY_PROMPT), scoring="likelihood")
    assert agent.deterministic and all(len(ids) == 1 for ids in agent.action_continuations)
    flat = state_of(cash=1000.0, shares=0.0)
    probs = agent.action_distribution(flat)
    assert probs.sum() == pytest.approx(1.0) and probs[SELL] == 0.0
    np.testing.assert_allclose(agent.action_distribution(flat), probs)
    # The scores are the LM's next-token probabilities of the action words after `{"action": "`.
    import torch

    prompt = agent.builder.encode(flat).input_ids + agent.answer_prefix_ids
    with torch.no_grad():
        logits = tiny_llama(torch.tensor([prompt])).logits[0, -1]
    ids = [tiny_tokenizer.convert_tokens_to_ids(word) for word in ("sell", "hold", "buy")]
    expected = torch.softmax(logits[ids], dim=0).double().numpy()
    np.testing.assert_allclose(agent.action_likelihoods(flat), expected, rtol=1e-5)
    np.testing.assert_allclose(probs[1:], expected[1:] / expected[1:].sum(), rtol=1e-5)


# --- no look-ahead, for every agent type ---------------------------------------------------------------------------


def dated_series() -> MarketSeries:
    """Prices, news and filings that each name their own date, so a leak of a later day is visible in the text."""
    dates = [str(d) for d in np.busday_offset("2021-03-01", np.arange(30), roll="forward")]
    rng = np.random.default_rng(0)
    close = 50.0 * np.exp(np.cumsum(rng.normal(0, 0.02, size=len(dates))))
    news = [
        [f"Report published {d}: shares moved (Sentiment: {'positive' if i % 2 else 'negative'})"]
        for i, d in enumerate(dates)
    ]
    filings = [[f"10-Q filed {d}: results"] if i % 7 == 0 else [] for i, d in enumerate(dates)]
    return MarketSeries("AAA", "stock", dates, close, news, filings)


def record_states(agent) -> list[TradingState]:
    seen, inner = [], agent.action_distribution

    def wrapped(state):
        seen.append(state)
        return inner(state)

    agent.action_distribution = wrapped
    return seen


def record_prompts(agent, tokenizer) -> list[tuple[str, str]]:
    prompts, inner = [], agent.builder.encode

    def wrapped(state):
        encoded = inner(state)
        prompts.append((state.date, tokenizer.decode(encoded.input_ids)))
        return encoded

    agent.builder.encode = wrapped
    return prompts


@pytest.mark.parametrize("mode", ["all_in", "position"])
def test_no_look_ahead_for_every_agent_type(mode, tiny_tokenizer, tiny_model_dirs):
    from conftest import build_tiny_llama

    series = dated_series()
    model_dir, adapter_dir = tiny_model_dirs
    agents = {
        "buy_and_hold": BuyAndHoldAgent(),
        "random": RandomAgent(),
        "ma_crossover": MovingAverageCrossoverAgent(3, 6),
        "momentum": MomentumAgent(lookback=4),
        "zero_shot_generate": ZeroShotLLMAgent(
            build_tiny_llama(len(tiny_tokenizer)), tiny_tokenizer, PromptConfig(**TINY_PROMPT), max_new_tokens=4
        ),
        "zero_shot_likelihood": ZeroShotLLMAgent(
            build_tiny_llama(len(tiny_tokenizer)), tiny_tokenizer, PromptConfig(**TINY_PROMPT), scoring="likelihood"
        ),
        "flag": FlagAgent.from_pretrained(str(adapter_dir)),
    }
    start, end = series.dates[8], series.dates[20]
    for name, agent in agents.items():
        states = record_states(agent)
        prompts = record_prompts(agent, agent.tokenizer) if hasattr(agent, "builder") else []
        run_backtest(agent, series, start, end, seed=0, greedy=False, mode=mode)
        assert len(states) == 12, name
        for state in states:
            t = series.dates.index(state.date)
            assert max(state.dates) == state.date and state.dates == series.dates[: t + 1], name
            np.testing.assert_array_equal(state.prices, series.close[: t + 1])
            assert state.news == series.news[t] and state.filings == series.filings[t], name
            assert all(d <= state.date for d in state.dates), name
        if name.startswith(("zero_shot", "flag")):
            assert [date for date, _ in prompts] == [s.date for s in states], name
            for date, text in prompts:
                later = [d for d in series.dates if d > date]
                assert date in text, name
                assert not any(d in text for d in later), f"{name}: the prompt of {date} names a later date"


# --- the evaluate module ---------------------------------------------------------------------------------------------


def test_evaluate_module_loads_offline_and_matches_the_benchmark(tmp_path, synthetic_dir, monkeypatch):
    evaluate = pytest.importorskip("evaluate")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    metric = evaluate.load(str(METRICS_MODULE))
    summary = run_benchmark(config_from(baseline_recipe(tmp_path, synthetic_dir, seeds=[0])))
    for record in summary["runs"]:
        run = json.loads(
            (
                tmp_path / "bench" / "runs" / f"{record['agent']}__SYNA__{record['start']}_{record['end']}__seed0.json"
            ).read_text()
        )
        positions = [row["position"] for row in run["trajectory"]]  # the last one is ignored by the module
        prices = [row["price"] for row in run["trajectory"]]
        scores = metric.compute(predictions=positions, references=prices, trading_days_per_year=252)
        assert scores == pytest.approx(run["metrics"]["paper"])


def test_synthetic_rows_in_the_test(tmp_path):
    """The benchmark also reads a dataset built from rows in the test (no preparation script)."""
    dates = [str(d) for d in np.busday_offset("2021-03-01", np.arange(12), roll="forward")]
    rows = [
        {
            "date": d,
            "asset": "AAA",
            "asset_class": "stock",
            "close": 10.0 + i,
            "open": None,
            "high": None,
            "low": None,
            "volume": None,
            "news": [],
            "filings": [],
        }
        for i, d in enumerate(dates)
    ]
    DatasetDict({"full": Dataset.from_list(rows, features=MARKET_FEATURES)}).save_to_disk(str(tmp_path / "m"))
    recipe = baseline_recipe(tmp_path, tmp_path / "m", assets=["AAA"], windows=[{"start": dates[0], "end": dates[-1]}])
    summary = run_benchmark(config_from(recipe))
    entry = next(e for e in summary["summary"] if e["agent"] == "buy_and_hold")
    assert entry["median"]["paper"]["cumulative_return"] == pytest.approx(math.log(21.0 / 10.0))


def strict_json(text: str):
    """Parse as strict JSON: `Infinity`, `-Infinity` and `NaN` are not JSON and fail."""

    def reject(token):
        raise ValueError(f"non-standard JSON token {token}")

    return json.loads(text, parse_constant=reject)


def test_every_json_file_is_strict_and_a_wipe_out_is_reported(tmp_path):
    # UPP only rises (Sortino and Calmar inf); on SQZ momentum goes short, then the price triples twice.
    dates = [str(d) for d in np.busday_offset("2021-03-01", np.arange(8), roll="forward")]
    prices = {"UPP": [100.0, 101.0, 103.0, 103.5, 106.0, 107.0, 108.0, 109.0]}
    prices["SQZ"] = [20.0, 19.0, 18.0, 17.0, 16.0, 50.0, 150.0, 160.0]
    rows = [
        {"date": d, "asset": a, "asset_class": "stock", "close": p, "open": None, "high": None, "low": None}
        | {"volume": None, "news": [], "filings": []}
        for a, series in prices.items()
        for d, p in zip(dates, series)
    ]
    dataset = tmp_path / "market"
    DatasetDict({"full": Dataset.from_list(rows, features=MARKET_FEATURES)}).save_to_disk(str(dataset))
    agents = [{"type": "buy_and_hold"}, {"type": "momentum", "params": {"lookback": 3}}]
    recipe = baseline_recipe(
        tmp_path,
        dataset,
        assets=["UPP", "SQZ"],
        windows=[{"start": dates[0], "end": dates[-1]}],
        max_days=None,
        seeds=[0],
        mode="position",
        agents=agents,
    )
    first = run_benchmark(config_from(recipe))
    assert first["timing"]["failed"] == 0
    out_dir = tmp_path / "bench"
    files = sorted(out_dir.rglob("*.json"))
    assert len(files) >= 6  # 4 runs, the configuration, the results
    parsed = {path.name: strict_json(path.read_text()) for path in files}

    upp = next(e for e in parsed["results.json"]["summary"] if (e["agent"], e["asset"]) == ("buy_and_hold", "UPP"))
    assert upp["median"]["standard"]["sortino_ratio"] == "inf" and upp["median"]["standard"]["calmar_ratio"] == "inf"
    squeezed = parsed[f"momentum__SQZ__{dates[0]}_{dates[-1]}__seed0.json"]
    assert squeezed["status"] == "ok" and squeezed["wiped_out"]
    assert squeezed["metrics"]["standard"]["cumulative_return"] == -1.0
    report = (out_dir / "report.md").read_text()
    assert "‡ wiped out" in report and "1 (1 ‡)" in report

    # Resuming reads "inf" back as a number: the same summary, and the same strict files.
    again = run_benchmark(config_from(recipe))
    assert again["timing"]["skipped"] == 4
    assert json.dumps(again["summary"]) == json.dumps(first["summary"])
    strict_json((out_dir / "results.json").read_text())


def test_anonymised_inputs_reach_zero_shot_and_flag_agents(tiny_model_dirs):
    model_dir, adapter_dir = tiny_model_dirs
    zero_shot = {"type": "zero_shot", "model": str(model_dir), "scoring": "likelihood", "prompt": TINY_PROMPT}
    for spec in (AgentSpec(**zero_shot), AgentSpec(type="flag", adapter=str(adapter_dir))):
        real = build_agent(spec)
        anonymised = build_agent(AgentSpec(**{**vars(spec), "name": None, "anonymise": True}))
        assert (real.builder.config.anonymise, anonymised.builder.config.anonymise) == (False, True)
        # The adapter's other prompt settings are kept.
        assert anonymised.builder.config.max_prompt_tokens == TINY_PROMPT["max_prompt_tokens"]
