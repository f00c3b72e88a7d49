"""LoRA policies through peft: what trains, the reference with the adapters disabled, the trunk cache's exactness with
LoRA on the top layers, the refused combinations, the peft-format adapter round trip (`PeftModel.from_pretrained`,
`FlagPolicy.from_pretrained` from a folder and from the offline Hub cache, `push_to_hub`), PPO training with speed-ups
on and off, resuming, the recipe with `use_peft`, and two-process DDP."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace
from unittest.mock import patch

import pytest
import torch
from conftest import build_tiny_llama, tiny_ppo_config
from safetensors.torch import load_file

from flagtrl.agents.flag_agent import FlagAgent
from flagtrl.data.synthetic import make_synthetic_dataset
from flagtrl.models import FlagPolicy
from flagtrl.models.adapter_io import (
    ADAPTER_CONFIG_NAME,
    ADAPTER_WEIGHTS_NAME,
    FLAGTRL_CONFIG_NAME,
    HEADS_WEIGHTS_NAME,
    LORA_KEY_PREFIX,
)
from flagtrl.models.trunk_cache import TrunkCache
from flagtrl.prompt import EncodedPrompt
from flagtrl.trainer.ppo_flag_trainer import FlagPPOTrainer


peft = pytest.importorskip("peft")
from peft import LoraConfig, PeftModel  # noqa: E402
from peft.tuners.tuners_utils import BaseTunerLayer  # noqa: E402


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def lora_config(**overrides) -> LoraConfig:
    """TRL's `get_peft_config` fields (r, alpha, dropout, target modules), dropout off so that outputs are exact."""
    settings = dict(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj", "v_proj", "up_proj"])
    settings.update(overrides)
    return LoraConfig(**settings)


def lora_policy(tokenizer, num_trainable_layers: int = 2, seed: int = 0, **overrides) -> FlagPolicy:
    return FlagPolicy.from_backbone(
        build_tiny_llama(len(tokenizer), seed=seed),
        tokenizer,
        num_trainable_layers=num_trainable_layers,
        base_model_name_or_path="tiny",
        peft_config=lora_config(**overrides),
    )


def perturb_lora(policy: FlagPolicy, seed: int = 1) -> None:
    """Move the LoRA weights and both heads away from their initial values, as training would."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in policy.parameters():
            if parameter.requires_grad:
                parameter.add_(0.3 * torch.randn(parameter.shape, generator=generator))


def random_prompts(vocab_size: int, lengths: list[int], seed: int = 0) -> list[list[int]]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randint(1, vocab_size, (n,), generator=generator).tolist() for n in lengths]


def probabilities(policy: FlagPolicy, prompts) -> torch.Tensor:
    return policy.action_probabilities(prompts, [[1, 1, 1]] * len(prompts))


def lora_layer_indices(policy: FlagPolicy) -> set[int]:
    return {
        int(name.split(".")[2])
        for name, module in policy.backbone.named_modules()
        if isinstance(module, BaseTunerLayer)
    }


# --- what trains ---------------------------------------------------------------------------------------------------
def test_lora_on_the_top_layers_trains_only_adapters_and_heads(tiny_tokenizer):
    policy = lora_policy(tiny_tokenizer)
    assert policy.config_flag.peft_type == "LORA"
    assert lora_layer_indices(policy) == {2, 3}  # the frozen trunk (layers 0, 1) is adapter-free
    trainable = {name for name, p in policy.named_parameters() if p.requires_grad}
    heads = {"policy_head.weight", "value_head.weight", "value_head.bias"}
    lora = trainable - heads
    assert heads <= trainable and lora
    assert all(".lora_A." in name or ".lora_B." in name for name in lora)
    assert {int(name.split(".")[3]) for name in lora} == {2, 3}
    # The base weights of the top layers and the final norm stay frozen; the optimizer groups hold what trains.
    assert not policy.backbone.model.layers[3].self_attn.q_proj.base_layer.weight.requires_grad
    assert not policy.backbone.model.norm.weight.requires_grad
    assert {id(p) for p in policy.head_parameters() + policy.llm_parameters()} == {
        id(p) for p in policy.parameters() if p.requires_grad
    }
    assert all(p.dtype == torch.float32 for p in policy.parameters() if p.requires_grad)
    # The reference holds no layer: only the initial policy head (3 x hidden values).
    assert set(policy.reference.keys()) == {"policy_head"}


def test_lora_on_every_layer(tiny_tokenizer):
    policy = lora_policy(tiny_tokenizer, num_trainable_layers=4)
    assert policy.num_frozen_layers == 0
    assert lora_layer_indices(policy) == {0, 1, 2, 3}
    batch = policy.collate(random_prompts(len(tiny_tokenizer), [6, 9]))
    out = policy(batch["input_ids"], batch["attention_mask"])
    (out.log_probs[:, 2].sum() + out.values.sum()).backward()
    assert all(p.grad is not None for p in policy.parameters() if p.requires_grad)
    assert policy.backbone.model.layers[0].self_attn.q_proj.lora_B["default"].weight.grad.abs().sum() > 0


def test_reference_is_the_base_model_with_adapters_disabled(tiny_tokenizer):
    prompts = random_prompts(len(tiny_tokenizer), [7, 12, 5])
    full = FlagPolicy.from_backbone(build_tiny_llama(len(tiny_tokenizer)), tiny_tokenizer, num_trainable_layers=2)
    base = probabilities(full, prompts)
    policy = lora_policy(tiny_tokenizer)
    # LoRA's B starts at zero: the initial policy is the base model's.
    assert torch.allclose(probabilities(policy, prompts), base, atol=1e-6)
    perturb_lora(policy)
    batch = policy.collate(prompts)
    out = policy(batch["input_ids"], batch["attention_mask"], with_reference=True)
    assert torch.allclose(out.ref_log_probs.exp(), base, atol=1e-6)
    assert not torch.allclose(out.log_probs.exp(), base, atol=1e-3)
    # disable_adapter is a context: the adapters are back on afterwards.
    assert torch.equal(probabilities(policy, prompts), out.log_probs.exp())


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_trunk_cache_is_exact_with_lora_on_the_top_layers(tiny_tokenizer, attention):
    policy = lora_policy(tiny_tokenizer)
    policy.backbone.config._attn_implementation = attention
    perturb_lora(policy)
    generator = torch.Generator().manual_seed(0)
    vocab = len(tiny_tokenizer)
    prefixes = {k: torch.randint(5, vocab, (n,), generator=generator).tolist() for k, n in (("a", 23), ("b", 31))}
    prompts = [
        EncodedPrompt(prefixes[k], torch.randint(5, vocab, (n,), generator=generator).tolist(), ("X", k, "paper", "v"))
        for k, n in (("a", 9), ("b", 14), ("a", 5))
    ]
    masks = torch.ones(3, 3, dtype=torch.bool)
    batch = policy.collate(prompts)
    policy.last_token_top_layer = False
    plain = policy(batch["input_ids"], batch["attention_mask"], masks, with_reference=True)
    policy.last_token_top_layer = True
    cache = TrunkCache()
    for _ in ("cold", "warm"):
        hidden, attention_mask = policy.frozen_states(prompts, cache).padded()
        fast = policy(None, attention_mask, masks, with_reference=True, frozen_hidden=hidden)
        for name in ("log_probs", "values", "ref_log_probs"):
            torch.testing.assert_close(getattr(fast, name), getattr(plain, name), atol=1e-5, rtol=1e-4, msg=name)
    assert cache.hits > 0


# --- what is refused --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(layers_to_transform=[0, 3]), r"layers_to_transform \[0\] lie in the frozen trunk"),
        (dict(trainable_token_indices=[1, 2]), "adapter on model.embed_tokens.token_adapter lies below"),
        (dict(modules_to_save=["norm"]), "lora_modules_to_save"),
    ],
)
def test_adapters_below_the_trainable_layers_are_refused(tiny_tokenizer, overrides, message):
    with pytest.raises(ValueError, match=message):
        lora_policy(tiny_tokenizer, **overrides)


def test_config_and_peft_config_must_agree(tiny_tokenizer):
    policy = lora_policy(tiny_tokenizer)
    with pytest.raises(ValueError, match="peft_type='LORA' but peft_config is NoneType"):
        FlagPolicy(build_tiny_llama(len(tiny_tokenizer)), policy.config_flag)


# --- the adapter the ecosystem loads --------------------------------------------------------------------------------
def test_saved_lora_adapter_is_peft_format_and_loads_with_peft(tiny_tokenizer, tmp_path):
    policy = lora_policy(tiny_tokenizer)
    perturb_lora(policy)
    policy.save_pretrained(tmp_path, tokenizer=tiny_tokenizer)

    config = json.loads((tmp_path / ADAPTER_CONFIG_NAME).read_text())
    assert config["peft_type"] == "LORA" and config["base_model_name_or_path"] == "tiny"
    assert config["layers_to_transform"] == [2, 3] and config["r"] == 4
    assert json.loads((tmp_path / FLAGTRL_CONFIG_NAME).read_text())["flagtrl"]["peft_type"] == "LORA"
    lora = load_file(str(tmp_path / ADAPTER_WEIGHTS_NAME))
    assert lora and all(k.startswith(LORA_KEY_PREFIX) and ".lora_" in k for k in lora)
    heads = load_file(str(tmp_path / HEADS_WEIGHTS_NAME))
    assert set(heads) == {"policy_head.weight", "value_head.weight", "value_head.bias", "reference.policy_head.weight"}

    # peft loads the LoRA part on a fresh base model: the same language model as the policy's backbone.
    input_ids = torch.tensor(random_prompts(len(tiny_tokenizer), [11]))
    with torch.no_grad():
        expected = policy.backbone(input_ids).logits
        fresh = build_tiny_llama(len(tiny_tokenizer))
        untouched = fresh(input_ids).logits
        loaded = PeftModel.from_pretrained(fresh, str(tmp_path))
        logits = loaded(input_ids).logits
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(untouched, expected, atol=1e-3)


def test_lora_adapter_round_trip_gives_identical_probabilities(tiny_tokenizer, tmp_path):
    prompts = random_prompts(len(tiny_tokenizer), [5, 11])
    policy = lora_policy(tiny_tokenizer)
    initial = probabilities(policy, prompts)
    perturb_lora(policy)
    trained = probabilities(policy, prompts)
    policy.save_pretrained(tmp_path / "adapter", tokenizer=tiny_tokenizer)

    loaded = FlagPolicy.from_pretrained(tmp_path / "adapter", backbone=build_tiny_llama(len(tiny_tokenizer)))
    assert loaded.peft_model is not None and loaded.config_flag == policy.config_flag
    assert torch.equal(probabilities(loaded, prompts), trained)
    assert torch.equal(loaded.action_probabilities(prompts, [[1, 1, 1]] * 2, reference=True), initial)
    for key, tensor in policy.adapter_state_dict().items():
        assert torch.equal(loaded.adapter_state_dict()[key], tensor), key
    # Loaded LoRA weights train again.
    assert any(".lora_B." in name for name, p in loaded.named_parameters() if p.requires_grad)
    # The agent loads it the same way.
    agent = FlagAgent.from_pretrained(str(tmp_path / "adapter"), backbone=build_tiny_llama(len(tiny_tokenizer)))
    assert torch.equal(probabilities(agent.policy, prompts), trained)


def test_a_plain_peft_adapter_is_refused_with_a_pointer_to_peft(tiny_tokenizer, tmp_path):
    policy = lora_policy(tiny_tokenizer)
    policy.peft_model.save_pretrained(str(tmp_path))
    with pytest.raises(ValueError, match="PeftModel.from_pretrained"):
        FlagPolicy.from_pretrained(tmp_path, backbone=build_tiny_llama(len(tiny_tokenizer)))


def test_lora_adapter_from_the_offline_hub_cache(tiny_tokenizer, tmp_path, monkeypatch):
    import huggingface_hub.constants

    policy = lora_policy(tiny_tokenizer)
    perturb_lora(policy)
    prompts = random_prompts(len(tiny_tokenizer), [6, 8])
    trained = probabilities(policy, prompts)
    cache = tmp_path / "hub"
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo_folder = cache / "models--user--flag-lora"
    policy.save_pretrained(repo_folder / "snapshots" / commit)
    (repo_folder / "refs").mkdir(parents=True)
    (repo_folder / "refs" / "main").write_text(commit)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))

    loaded = FlagPolicy.from_pretrained("user/flag-lora", backbone=build_tiny_llama(len(tiny_tokenizer)))
    assert torch.equal(probabilities(loaded, prompts), trained)


def test_push_to_hub_uploads_the_peft_adapter_heads_and_card(tiny_tokenizer):
    uploaded: dict = {}

    def fake_upload_folder(self, *, repo_id, folder_path, commit_message, **kwargs):
        folder = Path(folder_path)
        uploaded["files"] = sorted(p.name for p in folder.iterdir())
        uploaded["readme"] = (folder / "README.md").read_text()
        uploaded["config"] = json.loads((folder / ADAPTER_CONFIG_NAME).read_text())
        return SimpleNamespace(commit_url=f"https://huggingface.co/{repo_id}/commit/abc")

    from huggingface_hub import HfApi

    policy = lora_policy(tiny_tokenizer)
    with (
        patch.object(HfApi, "create_repo", return_value=SimpleNamespace(repo_id="user/flag-lora")),
        patch.object(HfApi, "upload_folder", autospec=True, side_effect=fake_upload_folder),
    ):
        policy.push_to_hub("user/flag-lora", tokenizer=tiny_tokenizer)
    expected = {ADAPTER_CONFIG_NAME, ADAPTER_WEIGHTS_NAME, FLAGTRL_CONFIG_NAME, HEADS_WEIGHTS_NAME, "README.md"}
    assert expected <= set(uploaded["files"])
    assert uploaded["config"]["peft_type"] == "LORA"
    readme = uploaded["readme"]
    assert "library_name: peft" in readme and "base_model: tiny" in readme
    assert 'PeftModel.from_pretrained(base, "user/flag-lora")' in readme
    assert 'FlagPolicy.from_pretrained("user/flag-lora")' in readme


# --- training -------------------------------------------------------------------------------------------------------
SPEEDUPS_OFF = dict(use_trunk_cache=False, reuse_rollout_hidden_states=False, last_token_top_layer=False)


def train_lora(tokenizer, output_dir: Path, num_trainable_layers: int = 2, **overrides) -> FlagPPOTrainer:
    settings = dict(num_envs=3, total_timesteps=3 * 3 * 4, max_episode_steps=5, minibatch_size=6)
    settings.update(overrides)
    args = tiny_ppo_config(output_dir, llm_learning_rate=1e-3, **settings)
    policy = lora_policy(tokenizer, num_trainable_layers=num_trainable_layers)
    policy.last_token_top_layer = args.last_token_top_layer
    trainer = FlagPPOTrainer(policy, args, make_synthetic_dataset(seed=0), processing_class=tokenizer)
    trainer.train()
    return trainer


def test_ppo_trains_lora_and_heads_only_and_speedups_keep_the_losses(tiny_tokenizer, tmp_path):
    initial = lora_policy(tiny_tokenizer).state_dict()
    fast = train_lora(tiny_tokenizer, tmp_path / "fast")
    final = fast.model.state_dict()
    assert fast.trunk_cache.hits > 0
    changed = [k for k in final if not torch.equal(final[k], initial[k])]
    assert any(".lora_B." in k for k in changed) and any(".lora_A." in k for k in changed)
    assert {"policy_head.weight", "value_head.weight", "value_head.bias"} <= set(changed)
    assert all(".lora_" in k or k.split(".")[0] in ("policy_head", "value_head") for k in changed), changed

    plain = train_lora(tiny_tokenizer, tmp_path / "plain", **SPEEDUPS_OFF)
    plain_logs = [e for e in plain.state.log_history if "policy/entropy" in e]
    fast_logs = [e for e in fast.state.log_history if "policy/entropy" in e]
    assert len(plain_logs) == len(fast_logs) == 3
    for plain_entry, fast_entry in zip(plain_logs, fast_logs):
        for key in ("objective/loss", "policy/loss", "value/loss", "objective/kl", "policy/entropy"):
            assert math.isclose(fast_entry[key], plain_entry[key], rel_tol=1e-3, abs_tol=1e-5), key
        assert fast_entry["objective/reward_mean"] == plain_entry["objective/reward_mean"]
    for key, tensor in plain.model.adapter_state_dict().items():
        torch.testing.assert_close(fast.model.adapter_state_dict()[key], tensor, atol=1e-5, rtol=1e-4, msg=key)


def test_lora_checkpoint_resumes_to_the_uninterrupted_run(tiny_tokenizer, tmp_path):
    from transformers import TrainerCallback

    class StopAtStep(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            control.should_training_stop = state.global_step == 2
            return control

    settings = dict(total_timesteps=4 * 3 * 4, save_strategy="steps", save_steps=2)
    uninterrupted = train_lora(tiny_tokenizer, tmp_path / "a", **settings)
    args = tiny_ppo_config(
        tmp_path / "b", llm_learning_rate=1e-3, num_envs=3, max_episode_steps=5, minibatch_size=6, **settings
    )
    dataset = make_synthetic_dataset(seed=0)
    interrupted = FlagPPOTrainer(lora_policy(tiny_tokenizer), args, dataset, tiny_tokenizer, callbacks=[StopAtStep()])
    interrupted.train()
    assert (tmp_path / "b" / "checkpoint-2" / HEADS_WEIGHTS_NAME).exists()
    resumed = FlagPPOTrainer(lora_policy(tiny_tokenizer), args, dataset, tiny_tokenizer)
    resumed.train(resume_from_checkpoint=True)
    assert resumed.state.global_step == 4
    a, b = uninterrupted.model.adapter_state_dict(), resumed.model.adapter_state_dict()
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key], b[key], rtol=0, atol=1e-6), key


def test_recipe_trains_a_lora_policy_with_use_peft(tiny_tokenizer, tmp_path, monkeypatch):
    import importlib.util
    import sys

    from trl import ModelConfig

    spec = importlib.util.spec_from_file_location("ppo_flag_recipe", Path(__file__).parents[1] / "recipes/ppo_flag.py")
    recipe = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = recipe  # dataclasses look their module up there
    spec.loader.exec_module(recipe)
    base = tmp_path / "base"
    build_tiny_llama(len(tiny_tokenizer)).save_pretrained(base)
    tiny_tokenizer.save_pretrained(base)
    monkeypatch.setattr(recipe, "load_market_dataset", lambda name: make_synthetic_dataset(seed=0))
    model_args = ModelConfig(
        model_name_or_path=str(base), dtype="float32", use_peft=True, lora_r=4, lora_alpha=8, lora_dropout=0.0
    )
    output_dir = tmp_path / "out"
    recipe.main(
        recipe.ScriptArguments(dataset_name="synthetic", backtest_max_days=3),
        tiny_ppo_config(output_dir, total_timesteps=8),
        model_args,
    )
    assert json.loads((output_dir / ADAPTER_CONFIG_NAME).read_text())["peft_type"] == "LORA"
    assert (output_dir / HEADS_WEIGHTS_NAME).exists() and (output_dir / "backtest.json").exists()
    run = json.loads((output_dir / "backtest.json").read_text())["run"]  # what produced the numbers
    assert run["seed"] == 0 and run["dtype"] == "float32" and run["bf16_autocast"] is False
    assert run["resumed_from"] is None and run["torch_threads"] >= 1 and 0.1 < run["peak_rss_gib"] < 64
    assert run["versions"]["torch"] in torch.__version__ and run["processes"] == 1
    assert run["hardware"]["cpu_count"] >= 1 and "fast_bf16" in run["hardware"]
    assert "PeftModel.from_pretrained" in (output_dir / "README.md").read_text()
    loaded = FlagPolicy.from_pretrained(output_dir, dtype="float32")
    assert loaded.peft_model is not None and lora_layer_indices(loaded) == {2, 3}


@pytest.mark.distributed
def test_two_process_ddp_keeps_lora_ranks_in_sync(tmp_path):
    """DDP wraps the policy, not peft's wrapper (which is not a registered submodule): the LoRA weights and the heads
    are all-reduced like any parameter and stay equal on both ranks."""
    import os
    import subprocess
    import sys

    from test_ppo_trainer import DDP_SCRIPT, TESTS_DIR

    lora = "peft_config=LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules='all-linear')"
    script_text = DDP_SCRIPT.format(tests_dir=str(TESTS_DIR), output_dir=str(tmp_path))
    script_text = script_text.replace("num_trainable_layers=2)", f"num_trainable_layers=2, {lora})")
    assert lora in script_text
    script = tmp_path / "ddp_lora.py"
    script.write_text("from peft import LoraConfig\n" + script_text)
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    launch = ["-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1"]
    command = [sys.executable, *launch, "--mixed_precision", "no", "--dynamo_backend", "no", str(script)]
    result = subprocess.run(command, env=env, timeout=300, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]

    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert rank0["steps"] == rank1["steps"] == 2 and rank0["episode_starts"] != rank1["episode_starts"]
    assert rank0["final"].keys() == rank1["final"].keys()
    for key, tensor in rank0["final"].items():
        assert torch.allclose(tensor, rank1["final"][key], rtol=0, atol=1e-6), key
    lora_b = next(k for k in rank0["final"] if k.startswith(LORA_KEY_PREFIX) and ".lora_B." in k)
    for key in ("policy_head.weight", "value_head.weight", lora_b):
        assert not torch.equal(rank0["final"][key], rank0["initial"][key]), key
