"""FlagPolicy: the initial policy is the LM's own preference, masks, padding, the frozen/trainable split, and the adapter
round trip through a folder, the Hub (mocked) and the offline Hub cache."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from unittest.mock import patch

import numpy as np
import pytest
import torch
from conftest import build_tiny_llama
from safetensors.torch import load_file

from flagtrl.agents.flag_agent import FlagAgent
from flagtrl.data.schema import market_series
from flagtrl.data.synthetic import make_synthetic_dataset
from flagtrl.envs import TradingEnv
from flagtrl.models import FlagPolicy
from flagtrl.models.adapter_io import ADAPTER_CONFIG_NAME, ADAPTER_WEIGHTS_NAME
from flagtrl.models.loading import load_backbone
from flagtrl.prompt import PROMPT_VERSION, PromptBuilder, PromptConfig


ALL_VALID = [[1, 1, 1]]


def random_prompts(vocab_size: int, lengths: list[int], seed: int = 0) -> list[list[int]]:
    generator = torch.Generator().manual_seed(seed)
    # Avoid id 0 (the pad token) so that a wrong attention mask would show.
    return [torch.randint(1, vocab_size, (n,), generator=generator).tolist() for n in lengths]


def perturb_adapter(policy: FlagPolicy, seed: int = 1) -> None:
    """Move every adapter tensor away from its initial value, as training would."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in policy.top_modules():
            for parameter in module.parameters():
                parameter.add_(0.2 * torch.randn(parameter.shape, generator=generator))


