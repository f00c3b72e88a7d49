"""Does PPO make a better trader? The real SmolLM2-135M trained on synthetic markets whose news carries a known signal.

    HF_HUB_OFFLINE=1 python benchmarks/learning.py --config recipes/smollm2-135m/learning/config_synthetic.yaml
    HF_HUB_OFFLINE=1 python benchmarks/learning.py --config recipes/smollm2-135m/learning/config_synthetic.yaml \
        --accuracies 0.9 --seeds 0 --total_timesteps 256          # one quick run
    HF_HUB_OFFLINE=1 python benchmarks/learning.py --config ... --kl_coef 0.05 --output_dir outputs/learning-kl  # ablation
    HF_HUB_OFFLINE=1 python benchmarks/learning.py --config ... --use_peft true --lora_r 16 --lora_alpha 32 \
        --lora_dropout 0.0 --lora_target_modules all-linear --llm_learning_rate 5e-4 --output_dir outputs/learning-lora

For each news accuracy (0.5: no information; 0.7; 0.9) and seed, a synthetic market (`flagtrl.data.synthetic`, one
stock, the paper's stock windows: train 2020-07-01 → 2020-09-30, test 2020-10-01 → 2021-05-06) is generated with that
seed; news published on day t forecasts the move that a decision of day t trades. A fresh policy is trained with the
recipe's settings (any `FlagPPOConfig` key may be overridden on the command line), evaluated greedily on the test
window every `--eval_every` PPO iterations (the learning curve), and finally compared on the test window with:

- `untrained`: the same policy before training (the zero-shot prior of SmolLM2 through the LM head's action rows);
- `buy_and_hold`, `random` (seeded), and `news_sentiment` (follows the news: the best a policy can learn here).

It prints, per accuracy, each agent's mean ± std over seeds in both metric conventions (`paper`: InvestorBench's log
returns of +1/0/-1 positions; `standard`: the account's equity curve), the per-seed checks of the target (at 0.7 and
0.9 the trained policy beats buy-and-hold and random on every seed and reaches half the news agent's Sharpe; at 0.5 it
shows no edge over them), and writes `results.json` (versions, hardware, seeds, every run), `results.md` and
`learning_curve.png` (test-window Sharpe against environment steps) to `--output_dir`. With `--use_peft true` (TRL's
`ModelConfig` LoRA fields; `--load_in_4bit true` for QLoRA) the policy trains LoRA adapters on the trainable layers
instead of the layers themselves (`flagtrl.models.lora`). Completed runs are kept in
`runs/` and skipped when the benchmark is started again with the same settings.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch


os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from transformers import set_seed  # noqa: E402
from trl import ModelConfig, TrlParser  # noqa: E402

from flagtrl.agents import BuyAndHoldAgent, NewsSentimentAgent, RandomAgent  # noqa: E402
from flagtrl.agents.flag_agent import FlagAgent  # noqa: E402
from flagtrl.backtest import evaluate_agents  # noqa: E402
from flagtrl.data.synthetic import make_synthetic_dataset  # noqa: E402
from flagtrl.hardware import cpu_has_fast_bf16, cpu_has_native_bf16, cpu_vendor  # noqa: E402
from flagtrl.models.loading import resolve_dtype  # noqa: E402
from flagtrl.prompt import PROMPT_VERSION  # noqa: E402
from flagtrl.strict_json import decode_non_finite, write_json  # noqa: E402
from flagtrl.trainer.policy_loading import load_policy  # noqa: E402
from flagtrl.trainer.ppo_flag_config import FlagPPOConfig  # noqa: E402
from flagtrl.trainer.ppo_flag_trainer import FlagPPOTrainer  # noqa: E402


logger = logging.getLogger("benchmarks.learning")

ASSET = "SYNA"
AGENTS = ("flag_trader", "untrained", "buy_and_hold", "random", "news_sentiment")
CONVENTIONS = ("paper", "standard")
# Settings that do not change a run's numbers (they do not enter the key of its result file).
IGNORED_SETTINGS = {"output_dir", "logging_dir", "seed", "disable_tqdm", "report_to", "logging_steps", "run_name"}


@dataclass
class LearningBenchmarkArguments:
    """Arguments of `benchmarks/learning.py` (the PPO settings come from `FlagPPOConfig`).

    Parameters:
        accuracies (`str`): Comma-separated news accuracies of the synthetic markets.
        seeds (`str`): Comma-separated seeds (each seeds the market, the policy's training and the random agent).
        eval_days (`int`): Test-window days of every evaluation (the first ones of the window).
        eval_every (`int`): PPO iterations between learning-curve evaluations (0: only before and after).
        threads (`int`): torch threads (0: all cores).
        train_window (`str`), test_window (`str`): `START:END` of the synthetic market's splits. The training window
            is longer than the paper's 64-day warm-up on purpose: a minibatch drawn from a few dozen days carries
            their common drift, which a policy learns as a bias long before it learns to read the news.
    """

    accuracies: str = field(default="0.5,0.7,0.9", metadata={"help": "Comma-separated news accuracies."})
    seeds: str = field(default="0,1,2", metadata={"help": "Comma-separated seeds."})
    eval_days: int = field(default=60, metadata={"help": "Test-window days of each evaluation."})
    eval_every: int = field(default=0, metadata={"help": "PPO iterations between curve points (0: ends only)."})
    threads: int = field(default=0, metadata={"help": "torch threads (0: all cores)."})
    train_window: str = field(default="2019-01-02:2020-09-30", metadata={"help": "START:END of the training split."})
    test_window: str = field(default="2020-10-01:2021-05-06", metadata={"help": "START:END of the test split."})

    def windows(self) -> dict:
        train, test = tuple(self.train_window.split(":")), tuple(self.test_window.split(":"))
        return {"stock": {"train": train, "test": test}, "crypto": {"train": train, "test": test}}


def hardware() -> dict:
    flags = ""
    if Path("/proc/cpuinfo").exists():
        flags = Path("/proc/cpuinfo").read_text()
    model = next((line.split(":", 1)[1].strip() for line in flags.splitlines() if line.startswith("model name")), "")
    return {
        "cpu": model or platform.processor(),
        "cpu_kind": "AVX512-BF16" if "avx512_bf16" in flags else ("AVX2" if "avx2" in flags else "other"),
        "vendor": cpu_vendor(),
        "native_bf16": cpu_has_native_bf16(),
        "fast_bf16": cpu_has_fast_bf16(),  # what `dtype: auto` loads in bf16
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
    }


def versions() -> dict:
    import accelerate
    import datasets
    import transformers
    import trl

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "trl": trl.__version__,
        "accelerate": accelerate.__version__,
        "datasets": datasets.__version__,
        "prompt_version": PROMPT_VERSION,
    }


def run_key(accuracy: float, seed: int, settings: dict) -> str:
    payload = json.dumps({"accuracy": accuracy, "seed": seed, **settings}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def metric_row(result) -> dict:
    return {c: result.metrics[c].to_dict() for c in CONVENTIONS}


class CurveRecorder:
    """Greedy test-window Sharpe of the policy at given PPO iterations (the learning curve)."""

    def __init__(self, trainer: FlagPPOTrainer, dataset, eval_days: int, every: int):
        self.trainer, self.dataset, self.eval_days, self.every = trainer, dataset, eval_days, every
        self.points: list[dict] = []

    def record(self, iteration: int) -> None:
        trainer = self.trainer
        policy = trainer.model
        was_training = policy.training
        policy.eval()
        agent = FlagAgent(policy, trainer.processing_class, trainer.prompt_config)
        result = evaluate_agents(
            {"flag_trader": agent},
            self.dataset,
            "test",
            [ASSET],
            max_days=self.eval_days,
            mode=trainer.args.trading_mode,
            transaction_cost_bps=trainer.args.transaction_cost_bps,
        )[("flag_trader", ASSET)]
        policy.train(was_training)
        self.add(iteration, result)

    def add(self, iteration: int, result) -> None:
        """A point from an evaluation already run (the final one: the benchmark's own evaluation of the policy)."""
        steps = iteration * self.trainer.args.batch_size
        self.points.append(
            {"iteration": iteration, "env_steps": steps, **{c: result.metrics[c].sharpe_ratio for c in CONVENTIONS}}
        )
        logger.info("curve: %d env steps, paper Sharpe %.3f", steps, self.points[-1]["paper"])


def train_and_evaluate(accuracy: float, seed: int, bench: LearningBenchmarkArguments, args: FlagPPOConfig, model_args):
    from transformers import TrainerCallback

    set_seed(seed)
    dataset = make_synthetic_dataset(
        assets={ASSET: "stock"}, seed=seed, news_accuracy=accuracy, windows=bench.windows()
    )
    policy, tokenizer = load_policy(model_args, args)
    run_args = copy.deepcopy(args)
    run_args.seed = seed
    trainer = FlagPPOTrainer(policy, run_args, dataset, processing_class=tokenizer)
    curve = CurveRecorder(trainer, dataset, bench.eval_days, bench.eval_every)

    class Curve(TrainerCallback):
        def on_step_end(self, _args, state, control, **kwargs):
            if bench.eval_every and state.global_step % bench.eval_every == 0 and state.global_step < state.max_steps:
                curve.record(state.global_step)

    trainer.add_callback(Curve())
    baselines = {
        "untrained": FlagAgent(policy, tokenizer, trainer.prompt_config, name="untrained"),
        "buy_and_hold": BuyAndHoldAgent(),
        "random": RandomAgent(seed=seed),
        "news_sentiment": NewsSentimentAgent(),
    }
    policy.eval()
    common = dict(
        max_days=bench.eval_days, mode=run_args.trading_mode, transaction_cost_bps=run_args.transaction_cost_bps
    )
    before = evaluate_agents(baselines, dataset, "test", [ASSET], seed=seed, **common)
    curve.points.append(
        {
            "iteration": 0,
            "env_steps": 0,
            **{c: before[("untrained", ASSET)].metrics[c].sharpe_ratio for c in CONVENTIONS},
        }
    )
    policy.train()
    started = time.time()
    trainer.train()
    train_seconds = time.time() - started
    policy.eval()
    after = evaluate_agents(
        {"flag_trader": FlagAgent(policy, tokenizer, trainer.prompt_config)},
        dataset,
        "test",
        [ASSET],
        seed=seed,
        **common,
    )
    curve.add(trainer.state.global_step, after[("flag_trader", ASSET)])  # the last point is this evaluation
    results = {name: metric_row(before[(name, ASSET)]) for name in baselines} | {
        "flag_trader": metric_row(after[("flag_trader", ASSET)])
    }
    trajectory = after[("flag_trader", ASSET)].trajectory
    actions = [row["action"] for row in trajectory if row["action"]]
    news_actions = [row["action"] for row in before[("news_sentiment", ASSET)].trajectory if row["action"]]
    untrained_actions = [row["action"] for row in before[("untrained", ASSET)].trajectory if row["action"]]
    return {
        "accuracy": accuracy,
        "seed": seed,
        "metrics": results,
        "curve": curve.points,
        "train_seconds": train_seconds,
        "env_steps": trainer.state.global_step * run_args.batch_size,
        "env_steps_per_second": trainer.state.global_step * run_args.batch_size / train_seconds,
        "trained_actions": {a: actions.count(a) for a in ("buy", "hold", "sell")},
        # Does the policy read the news? The share of days on which it does what the news says (0.5: chance).
        "news_agreement": float(np.mean([a == b for a, b in zip(actions, news_actions)])),
        "untrained_news_agreement": float(np.mean([a == b for a, b in zip(untrained_actions, news_actions)])),
        "window": [trajectory[0]["date"], trajectory[-1]["date"]],
    }


def _mean_std(values: list[float]) -> str:
    values = [v for v in values if np.isfinite(v)]
    if not values:
        return "n/a"
    return f"{np.mean(values):.2f} ± {np.std(values):.2f}" if len(values) > 1 else f"{values[0]:.2f}"


def summarise(runs: list[dict]) -> tuple[str, list[str]]:
    """A Markdown table (mean ± std over seeds per accuracy and agent, both conventions) and the target checks."""
    lines = [
        "| news accuracy | agent | paper CR % | paper Sharpe | standard CR % | standard Sharpe |",
        "| ---: | :--- | ---: | ---: | ---: | ---: |",
    ]
    checks: list[str] = []
    for accuracy in sorted({run["accuracy"] for run in runs}):
        group = [run for run in runs if run["accuracy"] == accuracy]
        for agent in AGENTS:
            cells = []
            for convention in CONVENTIONS:
                cells.append(_mean_std([100 * r["metrics"][agent][convention]["cumulative_return"] for r in group]))
                cells.append(_mean_std([r["metrics"][agent][convention]["sharpe_ratio"] for r in group]))
            lines.append(f"| {accuracy:.1f} | {agent} | " + " | ".join(cells) + " |")
        for run in group:
            sharpe = {agent: run["metrics"][agent]["paper"]["sharpe_ratio"] for agent in AGENTS}
            beats = sharpe["flag_trader"] > sharpe["buy_and_hold"] and sharpe["flag_trader"] > sharpe["random"]
            half = sharpe["flag_trader"] >= 0.5 * sharpe["news_sentiment"]
            verdict = "ok" if (beats and half) else "MISSED"
            if accuracy <= 0.5:
                verdict = "no spurious edge" if sharpe["flag_trader"] <= max(sharpe["buy_and_hold"], 1.0) else "EDGE?"
            checks.append(
                f"accuracy {accuracy:.1f} seed {run['seed']}: trained {sharpe['flag_trader']:.2f}, untrained "
                f"{sharpe['untrained']:.2f}, buy&hold {sharpe['buy_and_hold']:.2f}, random {sharpe['random']:.2f}, "
                f"news {sharpe['news_sentiment']:.2f} (paper Sharpe) -> {verdict}; actions {run['trained_actions']}"
                + (
                    f"; follows the news on {100 * run['news_agreement']:.0f} % of days"
                    if "news_agreement" in run
                    else ""
                )
            )
    return "\n".join(lines), checks


def plot_curves(runs: list[dict], path: Path) -> None:
    from matplotlib.figure import Figure

    accuracies = sorted({run["accuracy"] for run in runs})
    fig = Figure(figsize=(4.5 * len(accuracies), 4))
    axes = np.atleast_1d(fig.subplots(1, len(accuracies), sharey=True))
    for ax, accuracy in zip(axes, accuracies):
        group = [run for run in runs if run["accuracy"] == accuracy]
        for run in group:
            steps = [p["env_steps"] for p in run["curve"]]
            ax.plot(steps, [p["paper"] for p in run["curve"]], marker="o", label=f"seed {run['seed']}")
        for agent, style in (("news_sentiment", ":"), ("buy_and_hold", "--")):
            level = np.mean([run["metrics"][agent]["paper"]["sharpe_ratio"] for run in group])
            ax.axhline(level, color="gray" if agent == "buy_and_hold" else "green", linestyle=style, label=agent)
        ax.set_title(f"news accuracy {accuracy:.1f}")
        ax.set_xlabel("environment steps")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test-window Sharpe (paper convention)")
    axes[-1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(bench: LearningBenchmarkArguments, args: FlagPPOConfig, model_args: ModelConfig) -> int:
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    if bench.threads:
        torch.set_num_threads(bench.threads)
    output = Path(args.output_dir)
    (output / "runs").mkdir(parents=True, exist_ok=True)
    settings = {k: v for k, v in args.to_dict().items() if k not in IGNORED_SETTINGS}
    # The dtype `auto` resolves to on this machine (bf16 and float32 runs give different numbers: never reuse across).
    settings.update(model=model_args.model_name_or_path, dtype=str(resolve_dtype(model_args.dtype)))
    if model_args.use_peft:  # in the run key: a LoRA run never reuses a full-top-layer run's result, nor the reverse
        lora_keys = ("lora_r", "lora_alpha", "lora_dropout", "lora_target_modules", "load_in_4bit", "load_in_8bit")
        settings.update(use_peft=True, **{k: getattr(model_args, k) for k in lora_keys})
    settings.update(eval_days=bench.eval_days, eval_every=bench.eval_every, prompt_version=PROMPT_VERSION)
    settings.update(train_window=bench.train_window, test_window=bench.test_window)
    accuracies = [float(a) for a in bench.accuracies.split(",")]
    seeds = [int(s) for s in bench.seeds.split(",")]
    runs, started = [], time.time()
    for accuracy in accuracies:
        for seed in seeds:
            path = output / "runs" / f"acc{accuracy:.2f}_seed{seed}_{run_key(accuracy, seed, settings)}.json"
            if path.exists():
                runs.append(json.loads(path.read_text(), object_hook=decode_non_finite))
                logger.info("accuracy %.1f seed %d: kept %s", accuracy, seed, path.name)
                continue
            logger.info("accuracy %.1f seed %d: training", accuracy, seed)
            run = train_and_evaluate(accuracy, seed, bench, args, model_args)
            write_json(path, run)
            runs.append(run)
    table, checks = summarise(runs)
    header = (
        f"Learning benchmark: {model_args.model_name_or_path}, {args.total_timesteps} env steps per run, "
        f"mode {args.trading_mode}, reward {args.reward}, {bench.eval_days} test days; {hardware()['cpu_kind']} CPU, "
        f"{settings['dtype']}, "
        f"{time.time() - started:.0f} s"
    )
    report = "\n".join([header, "", table, "", *checks])
    print(report)
    (output / "results.md").write_text(report + "\n")
    write_json(
        output / "results.json",
        {"settings": settings, "hardware": hardware(), "versions": versions(), "runs": runs, "checks": checks},
    )
    plot_curves(runs, output / "learning_curve.png")
    print(f"\nWrote {output / 'results.md'}, {output / 'results.json'} and {output / 'learning_curve.png'}.")
    return 0


if __name__ == "__main__":
    parser = TrlParser((LearningBenchmarkArguments, FlagPPOConfig, ModelConfig))
    sys.exit(main(*parser.parse_args_and_config()))
