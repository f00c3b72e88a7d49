"""4/8-bit loading of the frozen trunk through bitsandbytes; the trainable top layers stay full precision."""

from __future__ import annotations

import pytest
import torch
from conftest import build_tiny_llama

from flagtrl.models import FlagPolicy, load_backbone


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
