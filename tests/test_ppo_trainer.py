"""FlagPPOTrainer end to end on the synthetic market with a tiny Llama: what trains and what stays frozen, logging,
determinism, checkpoint/resume, the model card, evaluation, two-process DDP, and (slow) the real SmolLM2."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from conftest import build_tiny_llama, tiny_ppo_config
from huggingface_hub import ModelCard
from peft import LoraConfig
from transformers import TrainerCallback
from trl import ModelConfig

from flagtrl.backtest import split_windows
from flagtrl.data.schema import market_series
from flagtrl.data.synthetic import make_synthetic_dataset
from flagtrl.models import FlagPolicy
from flagtrl.trainer.policy_loading import load_policy
from flagtrl.trainer.ppo_flag_config import FlagPPOConfig
from flagtrl.trainer.ppo_flag_trainer import FlagPPOTrainer


TESTS_DIR = Path(__file__).resolve().parent
TINY_BASE = "tiny-org/tiny-llama"


def tiny_config(output_dir: Path, **overrides) -> FlagPPOConfig:
    """Two environments, four steps a rollout, three PPO iterations; episodes of 6 steps cross rollout boundaries."""
    return tiny_ppo_config(output_dir, **overrides)


def tiny_policy(tokenizer, seed: int = 0) -> FlagPolicy:
    backbone = build_tiny_llama(len(tokenizer), seed=seed)
    backbone.config.name_or_path = TINY_BASE
    return FlagPolicy.from_backbone(backbone, tokenizer, num_trainable_layers=2, base_model_name_or_path=TINY_BASE)


def make_trainer(tokenizer, dataset, output_dir: Path, callbacks=None, **overrides) -> FlagPPOTrainer:
    return FlagPPOTrainer(
        tiny_policy(tokenizer),
        tiny_config(output_dir, **overrides),
        dataset,
        processing_class=tokenizer,
        callbacks=callbacks,
    )


def snapshot(policy: FlagPolicy) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().clone() for name, tensor in policy.state_dict().items()}


def assert_same_adapter(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key], b[key], rtol=0, atol=1e-6), key


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Tiny models gain nothing from a second thread, and OpenMP's spin-waiting makes them 10x slower when other
    processes share the cores (measured: the trainer tests took 170 s instead of 13 s on a loaded 2-core machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield threads
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def dataset():
    return make_synthetic_dataset(seed=0)


@pytest.fixture(scope="module")
def trained(tiny_tokenizer, dataset, tmp_path_factory):
    """One short run shared by the tests that only read its result: (trainer, weights before training)."""
    trainer = make_trainer(tiny_tokenizer, dataset, tmp_path_factory.mktemp("run"), eval_max_days=5)
    initial = snapshot(trainer.model)
    trainer.train()
    return trainer, initial


# --- (a) what trains, what stays frozen, what is logged -------------------------------------------------------------
def test_training_changes_exactly_the_trainable_parts(trained):
    trainer, initial = trained
    policy: FlagPolicy = trainer.model
    assert trainer.state.global_step == 3
    final = snapshot(policy)
    assert all(torch.isfinite(t).all() for t in final.values() if t.is_floating_point())

    def prefixed(module, prefix: str) -> list[str]:
        return [f"{prefix}.{name}" for name, _ in module.named_parameters()]

    assert policy.num_frozen_layers == 2 and len(policy.trainable_layers) == 2
    changed = []
    for offset, layer in enumerate(policy.trainable_layers):
        changed += prefixed(layer, f"backbone.model.layers.{policy.num_frozen_layers + offset}")
    changed += ["backbone.model.norm.weight", "policy_head.weight", "value_head.weight", "value_head.bias"]
    for name in changed:
        assert not torch.equal(final[name], initial[name]), f"{name} did not change"

    unchanged = ["backbone.model.embed_tokens.weight"]
    for i, layer in enumerate(policy.frozen_layers):
        unchanged += prefixed(layer, f"backbone.model.layers.{i}")
    unchanged += [name for name in final if name.startswith("reference.")]
    assert len(unchanged) > 10
    for name in unchanged:
        assert torch.equal(final[name], initial[name]), f"{name} changed"


def test_log_history_has_namespaced_finite_metrics(trained):
    trainer, _ = trained
    logs = [entry for entry in trainer.state.log_history if "policy/entropy" in entry]
    assert [entry["step"] for entry in logs] == [1, 2, 3]
    for entry in logs:
        for key in ("objective/kl", "policy/entropy", "policy/approx_kl", "policy/clipfrac", "value/loss"):
            assert key in entry and math.isfinite(entry[key]), key
        assert "policy/loss" in entry and math.isfinite(entry["policy/loss"])
        # Three actions at most: the entropy lies in [0, ln 3]; the KL to the reference is non-negative.
        assert 0.0 <= entry["policy/entropy"] <= math.log(3) + 1e-6
        assert entry["objective/kl"] >= -1e-6
        assert 0.0 <= entry["policy/clipfrac"] <= 1.0
    # Episodes of 6 steps with 4-step rollouts: the first ends during iteration 2.
    episode_logs = [entry for entry in logs if "market/episode_return" in entry]
    assert episode_logs and episode_logs[0]["step"] == 2
    assert all(math.isfinite(entry["market/episode_return"]) for entry in episode_logs)
    # The learning rates anneal linearly to 0 over the 3 iterations.
    assert [entry["lr/heads"] for entry in logs] == pytest.approx([5e-4 * 2 / 3, 5e-4 / 3, 0.0])
    assert [entry["lr/llm"] for entry in logs] == pytest.approx([5e-5 * 2 / 3, 5e-5 / 3, 0.0])


# --- (b) determinism ------------------------------------------------------------------------------------------------
def test_same_seed_gives_identical_adapters(trained, tiny_tokenizer, dataset, tmp_path):
    first, initial = trained
    second = make_trainer(tiny_tokenizer, dataset, tmp_path)
    second.train()
    a, b = first.model.adapter_state_dict(), second.model.adapter_state_dict()
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert not torch.equal(a["policy_head.weight"], initial["policy_head.weight"])


# --- (c) checkpoint and resume ----------------------------------------------------------------------------------------
class StopAtStep(TrainerCallback):
    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            control.should_training_stop = True
        return control


def test_a_checkpoint_of_other_settings_is_refused_in_one_line(tiny_tokenizer, dataset, tmp_path):
    settings = dict(total_timesteps=2 * 2 * 4, save_strategy="steps", save_steps=1)
    make_trainer(tiny_tokenizer, dataset, tmp_path, **settings).train()
    checkpoint = tmp_path / "checkpoint-2"
    assert json.loads((checkpoint / "run_settings.json").read_text())["policy"]["adapter"] == "top_layers"
    # Another entropy bonus: named, with both values.
    other = make_trainer(
        tiny_tokenizer, dataset, tmp_path, **{**settings, "total_timesteps": 3 * 2 * 4, "ent_coef": 0.5}
    )
    with pytest.raises(ValueError, match=r"checkpoint-2 was written with other settings \(ent_coef: 0\.05 -> 0\.5\)"):
        other.train(resume_from_checkpoint=True)
    # A LoRA policy on a checkpoint of full top layers: named too.
    backbone = build_tiny_llama(len(tiny_tokenizer))
    lora_config = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj", "v_proj"])
    lora = FlagPolicy.from_backbone(backbone, tiny_tokenizer, num_trainable_layers=2, peft_config=lora_config)
    trainer = FlagPPOTrainer(
        lora, tiny_config(tmp_path, **{**settings, "total_timesteps": 3 * 2 * 4}), dataset, tiny_tokenizer
    )
    with pytest.raises(ValueError, match=r"policy: .*'adapter': 'top_layers'.* -> .*'adapter': 'lora'"):
        trainer.train(resume_from_checkpoint=True)
    # A checkpoint from before run_settings.json: the mismatch still ends in one line, not inside load_state_dict.
    (checkpoint / "run_settings.json").unlink()
    trainer = FlagPPOTrainer(
        lora, tiny_config(tmp_path, **{**settings, "total_timesteps": 3 * 2 * 4}), dataset, tiny_tokenizer
    )
    with pytest.raises(ValueError, match="does not fit this run's policy .* delete it or choose another output_dir"):
        trainer.train(resume_from_checkpoint=True)
    # The same settings with a larger budget resume (a finished run continues).
    more = make_trainer(tiny_tokenizer, dataset, tmp_path / "more", **settings)
    more.train()
    longer = make_trainer(tiny_tokenizer, dataset, tmp_path / "more", **{**settings, "total_timesteps": 3 * 2 * 4})
    longer.train(resume_from_checkpoint=True)
    assert longer.state.global_step == 3


def test_resumed_run_matches_uninterrupted_run(tiny_tokenizer, dataset, tmp_path):
    settings = dict(total_timesteps=4 * 2 * 4, save_strategy="steps", save_steps=2)

    uninterrupted = make_trainer(tiny_tokenizer, dataset, tmp_path / "a", **settings)
    uninterrupted.train()
    assert uninterrupted.state.global_step == 4
    assert (tmp_path / "a" / "checkpoint-2").is_dir() and (tmp_path / "a" / "checkpoint-4").is_dir()

    interrupted = make_trainer(tiny_tokenizer, dataset, tmp_path / "b", callbacks=[StopAtStep(2)], **settings)
    interrupted.train()
    assert interrupted.state.global_step == 2
    checkpoints = sorted(p.name for p in (tmp_path / "b").glob("checkpoint-*"))
    assert checkpoints == ["checkpoint-2"]
    assert (tmp_path / "b" / "checkpoint-2" / "rollout_state_rank0.pt").exists()

    resumed = make_trainer(tiny_tokenizer, dataset, tmp_path / "b", **settings)
    resumed.train(resume_from_checkpoint=True)
    assert resumed.state.global_step == 4
    # Only iterations 3 and 4 ran after the resume.
    steps = [entry["step"] for entry in resumed.state.log_history if "policy/entropy" in entry]
    assert steps == [1, 2, 3, 4]

    assert_same_adapter(uninterrupted.model.adapter_state_dict(), resumed.model.adapter_state_dict())
    # And the interrupted run alone is not already there (the comparison above is not vacuous).
    assert not torch.allclose(
        interrupted.model.adapter_state_dict()["policy_head.weight"],
        uninterrupted.model.adapter_state_dict()["policy_head.weight"],
        atol=1e-6,
    )


# --- (d) model card ---------------------------------------------------------------------------------------------------
def test_save_model_and_model_card(trained):
    trainer, _ = trained
    trainer.save_model()
    trainer.create_model_card()
    output_dir = Path(trainer.args.output_dir)
    assert (output_dir / "adapter_config.json").exists() and (output_dir / "adapter_model.safetensors").exists()
    readme = (output_dir / "README.md").read_text()
    assert f"base_model: {TINY_BASE}" in readme
    assert "FlagPolicy.from_pretrained" in readme
    assert "2502.11433" in readme


def test_model_card_is_trls_card_followed_by_the_adapter_sections(trained):
    trainer, _ = trained
    trainer.evaluate()
    trainer.create_model_card(model_name="flag-tiny")
    readme = Path(trainer.args.output_dir) / "README.md"
    card = ModelCard.load(readme)
    # One metadata header, TRL's: the adapter card's own header is parsed away, not pasted into the text.
    assert card.data.base_model == TINY_BASE and {"trl", "flag-trader"} <= set(card.data.tags)
    assert readme.read_text().count("base_model:") == 1 and "---\nbase_model" not in card.text
    assert (
        card.text.index("## Training procedure") < card.text.index("## How to load") < card.text.index("## Evaluation")
    )
    assert "Metrics convention: paper" in card.text and "| flag_trader |" in card.text


# --- (d') time limits, the KL log, fractional eval_steps ---------------------------------------------------------------
def test_time_limit_truncation_bootstraps_the_value(tiny_tokenizer, dataset, tmp_path):
    # Episodes of 6 steps, 4-step rollouts: both environments hit the time limit at step 1 of the second rollout.
    trainer = make_trainer(tiny_tokenizer, dataset, tmp_path, gamma=0.5, reward="log_return")
    trainer._state_values = lambda states: torch.full((len(states),), 1000.0)
    trainer._start_envs()
    first, second = trainer._rollout(), trainer._rollout()
    assert first["rewards"].abs().max() < 1.0
    rewards = second["rewards"].reshape(4, 2)
    assert torch.all((rewards[1] - 500.0).abs() < 1.0)  # r_T + gamma * V(s_T)
    assert rewards[[0, 2, 3]].abs().max() < 1.0


def test_no_kl_is_logged_without_a_reference(tiny_tokenizer, dataset, tmp_path):
    trainer = make_trainer(tiny_tokenizer, dataset, tmp_path, kl_coef=0.0, total_timesteps=8)
    trainer.train()
    logs = [entry for entry in trainer.state.log_history if "policy/entropy" in entry]
    assert logs and not any("objective/kl" in entry for entry in logs)


@pytest.mark.parametrize("fast_bf16", [True, False])
def test_config_resolves_only_unset_hardware_settings(tmp_path, monkeypatch, fast_bf16):
    """use_cpu and bf16 left unset resolve to the machine (CPU only here); values the user set are kept."""
    import flagtrl.trainer.ppo_flag_config as config_module

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    monkeypatch.setattr(config_module, "cpu_has_fast_bf16", lambda: fast_bf16)
    auto = FlagPPOConfig(output_dir=str(tmp_path), use_cpu=None, bf16=None, report_to="none")
    assert auto.use_cpu is True and auto.bf16 is fast_bf16
    explicit = FlagPPOConfig(output_dir=str(tmp_path), use_cpu=False, report_to="none")
    assert explicit.use_cpu is False and explicit.bf16 is False  # transformers allows no bf16 without use_cpu here
    assert FlagPPOConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False, report_to="none").bf16 is False
    assert FlagPPOConfig(output_dir=str(tmp_path), use_cpu=True, bf16=True, report_to="none").bf16 is True


def test_fractional_eval_steps_is_a_fraction_of_the_run(tiny_tokenizer, dataset, tmp_path):
    args = tiny_config(tmp_path, total_timesteps=4 * 2 * 4, eval_strategy="steps", eval_steps=0.5)
    assert args.num_iterations == 4 and args.eval_interval == 2
    assert tiny_config(tmp_path, eval_strategy="steps", eval_steps=3).eval_interval == 3
    assert tiny_config(tmp_path).eval_interval is None
    trainer = make_trainer(
        tiny_tokenizer,
        dataset,
        tmp_path,
        total_timesteps=4 * 2 * 4,
        eval_strategy="steps",
        eval_steps=0.5,
        eval_max_days=3,
    )
    trainer.train()
    evaluated = sorted({entry["step"] for entry in trainer.state.log_history for k in entry if k.startswith("eval/")})
    assert evaluated == [2, 4]
    # The recipe's final backtest right after the last iteration's evaluation: the same metrics, not a second backtest.
    last = {k: v for k, v in trainer.state.log_history[-1].items() if k.startswith("eval/")}
    entries = len(trainer.state.log_history)
    again = trainer.evaluate()
    assert {k: v for k, v in again.items() if k in last} == last and len(trainer.state.log_history) == entries
    assert len(trainer.evaluate(max_days=2)) and len(trainer.state.log_history) == entries + 1


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"reward": "sharpe"}, "Unknown reward"),
        ({"reward_scale": 0.0}, "reward_scale"),
        ({"sharpe_min_periods": 1}, "sharpe_min_periods"),
    ],
)
def test_bad_reward_settings_fail_at_config_time(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        tiny_config(tmp_path, **overrides)


# --- (e) evaluation ---------------------------------------------------------------------------------------------------
def test_evaluate_reports_flag_trader_and_buy_and_hold(trained, dataset):
    trainer, _ = trained
    metrics = trainer.evaluate()
    for asset in trainer.train_assets:
        for agent in ("flag_trader", "buy_and_hold"):
            for convention in ("paper", "standard"):
                for key in ("cumulative_return", "sharpe_ratio", "max_drawdown"):
                    name = f"eval/{asset}/{agent}/{convention}_{key}"
                    assert name in metrics, name
        # Buy-and-hold over the first 5 test days in the paper convention: sum of ln(p_{i+1} / p_i) = ln(p_4 / p_0).
        series = market_series(dataset, asset)
        first, _ = series.window(*split_windows(dataset, "test", [asset])[asset])
        expected = math.log(series.close[first + 4] / series.close[first])
        assert metrics[f"eval/{asset}/buy_and_hold/paper_cumulative_return"] == pytest.approx(expected, abs=1e-9)
    assert any(k.startswith("eval/") for entry in trainer.state.log_history for k in entry)


def test_untrained_agent_is_the_policy_before_training(tiny_tokenizer, dataset, tmp_path):
    trainer = make_trainer(tiny_tokenizer, dataset, tmp_path, eval_max_days=6)
    before = trainer.evaluate()
    asset = trainer.train_assets[0]
    key = f"eval/{asset}/{{}}/paper_cumulative_return"
    untrained_trajectory = trainer.last_eval_results[("untrained", asset)].trajectory
    assert untrained_trajectory == trainer.last_eval_results[("flag_trader", asset)].trajectory
    assert before[key.format("untrained")] == before[key.format("flag_trader")]
    trainer.train()
    after = trainer.evaluate()
    assert after[key.format("untrained")] == before[key.format("untrained")]  # the reference never moves
    probs = [row["probabilities"] for row in trainer.last_eval_results[("untrained", asset)].trajectory[:-1]]
    assert probs == [row["probabilities"] for row in untrained_trajectory[:-1]]
    moved = [row["probabilities"] for row in trainer.last_eval_results[("flag_trader", asset)].trajectory[:-1]]
    assert moved != probs


def test_learning_curve_png(trained, tmp_path):
    from flagtrl.trainer.learning_curve import learning_curve_points, plot_learning_curve

    history = [
        {"step": 2, "eval/AAA/flag_trader/paper_sharpe_ratio": 0.5, "eval/AAA/untrained/paper_sharpe_ratio": 0.1},
        {"step": 4, "eval/AAA/flag_trader/paper_sharpe_ratio": 1.5, "policy/entropy": 1.0},
    ]
    points = learning_curve_points(history, env_steps_per_iteration=8)
    assert points == {("AAA", "flag_trader"): [(16, 0.5), (32, 1.5)], ("AAA", "untrained"): [(16, 0.1)]}
    path = plot_learning_curve(history, 8, tmp_path / "curve.png")
    assert path.exists() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plot_learning_curve([{"step": 1, "policy/loss": 0.0}], 8, tmp_path / "none.png") is None


# --- (f) two-process DDP on CPU ---------------------------------------------------------------------------------------
DDP_SCRIPT = """
import sys
sys.path.insert(0, {tests_dir!r})
import torch
from conftest import build_tiny_llama, build_tiny_tokenizer
from flagtrl.data.synthetic import make_synthetic_dataset
from flagtrl.models import FlagPolicy
from flagtrl.trainer.ppo_flag_config import FlagPPOConfig
from flagtrl.trainer.ppo_flag_trainer import FlagPPOTrainer

