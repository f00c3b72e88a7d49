"""Train a FLAG-Trader policy with PPO, then backtest it against buy-and-hold on the held-out window.

    accelerate launch --config_file accelerate_configs/cpu.yaml recipes/ppo_flag.py \
        --config recipes/smollm2-135m/ppo/config_demo.yaml

Any YAML key can be overridden on the command line (`--total_timesteps 2000`); unknown keys fail.
"""

from __future__ import annotations

import logging
import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import transformers
from transformers import set_seed
from transformers.trainer_utils import get_last_checkpoint
from trl import ModelConfig, TrlParser

from flagtrl.benchmark.provenance import machine_record
from flagtrl.data.schema import load_market_dataset
from flagtrl.metrics_table import format_metrics_table
from flagtrl.strict_json import write_json
from flagtrl.trainer.learning_curve import plot_learning_curve
from flagtrl.trainer.policy_loading import load_policy
from flagtrl.trainer.ppo_flag_config import FlagPPOConfig
from flagtrl.trainer.ppo_flag_trainer import FlagPPOTrainer


logger = logging.getLogger(__name__)


def peak_rss_gib() -> float:
    """This process's peak resident memory in GiB (`getrusage`: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (2**30 if sys.platform == "darwin" else 2**20)


def run_record(training_args: FlagPPOConfig, policy, checkpoint: str | None, train_seconds: float) -> dict:
    """What produced this run's numbers: seed, dtypes, threads, wall time and peak memory of this process (a resumed
    run counts only its last leg: `resumed_from` says so), versions and hardware (`flagtrl.benchmark.provenance`)."""
    return {
        "seed": training_args.seed,
        "dtype": str(policy.backbone.get_input_embeddings().weight.dtype).removeprefix("torch."),
        "bf16_autocast": bool(training_args.bf16),
        "torch_threads": torch.get_num_threads(),
        "train_seconds": train_seconds,
        "peak_rss_gib": peak_rss_gib(),
        "resumed_from": checkpoint,
        **machine_record(training_args.world_size),
    }


@dataclass
class ScriptArguments:
    """Script arguments of `recipes/ppo_flag.py`.

    Parameters:
        dataset_name (`str`): Folder of a prepared market dataset (`datasets/prepare_*.py`).
        final_backtest (`bool`): Backtest the trained policy and buy-and-hold on the test split after training.
        backtest_max_days (`int`, *optional*): Cap on the days of each test window in the final backtest.
    """

    dataset_name: str = field(metadata={"help": "Folder of a prepared market dataset."})
    final_backtest: bool = field(default=True, metadata={"help": "Backtest the trained policy after training."})
    backtest_max_days: int | None = field(default=None, metadata={"help": "Cap on the days of each test window."})


def main(script_args: ScriptArguments, training_args: FlagPPOConfig, model_args: ModelConfig):
    # Seed and logging
    set_seed(training_args.seed)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    transformers.utils.logging.set_verbosity_warning()
    started = time.time()

    # Dataset
    dataset = load_market_dataset(script_args.dataset_name)

    # Model and tokenizer
    policy, tokenizer = load_policy(model_args, training_args)

    # Trainer
    trainer = FlagPPOTrainer(policy, training_args, dataset, tokenizer)

    # Train, resuming from the last checkpoint of output_dir when there is one
    checkpoint = training_args.resume_from_checkpoint or get_last_checkpoint(training_args.output_dir)
    if checkpoint:
        logger.info("Resuming from %s", checkpoint)
    trainer.train(resume_from_checkpoint=checkpoint)
    train_seconds = time.time() - started

    # Save the adapter and its model card
    trainer.save_model(training_args.output_dir)
    logger.info("Adapter saved to %s", training_args.output_dir)

    # Evaluate: the trained policy, the untrained one and buy-and-hold on the held-out window, and the learning curve
    if script_args.final_backtest:
        trainer.evaluate(max_days=script_args.backtest_max_days)
    if script_args.final_backtest and trainer.accelerator.is_main_process:
        results = trainer.last_eval_results
        report = {}
        for convention in ("paper", "standard"):
            table = {}
            for (agent, asset), result in results.items():
                table.setdefault(asset, {})[agent] = result.metrics[convention]
            report[convention] = format_metrics_table(table, convention)
            print(f"\n{report[convention]}\n")
        report_path = Path(training_args.output_dir) / "backtest.json"
        write_json(
            report_path,
            {
                "train_seconds": train_seconds,
                "env_steps": trainer.state.global_step * training_args.batch_size,
                "run": run_record(training_args, policy, checkpoint, train_seconds),
                "results": [r.to_dict() for r in results.values()],
            },
            indent=2,
        )
        (Path(training_args.output_dir) / "backtest.md").write_text("\n\n".join(report.values()) + "\n")
        curve = plot_learning_curve(
            trainer.state.log_history,
            training_args.batch_size * trainer.accelerator.num_processes,
            Path(training_args.output_dir) / "learning_curve.png",
        )
        print(f"Adapter: {training_args.output_dir}\nReport: {report_path} (and backtest.md)")
        if curve:
            print(f"Learning curve: {curve}")
    trainer.create_model_card(model_name=Path(training_args.output_dir).name, dataset_name=script_args.dataset_name)
    if trainer.accelerator.is_main_process:
        peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None
        logger.info(
            "Done in %.0f s, peak RSS %.2f GiB%s",
            time.time() - started,
            peak_rss_gib(),
            f", peak GPU memory {peak:.2f} GiB" if peak else "",
        )

    # Push
    if training_args.push_to_hub:
        trainer.push_to_hub(dataset_name=script_args.dataset_name)


if __name__ == "__main__":
    parser = TrlParser((ScriptArguments, FlagPPOConfig, ModelConfig))
    script_args, training_args, model_args = parser.parse_args_and_config()
    main(script_args, training_args, model_args)
    sys.exit(0)
