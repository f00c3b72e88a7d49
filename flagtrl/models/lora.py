"""LoRA on the trainable layers of a `FlagPolicy`, through peft.

The policy's layer split holds for LoRA as for full training: layers 1..N are the frozen trunk (no gradients, no
adapters: what the trunk cache may keep), layers N+1..N+M carry LoRA adapters on their linear modules, and their base
weights stay frozen. Two settings cover the usual uses:

- LoRA on the top M layers (`num_trainable_layers=M`, the paper's split): the trunk cache keeps layers 1..N exactly as
  with full training;
- LoRA on every layer (`num_trainable_layers` = the model's layer count, as TWOSOME and GLAM train their policies):
  the frozen trunk is the embedding table alone, so the trunk cache saves nothing (it stays exact; turn it off).

Adapters below the split (an explicit `layers_to_transform`, `trainable_token_indices` on the embeddings, or
`modules_to_save`) are refused: the trunk runs without gradients and is cached, so they would neither train nor be
seen by the cache.
"""

from __future__ import annotations

import copy
import re

from torch import nn


def attach_lora(backbone: nn.Module, peft_config, num_frozen_layers: int):
    """Inject LoRA adapters into the layers of `backbone` from `num_frozen_layers` on, in place.

    Args:
        backbone (`nn.Module`): A Llama-like causal LM; its LoRA-wrapped linear modules replace the originals.
        peft_config (`peft.LoraConfig`): The LoRA settings, e.g. `trl.get_peft_config(model_args)`. Not modified: a
            copy is completed with `layers_to_transform` (the trainable layers, when unset) and `task_type`.
        num_frozen_layers (`int`): N, the layers below the adapters.

    Returns:
        `peft.PeftModelForCausalLM`: The peft wrapper around `backbone` (for `disable_adapter` and saving); only the
        LoRA weights require gradients.

    Raises:
        `ValueError`: for another peft method, for `modules_to_save`, or for adapters below layer N+1.
    """
    from peft import LoraConfig, get_peft_model
    from peft.tuners.tuners_utils import BaseTunerLayer

    if not isinstance(peft_config, LoraConfig):
        raise ValueError(f"FlagPolicy trains LoRA adapters (peft.LoraConfig), got {type(peft_config).__name__}.")
    if peft_config.modules_to_save:
        raise ValueError(
            f"lora_modules_to_save={peft_config.modules_to_save} is not supported: the policy and value heads are "
            "trained in full already, and the modules below the trainable layers are the frozen trunk."
        )
    num_layers = len(backbone.model.layers)
    config = copy.deepcopy(peft_config)
    config.inference_mode = False  # the policy decides what trains (a saved LoraConfig says inference_mode=True)
    config.task_type = config.task_type or "CAUSAL_LM"
    if config.layers_to_transform is None:
        config.layers_to_transform = list(range(num_frozen_layers, num_layers))
    layers = (
        [config.layers_to_transform] if isinstance(config.layers_to_transform, int) else config.layers_to_transform
    )
    below = sorted(i for i in layers if i < num_frozen_layers)
    if below:
        raise ValueError(
            f"LoRA layers_to_transform {below} lie in the frozen trunk (layers 0..{num_frozen_layers - 1}, no "
            f"gradients, kept by the trunk cache): raise num_trainable_layers to {num_layers - min(below)} instead."
        )
    peft_model = get_peft_model(backbone, config)
    keep_quantized_layers_differentiable(backbone.model.layers[num_frozen_layers:])
    for name, module in backbone.named_modules():
        if isinstance(module, BaseTunerLayer):
            match = re.match(r"model\.layers\.(\d+)\.", name)
            if match is None or int(match.group(1)) < num_frozen_layers:
                raise ValueError(
                    f"A peft adapter on {name} lies below the trainable layers {num_frozen_layers}..{num_layers - 1} "
                    "(the frozen trunk runs without gradients and is cached): adapt only modules of those layers."
                )
    return peft_model


def keep_quantized_layers_differentiable(layers: nn.Module) -> None:
    """Keep the 4-bit linear layers of `layers` in bitsandbytes' differentiable format.

    bitsandbytes (0.50) repacks a `Linear4bit`'s weights for its AVX512-BF16 CPU kernel the first time the layer runs in
    eval mode without gradients (a rollout, an evaluation), and from then on computes the layer with `gemv_4bit`, which
    has no backward: gradients through it vanish, and only torch's warning "an autograd kernel was not registered"
    says so. LoRA needs the gradients that flow through the frozen quantised weights above each adapter, so the
    trainable layers never repack (and are unpacked if they already were); the frozen trunk may, it needs no gradients.
    """
    for module in layers.modules():
        if not getattr(module, "support_avx512bf16_for_cpu", False):
            continue
        module.support_avx512bf16_for_cpu = False
        if getattr(module.weight.quant_state, "packing_format_for_cpu", False):
            from bitsandbytes.nn.modules import _convert_weight_packed_for_cpu_inverse

            module.weight.data, module.weight.quant_state = _convert_weight_packed_for_cpu_inverse(
                module.weight.data, module.weight.quant_state
            )