def probabilities(policy: FlagPolicy, prompts: list[list[int]], masks=None) -> torch.Tensor:
    masks = masks if masks is not None else [[1, 1, 1]] * len(prompts)
    return policy.action_probabilities(prompts, masks)


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Tiny models gain nothing from a second thread, and OpenMP's spin-waiting makes them 10x slower when other
    processes share the cores (measured: the trainer tests took 170 s instead of 13 s on a loaded 2-core machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield threads
    torch.set_num_threads(threads)


@pytest.fixture
def policy(tiny_llama, tiny_tokenizer) -> FlagPolicy:
    return FlagPolicy.from_backbone(tiny_llama, tiny_tokenizer, num_trainable_layers=2, base_model_name_or_path="tiny")


# --- the policy itself ----------------------------------------------------------------------------------------------
def test_initial_policy_is_the_lm_softmax_over_action_tokens(tiny_llama, tiny_tokenizer):
    prompts = random_prompts(len(tiny_tokenizer), [7, 12])
    action_ids = [tiny_tokenizer(w, add_special_tokens=False)["input_ids"][0] for w in ("sell", "hold", "buy")]
    with torch.no_grad():
        lm_logits = [tiny_llama(torch.tensor([p])).logits[0, -1, action_ids] for p in prompts]
    expected = torch.stack([torch.softmax(logits, -1) for logits in lm_logits])

    policy = FlagPolicy.from_backbone(tiny_llama, tiny_tokenizer, num_trainable_layers=2, policy_head_init="lm_head")
    assert policy.config_flag.action_token_ids == action_ids
    assert torch.allclose(probabilities(policy, prompts), expected, atol=1e-6)
    # Not trivially uniform: the comparison above would be vacuous otherwise.
    assert (expected - 1 / 3).abs().max() > 1e-4


def test_masked_action_has_probability_exactly_zero(policy, tiny_tokenizer):
    prompts = random_prompts(len(tiny_tokenizer), [6, 6, 6])
    probs = probabilities(policy, prompts, [[0, 1, 1], [1, 1, 0], [0, 1, 0]])
    assert probs[0, 0].item() == 0.0
    assert probs[1, 2].item() == 0.0
    assert probs[2].tolist() == [0.0, 1.0, 0.0]
    assert torch.allclose(probs.sum(-1), torch.ones(3))


def test_right_padding_does_not_change_a_rows_probabilities(policy, tiny_tokenizer):
    prompts = random_prompts(len(tiny_tokenizer), [5, 13, 9])
    batched = probabilities(policy, prompts)
    single = torch.cat([probabilities(policy, [p]) for p in prompts])
    assert torch.allclose(batched, single, atol=1e-6)
    # The values come from the same last real token.
    batch = policy.collate(prompts)
    values = policy(batch["input_ids"], batch["attention_mask"]).values
    single_values = torch.cat([policy(**policy.collate([p])).values for p in prompts])
    assert torch.allclose(values, single_values, atol=1e-6)


def test_only_top_layers_norm_and_heads_are_trainable(policy):
    trainable = {name for name, p in policy.named_parameters() if p.requires_grad}
    expected = {
        f"backbone.model.layers.{i}.{name}"
        for i in (2, 3)
        for name, _ in policy.backbone.model.layers[i].named_parameters()
    }
    expected |= {"backbone.model.norm.weight", "policy_head.weight", "value_head.weight", "value_head.bias"}
    assert trainable == expected
    assert not policy.backbone.model.embed_tokens.weight.requires_grad
    assert all(not p.requires_grad for layer in policy.frozen_layers for p in layer.parameters())
    assert all(not p.requires_grad for p in policy.reference.parameters())
    assert len(policy.frozen_layers) == 2 and len(policy.trainable_layers) == 2
    # The optimizer groups cover exactly the trainable parameters.
    grouped = {id(p) for p in policy.head_parameters() + policy.llm_parameters()}
    assert grouped == {id(p) for p in policy.parameters() if p.requires_grad}


def test_gradients_reach_only_the_trainable_part(policy, tiny_tokenizer):
    batch = policy.collate(random_prompts(len(tiny_tokenizer), [6, 8]))
    out = policy(batch["input_ids"], batch["attention_mask"])
    (out.log_probs[:, 2].sum() + out.values.sum()).backward()
    assert all(p.grad is not None for p in policy.parameters() if p.requires_grad)
    assert all(p.grad is None for p in policy.parameters() if not p.requires_grad)


@pytest.mark.parametrize("num_trainable_layers", [0, 5, -1])
def test_num_trainable_layers_out_of_range(tiny_llama, tiny_tokenizer, num_trainable_layers):
    with pytest.raises(ValueError, match=r"num_trainable_layers must be in \[1, 4\]"):
        FlagPolicy.from_backbone(tiny_llama, tiny_tokenizer, num_trainable_layers=num_trainable_layers)


def test_multi_token_action_word_gives_a_clear_error(tiny_llama, tiny_tokenizer):
    with pytest.raises(ValueError, match="'liquidate' is 8 tokens"):
        FlagPolicy.from_backbone(tiny_llama, tiny_tokenizer, action_tokens=["liquidate", "hold", "buy"])
    # A random head does not need single-token action words.
    policy = FlagPolicy.from_backbone(
        tiny_llama, tiny_tokenizer, action_tokens=["liquidate", "hold", "buy"], policy_head_init="random"
    )
    assert policy.config_flag.action_token_ids == []


def test_reference_policy_matches_the_initial_policy_and_stays_put(policy, tiny_tokenizer):
    batch = policy.collate(random_prompts(len(tiny_tokenizer), [6, 9]))
    out = policy(batch["input_ids"], batch["attention_mask"], with_reference=True)
    assert torch.allclose(out.log_probs, out.ref_log_probs, atol=1e-6)
    perturb_adapter(policy)
    moved = policy(batch["input_ids"], batch["attention_mask"], with_reference=True)
    assert torch.allclose(moved.ref_log_probs, out.ref_log_probs, atol=1e-6)
    assert not torch.allclose(moved.log_probs, out.log_probs, atol=1e-4)


# --- saving and loading -----------------------------------------------------------------------------------------------
def test_save_pretrained_writes_config_and_weights(policy, tmp_path):
    policy.save_pretrained(tmp_path)
    config = json.loads((tmp_path / ADAPTER_CONFIG_NAME).read_text())
    assert config["base_model_name_or_path"] == "tiny"
    flag = config["flagtrl"]
    assert flag["base_model_name_or_path"] == "tiny"
    assert flag["num_trainable_layers"] == 2
    assert flag["action_tokens"] == ["sell", "hold", "buy"]
    assert flag["action_token_ids"] == policy.config_flag.action_token_ids
    assert flag["prompt_version"] == PROMPT_VERSION
    weights = load_file(str(tmp_path / ADAPTER_WEIGHTS_NAME))
    # The layer split: layers 2 and 3 of 4 are in the adapter, 0 and 1 (frozen) and the embeddings are not.
    layer_indices = {int(k.split(".")[1]) for k in weights if k.startswith("layers.")}
    assert layer_indices == {2, 3}
    assert {"norm.weight", "policy_head.weight", "value_head.weight", "value_head.bias"} <= set(weights)
    assert not any("embed" in k for k in weights)


def test_save_and_load_with_a_fresh_backbone_gives_identical_probabilities(policy, tiny_tokenizer, tmp_path):
    prompts = random_prompts(len(tiny_tokenizer), [5, 11])
    initial = probabilities(policy, prompts)
    perturb_adapter(policy)
    trained = probabilities(policy, prompts)
    assert not torch.allclose(initial, trained, atol=1e-4)
    policy.save_pretrained(tmp_path / "adapter")

    loaded = FlagPolicy.from_pretrained(tmp_path / "adapter", backbone=build_tiny_llama(len(tiny_tokenizer)))
    assert torch.equal(probabilities(loaded, prompts), trained)
    assert loaded.config_flag == policy.config_flag
    for key, tensor in policy.adapter_state_dict().items():
        assert torch.equal(loaded.adapter_state_dict()[key], tensor), key


def test_adapter_without_reference_loads_the_pretrained_reference(tiny_llama, tiny_tokenizer, tmp_path):
    # An inference-only policy saves no reference head. Loading it for training must give the pre-trained policy as
    # the reference (base layers + the LM head's action rows), not the trained head on base layers.
    prompts = random_prompts(len(tiny_tokenizer), [7, 4])
    base = FlagPolicy.from_backbone(tiny_llama, tiny_tokenizer, num_trainable_layers=2, base_model_name_or_path="tiny")
    initial = probabilities(base, prompts)
    inference = FlagPolicy(build_tiny_llama(len(tiny_tokenizer)), base.config_flag, with_reference=False)
    perturb_adapter(inference)
    inference.save_pretrained(tmp_path / "adapter")
    assert not any(k.startswith("reference.") for k in load_file(str(tmp_path / "adapter" / ADAPTER_WEIGHTS_NAME)))

    loaded = FlagPolicy.from_pretrained(tmp_path / "adapter", backbone=build_tiny_llama(len(tiny_tokenizer)))
    batch = loaded.collate(prompts)
    out = loaded(batch["input_ids"], batch["attention_mask"], with_reference=True)
    assert torch.allclose(out.ref_log_probs.exp(), initial, atol=1e-6)
    assert not torch.allclose(out.log_probs.exp(), initial, atol=1e-3)

    random_head = FlagPolicy.from_backbone(
        build_tiny_llama(len(tiny_tokenizer)), tiny_tokenizer, num_trainable_layers=2, policy_head_init="random"
    )
    FlagPolicy(build_tiny_llama(len(tiny_tokenizer)), random_head.config_flag, with_reference=False).save_pretrained(
        tmp_path / "random"
    )
    with pytest.raises(ValueError, match="reference policy cannot be rebuilt"):
        FlagPolicy.from_pretrained(tmp_path / "random", backbone=build_tiny_llama(len(tiny_tokenizer)))
    FlagPolicy.from_pretrained(
        tmp_path / "random", backbone=build_tiny_llama(len(tiny_tokenizer)), with_reference=False
    )


LEGACY_ADAPTER = Path(__file__).parent / "fixtures" / "adapter_main_2d75bbd"


def test_an_adapter_saved_by_main_2d75bbd_still_loads(tiny_tokenizer):
    """`fixtures/adapter_main_2d75bbd`: a full-top-layer adapter (tiny Llama, layers 2 and 3 trained, perturbed) written
    by flagtrl at commit 2d75bbd, before LoRA. It loads as it did: the same settings, every tensor where it belongs."""
    loaded = FlagPolicy.from_pretrained(LEGACY_ADAPTER, backbone=build_tiny_llama(len(tiny_tokenizer)))
    assert loaded.peft_model is None and loaded.config_flag.peft_type is None
    assert loaded.config_flag.base_model_name_or_path == "tiny-org/tiny-llama"
    assert loaded.config_flag.prompt_config == {"max_prompt_tokens": 1024}
    saved = load_file(str(LEGACY_ADAPTER / ADAPTER_WEIGHTS_NAME))
    assert loaded.adapter_state_dict().keys() == saved.keys()
    # An independent placement of the saved tensors: state_dict keys of the decoder layers, norm and heads.
    expected = build_tiny_llama(len(tiny_tokenizer))
    own = FlagPolicy.from_backbone(expected, tiny_tokenizer, num_trainable_layers=2)
    for index in (2, 3):
        prefix = f"layers.{index}."
        own.backbone.model.layers[index].load_state_dict(
            {k[len(prefix) :]: v for k, v in saved.items() if k.startswith(prefix)}
        )
    own.backbone.model.norm.load_state_dict({"weight": saved["norm.weight"]})
    own.policy_head.load_state_dict({"weight": saved["policy_head.weight"]})
    own.value_head.load_state_dict({"weight": saved["value_head.weight"], "bias": saved["value_head.bias"]})
    prompts = random_prompts(len(tiny_tokenizer), [6, 10])
    assert torch.equal(probabilities(loaded, prompts), probabilities(own, prompts))
    assert not torch.allclose(
        probabilities(loaded, prompts), loaded.action_probabilities(prompts, ALL_VALID * 2, reference=True)
    )


def test_load_backbone_by_path_from_adapter_config(tiny_llama, tiny_tokenizer, tmp_path):
    base_dir = tmp_path / "base"
    tiny_llama.save_pretrained(base_dir)  # before FlagPolicy casts and freezes its layers
    policy = FlagPolicy.from_backbone(tiny_llama, tiny_tokenizer, base_model_name_or_path=str(base_dir))
    perturb_adapter(policy)
    prompts = random_prompts(len(tiny_tokenizer), [4, 10])
    trained = probabilities(policy, prompts)
    policy.save_pretrained(tmp_path / "adapter")

    assert load_backbone(str(base_dir), dtype="float32").dtype == torch.float32
    loaded = FlagPolicy.from_pretrained(tmp_path / "adapter", dtype="float32")
    assert loaded.config_flag.base_model_name_or_path == str(base_dir)
    assert torch.allclose(probabilities(loaded, prompts), trained, atol=1e-6)


def test_push_to_hub_uploads_adapter_and_card(policy, tiny_tokenizer):
    uploaded: dict = {}

    def fake_upload_folder(self, *, repo_id, folder_path, commit_message, **kwargs):
        folder = Path(folder_path)
        uploaded["repo_id"] = repo_id
        uploaded["files"] = sorted(p.name for p in folder.iterdir())
        uploaded["readme"] = (folder / "README.md").read_text()
        uploaded["config"] = json.loads((folder / ADAPTER_CONFIG_NAME).read_text())
        return SimpleNamespace(commit_url=f"https://huggingface.co/{repo_id}/commit/abc")

    from huggingface_hub import HfApi

    with (
        patch.object(HfApi, "create_repo", return_value=SimpleNamespace(repo_id="user/flag-tiny")) as create_repo,
        patch.object(HfApi, "upload_folder", autospec=True, side_effect=fake_upload_folder) as upload_folder,
    ):
        url = policy.push_to_hub("user/flag-tiny", tokenizer=tiny_tokenizer)

    create_repo.assert_called_once()
    assert create_repo.call_args.args[0] == "user/flag-tiny"
    upload_folder.assert_called_once()
    assert url == "https://huggingface.co/user/flag-tiny/commit/abc"
    assert uploaded["repo_id"] == "user/flag-tiny"
    assert {ADAPTER_CONFIG_NAME, ADAPTER_WEIGHTS_NAME, "README.md", "tokenizer_config.json"} <= set(uploaded["files"])
    assert uploaded["config"]["base_model_name_or_path"] == "tiny"
    assert "base_model: tiny" in uploaded["readme"]
    assert 'FlagPolicy.from_pretrained("user/flag-tiny")' in uploaded["readme"]


def test_from_pretrained_repo_id_offline_from_the_hub_cache(policy, tiny_tokenizer, tmp_path, monkeypatch):
    import huggingface_hub.constants

    perturb_adapter(policy)
    prompts = random_prompts(len(tiny_tokenizer), [6, 8])
    trained = probabilities(policy, prompts)

    # The layout a download leaves: models--user--repo/{refs/main, snapshots/<commit>/<files>}.
    cache = tmp_path / "hub"
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo_folder = cache / "models--user--flag-tiny"
    policy.save_pretrained(repo_folder / "snapshots" / commit)
    (repo_folder / "refs").mkdir(parents=True)
    (repo_folder / "refs" / "main").write_text(commit)

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HUGGINGFACE_HUB_CACHE", str(cache))
    # huggingface_hub reads its environment at import time; snapshot_download reads these module attributes.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))

    loaded = FlagPolicy.from_pretrained("user/flag-tiny", backbone=build_tiny_llama(len(tiny_tokenizer)))
    assert torch.equal(probabilities(loaded, prompts), trained)

    with pytest.raises(OSError, match="user/not-cached"):
        FlagPolicy.from_pretrained("user/not-cached", backbone=build_tiny_llama(len(tiny_tokenizer)))


# --- the agent ----------------------------------------------------------------------------------------------------------
def test_flag_agent_returns_a_valid_distribution_for_an_environment_state(policy, tiny_tokenizer):
    dataset = make_synthetic_dataset(seed=0)
    env = TradingEnv(market_series(dataset, "SYNA"), episode_length=5, random_start=False)
    env.reset(seed=0)
    agent = FlagAgent(policy.eval(), tiny_tokenizer, PromptConfig(max_prompt_tokens=1024))

    state = env.state()  # all cash: sell is invalid
    probs = agent.action_distribution(state)
    assert probs.shape == (3,)
    assert probs[0] == 0.0
    assert np.all(probs >= 0)
    # The same numbers as the policy on the prompt the agent builds.
    prompt = PromptBuilder(tiny_tokenizer, PromptConfig(max_prompt_tokens=1024)).encode(state)
    direct = policy.action_probabilities([prompt], [state.action_mask])[0].double().numpy()
    assert np.allclose(probs, direct, rtol=0, atol=1e-6)
    # Exactly normalised in float64, so that a sampling backtest (numpy's choice, tolerance 1.5e-8) accepts it.
    assert abs(probs.sum() - 1.0) < 1e-12
    assert np.random.default_rng(0).choice(3, p=probs) in (1, 2)

    env.step(2)  # buy: all shares, no cash → buy becomes invalid, sell valid
    probs = agent.action_distribution(env.state())
    assert probs[2] == 0.0 and probs[0] > 0.0
    assert probs.sum() == pytest.approx(1.0, abs=1e-9)
