"""4/8-bit loading through bitsandbytes: the frozen trunk quantised under full top layers, and QLoRA (every layer's
base weights quantised, LoRA weights and heads in float32). Tiny models with hidden 64 so that the same tests run on
AVX2 and AVX512 CPUs (see the `tiny_llama` fixture)."""

from __future__ import annotations

import pytest
import torch
from conftest import build_tiny_llama, tiny_ppo_config

from flagtrl.data.synthetic import make_synthetic_dataset
from flagtrl.models import FlagPolicy, load_backbone
from flagtrl.trainer.ppo_flag_trainer import FlagPPOTrainer


pytest.importorskip("bitsandbytes")


@pytest.fixture
def tiny_llama(tiny_tokenizer):
    """conftest's tiny Llama with hidden 64 and intermediate 128: bitsandbytes' CPU 4-bit kernels quantise in blocks of
    64 input features and repack their scales as `(out_features, in_features // 64)` on AVX512 CPUs, so an input width
    below 64 (the default tiny model's 32) fails there (`shape '[32, 0]' is invalid`) while passing on AVX2 CPUs."""
    return build_tiny_llama(len(tiny_tokenizer), hidden_size=64)


@pytest.fixture
def saved_tiny_model(tiny_tokenizer, tiny_llama, tmp_path):
    tiny_llama.save_pretrained(tmp_path)
    tiny_tokenizer.save_pretrained(tmp_path)
    return tmp_path


@pytest.mark.parametrize("bits", [8, 4])
def test_quantized_trunk_trains_top_layers(bits, saved_tiny_model, tiny_tokenizer, tiny_llama):
    from transformers import BitsAndBytesConfig

    if bits == 8:
        config = BitsAndBytesConfig(load_in_8bit=True)
    else:
        config = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.float32)
    backbone = load_backbone(
        str(saved_tiny_model), dtype="float32", quantization_config=config, num_trainable_layers=2
    )
    frozen_linear = type(backbone.model.layers[0].self_attn.q_proj).__name__
    assert frozen_linear == ("Linear8bitLt" if bits == 8 else "Linear4bit")
    assert type(backbone.model.layers[-1].self_attn.q_proj) is torch.nn.Linear

    policy = FlagPolicy.from_backbone(backbone, tiny_tokenizer, num_trainable_layers=2)
    input_ids = torch.tensor([[1, 5, 6, 7, 8]])
    out = policy(input_ids, torch.ones_like(input_ids))
    (out.values.sum() + out.log_probs[0, 1]).backward()
    assert policy.policy_head.weight.grad is not None and policy.policy_head.weight.grad.abs().sum() > 0
    assert policy.trainable_layers[0].self_attn.q_proj.weight.grad is not None

    # Quantisation only perturbs the frozen trunk: the action distribution stays close to the full-precision one.
    reference = FlagPolicy.from_backbone(tiny_llama, tiny_tokenizer, num_trainable_layers=2)
    gap = (reference(input_ids, torch.ones_like(input_ids)).log_probs.exp() - out.log_probs.exp()).abs().max()
    assert gap < 0.02


def test_quantized_loading_needs_the_layer_split(saved_tiny_model):
    from transformers import BitsAndBytesConfig

    with pytest.raises(ValueError, match="num_trainable_layers"):
        load_backbone(str(saved_tiny_model), quantization_config=BitsAndBytesConfig(load_in_8bit=True))


# --- QLoRA: every layer's base weights quantised, LoRA weights and heads in float32 ----------------------------------
def quantization_config(bits: int):
    from transformers import BitsAndBytesConfig

    if bits == 8:
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.float32)


@pytest.mark.parametrize("bits", [8, 4])
def test_qlora_trains_adapters_on_a_quantised_model_and_round_trips(bits, saved_tiny_model, tiny_tokenizer, tmp_path):
    from peft import LoraConfig

    quantized = "Linear8bitLt" if bits == 8 else "Linear4bit"
    backbone = load_backbone(
        str(saved_tiny_model),
        dtype="float32",
        quantization_config=quantization_config(bits),
        quantize_trainable_layers=True,
    )
    assert all(type(layer.mlp.up_proj).__name__ == quantized for layer in backbone.model.layers)
    lora = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules="all-linear")
    policy = FlagPolicy.from_backbone(
        backbone,
        tiny_tokenizer,
        num_trainable_layers=2,
        base_model_name_or_path=str(saved_tiny_model),
        peft_config=lora,
    )
    top = policy.backbone.model.layers[-1].self_attn.q_proj
    assert type(top.base_layer).__name__ == quantized and top.lora_A["default"].weight.dtype == torch.float32
    assert all(p.dtype == torch.float32 for p in policy.parameters() if p.requires_grad)
    prompts = [[1, 5, 6, 7, 8], [9, 10, 11, 12, 13, 14, 15]]
    masks = [[1, 1, 1]] * 2
    initial = policy.action_probabilities(prompts, masks)
    # Gradients flow through the quantised weights above an adapter, even after the no-grad eval-mode forward above
    # (on AVX512-BF16 CPUs bitsandbytes would then repack 4-bit weights into a format without a backward). Every
    # lora_B starts at 0, so the first trainable layer's q_proj adapter gets its gradient only through o_proj's
    # quantised base weights.
    batch = policy.collate(prompts)
    policy(batch["input_ids"], batch["attention_mask"]).log_probs[:, 1].sum().backward()
    grad = policy.backbone.model.layers[2].self_attn.q_proj.lora_B["default"].weight.grad
    assert grad is not None and grad.abs().sum() > 0
    policy.zero_grad(set_to_none=True)

    # A short PPO run moves the LoRA weights and the heads; the reference (adapters disabled) stays the initial policy.
    args = tiny_ppo_config(tmp_path / "run", total_timesteps=2 * 2 * 4, llm_learning_rate=1e-2, learning_rate=1e-2)
    FlagPPOTrainer(policy, args, make_synthetic_dataset(seed=0), processing_class=tiny_tokenizer).train()
    trained = policy.action_probabilities(prompts, masks)
    assert (trained - initial).abs().max() > 1e-4
    assert torch.allclose(policy.action_probabilities(prompts, masks, reference=True), initial, atol=1e-6)

    # The adapter loads back onto a freshly quantised base model (from the folder its config names).
    policy.save_pretrained(tmp_path / "adapter")
    loaded = FlagPolicy.from_pretrained(
        tmp_path / "adapter", dtype="float32", quantization_config=quantization_config(bits)
    )
    assert type(loaded.backbone.model.layers[-1].mlp.up_proj.base_layer).__name__ == quantized
    assert torch.allclose(loaded.action_probabilities(prompts, masks), trained, atol=1e-6)