tokenizer = build_tiny_tokenizer()
policy = FlagPolicy.from_backbone(build_tiny_llama(len(tokenizer)), tokenizer, num_trainable_layers=2)
initial = {{k: v.clone() for k, v in policy.adapter_state_dict().items()}}
args = FlagPPOConfig(
    output_dir={output_dir!r}, num_envs=2, num_steps=4, total_timesteps=2 * 2 * 2 * 4, max_episode_steps=6,
    minibatch_size=4, gradient_accumulation_steps=2, max_prompt_tokens=1024, use_cpu=True, bf16=False,
    disable_tqdm=True, report_to="none", save_strategy="no", eval_strategy="no", seed=0,
)
trainer = FlagPPOTrainer(policy, args, make_synthetic_dataset(seed=0), processing_class=tokenizer)
assert trainer.accelerator.num_processes == 2, trainer.accelerator.num_processes
assert args.num_iterations == 2
trainer.train()
rank = trainer.accelerator.process_index
torch.save(
    {{
        "initial": initial,
        "final": policy.adapter_state_dict(),
        "steps": trainer.state.global_step,
        "episode_starts": [env.start for env in trainer.envs],
    }},
    {output_dir!r} + f"/rank{{rank}}.pt",
)
"""


@pytest.mark.distributed
def test_two_process_ddp_keeps_ranks_in_sync(tmp_path):
    script = tmp_path / "ddp_train.py"
    script.write_text(DDP_SCRIPT.format(tests_dir=str(TESTS_DIR), output_dir=str(tmp_path)))
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    env["HF_HUB_DISABLE_TELEMETRY"] = "1"
    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        str(script),
    ]
    result = subprocess.run(command, env=env, timeout=300, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]

    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert rank0["steps"] == rank1["steps"] == 2
    # The ranks rolled out different episodes (environments are seeded by rank)...
    assert rank0["episode_starts"] != rank1["episode_starts"]
    # ...but all-reduced gradients keep their weights equal.
    assert_same_adapter(rank0["final"], rank1["final"])
    for key in ("policy_head.weight", "value_head.weight", "norm.weight", "layers.3.mlp.up_proj.weight"):
        assert not torch.equal(rank0["final"][key], rank0["initial"][key]), key


# --- slow: the real SmolLM2-135M --------------------------------------------------------------------------------------
@pytest.fixture
def all_torch_threads(one_torch_thread):
    torch.set_num_threads(one_torch_thread)
    yield
    torch.set_num_threads(1)


@pytest.mark.slow
def test_smollm2_two_ppo_iterations(dataset, tmp_path, all_torch_threads):
    from flagtrl.models.loading import SMOLLM2_ID, load_backbone, load_tokenizer

    start = time.time()
    tokenizer = load_tokenizer(SMOLLM2_ID)
    backbone = load_backbone(SMOLLM2_ID)
    policy = FlagPolicy.from_backbone(backbone, tokenizer, num_trainable_layers=2)
    assert policy.config_flag.action_token_ids == [30845, 2326, 41838]  # sell, hold, buy in SmolLM2 tokens
    initial = {k: v.clone() for k, v in policy.adapter_state_dict().items()}  # not views of the live weights
    frozen_before = policy.frozen_layers[0].self_attn.q_proj.weight.detach().clone()
    # bf16=False: load_backbone picks the dtype this CPU runs fastest (emulated bf16 autocast is far slower).
    args = tiny_config(tmp_path, total_timesteps=2 * 2 * 4, max_prompt_tokens=512, max_episode_steps=8, bf16=False)
    trainer = FlagPPOTrainer(policy, args, dataset, processing_class=tokenizer)
    trainer.train()
    assert trainer.state.global_step == 2

    final = policy.adapter_state_dict()
    for key in ("policy_head.weight", "value_head.weight", "norm.weight", "layers.29.self_attn.q_proj.weight"):
        assert not torch.equal(final[key], initial[key]), key
    assert all(torch.isfinite(t).all() for t in final.values())
    assert torch.equal(policy.frozen_layers[0].self_attn.q_proj.weight, frozen_before)
    for entry in trainer.state.log_history:
        for key in ("policy/loss", "value/loss", "objective/kl", "policy/entropy"):
            if key in entry:
                assert math.isfinite(entry[key]), key
    print(f"SmolLM2 2 PPO iterations: {time.time() - start:.1f} s")


def test_episode_sharpe_is_the_running_sharpe_of_the_episode_pnl():
    """`market/episode_sharpe` is SR_T of the episode's pnl (`flagtrl.rewards.running_sharpe`): mean / std (ddof=1),
    0 for a flat account or a single step."""
    trainer = SimpleNamespace(episode_stats=defaultdict(list))
    for pnl in ([1.0, 2.0, 3.0], [0.0, 0.0, 0.0], [5.0]):
        env = SimpleNamespace(pnl=pnl, account_value=110.0, initial_cash=100.0, past_actions=["buy", "hold", "sell"])
        FlagPPOTrainer._record_episode(trainer, env, {})
    assert trainer.episode_stats["market/episode_sharpe"] == [pytest.approx(2.0), 0.0, 0.0]
    assert trainer.episode_stats["market/episode_return"] == [pytest.approx(0.1)] * 3
    assert trainer.episode_stats["market/episode_trades"] == [2.0] * 3


def test_the_trainer_reads_the_models_settings_and_never_writes_them(tiny_tokenizer, tmp_path):
    dataset = make_synthetic_dataset(seed=0)
    args = tiny_config(tmp_path, max_news_items=2)
    backbone = build_tiny_llama(len(tiny_tokenizer), seed=0)
    policy = FlagPolicy.from_backbone(
        backbone, tiny_tokenizer, num_trainable_layers=2, prompt_config=vars(args.prompt_config())
    )
    trainer = FlagPPOTrainer(policy, args, dataset, processing_class=tiny_tokenizer)
    assert trainer.prompt_config == args.prompt_config()
    assert policy.config_flag.prompt_config == vars(args.prompt_config())

    unset = tiny_policy(tiny_tokenizer)  # built without prompt settings: the config's are used, not written
    assert FlagPPOTrainer(unset, args, dataset, processing_class=tiny_tokenizer).prompt_config == args.prompt_config()
    assert unset.config_flag.prompt_config == {}

    with pytest.raises(ValueError, match="max_news_items=2.*max_news_items=5|max_news_items=5.*max_news_items=2"):
        FlagPPOTrainer(policy, tiny_config(tmp_path, max_news_items=5), dataset, processing_class=tiny_tokenizer)
    with pytest.raises(ValueError, match="last_token_top_layer=True.*last_token_top_layer=False"):
        FlagPPOTrainer(
            policy, tiny_config(tmp_path, last_token_top_layer=False, max_news_items=2), dataset, tiny_tokenizer
        )


def test_a_policy_built_without_prompt_settings_saves_the_trainers(tiny_tokenizer, tmp_path):
    trainer = make_trainer(tiny_tokenizer, make_synthetic_dataset(seed=0), tmp_path, max_news_items=2)
    trainer.save_model(str(tmp_path / "adapter"))
    saved = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert saved["flagtrl"]["prompt_config"] == vars(trainer.prompt_config)
    assert trainer.model.config_flag.prompt_config == {}


def test_load_policy_builds_the_policy_the_trainer_accepts(tiny_tokenizer, tmp_path):
    """The recipe and the learning benchmark load the model through `load_policy`: the policy carries the config's
    settings, so the trainer takes it as it is."""
    folder = tmp_path / "tiny-llama"
    build_tiny_llama(len(tiny_tokenizer), seed=0).save_pretrained(folder)
    tiny_tokenizer.save_pretrained(folder)
    args = tiny_config(tmp_path / "run", max_news_items=2, num_trainable_layers=1, policy_head_init="random")
    policy, tokenizer = load_policy(ModelConfig(model_name_or_path=str(folder), dtype="float32"), args)
    assert tokenizer.pad_token is not None and policy.config_flag.base_model_name_or_path == str(folder)
    assert policy.config_flag.num_trainable_layers == 1 and policy.config_flag.policy_head_init == "random"
    assert policy.config_flag.prompt_config == vars(args.prompt_config())
    assert policy.last_token_top_layer == args.last_token_top_layer
    assert (
        FlagPPOTrainer(policy, args, make_synthetic_dataset(seed=0), tokenizer).prompt_config == args.prompt_config()
    )
    # use_peft: LoRA (TRL's get_peft_config) on the trainable layer; adapters below it are refused.
    lora, _ = load_policy(ModelConfig(model_name_or_path=str(folder), dtype="float32", use_peft=True, lora_r=4), args)
    assert lora.config_flag.peft_type == "LORA" and lora.peft_config.layers_to_transform == [3]
    with pytest.raises(ValueError, match="lora_modules_to_save"):
        load_policy(ModelConfig(model_name_or_path=str(folder), use_peft=True, lora_modules_to_save=["norm"]), args)
