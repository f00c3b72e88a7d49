"""Tracking that works offline: a tiny policy trained with `report_to="tensorboard"` writes the trainer's scalars to
`<output_dir>/runs/`, and TensorBoard's own reader gets back exactly what the trainer logged."""

from __future__ import annotations

import pytest
import torch
from conftest import build_tiny_llama, tiny_ppo_config
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from flagtrl.data.synthetic import make_synthetic_dataset
from flagtrl.models import FlagPolicy
from flagtrl.trainer.ppo_flag_trainer import FlagPPOTrainer


def test_tensorboard_scalars_are_the_logged_metrics(tiny_tokenizer, tmp_path, monkeypatch):
    monkeypatch.delenv("TENSORBOARD_LOGGING_DIR", raising=False)  # would move the event files elsewhere
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        policy = FlagPolicy.from_backbone(
            build_tiny_llama(len(tiny_tokenizer)), tiny_tokenizer, num_trainable_layers=2
        )
        config = tiny_ppo_config(tmp_path / "run", total_timesteps=2 * 2 * 4, report_to="tensorboard")  # 2 iterations
        trainer = FlagPPOTrainer(policy, config, make_synthetic_dataset(seed=0), processing_class=tiny_tokenizer)
        trainer.train()
    finally:
        torch.set_num_threads(threads)

    runs = list((tmp_path / "run" / "runs").iterdir())
    assert len(runs) == 1, runs  # <output_dir>/runs/<date>_<host>: `tensorboard --logdir <output_dir>/runs`
    events = EventAccumulator(str(runs[0]))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    logged = {entry["step"]: entry for entry in trainer.state.log_history if "policy/entropy" in entry}
    assert sorted(logged) == [1, 2]
    for name in ("policy/entropy", "policy/approx_kl", "objective/kl", "value/loss", "lr/heads"):
        assert f"train/{name}" in tags, sorted(tags)  # transformers' TensorBoardCallback prefixes `train/`
        scalars = events.Scalars(f"train/{name}")
        assert [s.step for s in scalars] == [1, 2]
        assert [s.value for s in scalars] == pytest.approx([logged[1][name], logged[2][name]], rel=1e-6, abs=1e-9)
