"""The policy to train, built from the recipe's `ModelConfig` and `FlagPPOConfig` (as open-r1's `get_model`)."""

from __future__ import annotations

from transformers import PreTrainedTokenizerBase
from trl import ModelConfig, get_peft_config, get_quantization_config

from ..models.flag_policy import FlagPolicy
from ..models.loading import load_backbone, load_tokenizer
from .ppo_flag_config import FlagPPOConfig


def load_policy(model_args: ModelConfig, training_args: FlagPPOConfig) -> tuple[FlagPolicy, PreTrainedTokenizerBase]:
    """Load the tokenizer and the backbone, and build the `FlagPolicy` with the training config's settings (trainable
    layers, policy-head init, prompt settings, last-token top layer), so that `FlagPPOTrainer` accepts it.

    Args:
        model_args (`trl.ModelConfig`): `model_name_or_path`, `model_revision`, `dtype`, `attn_implementation`, the
            LoRA fields (`use_peft`, `lora_r`, `lora_alpha`, `lora_dropout`, `lora_target_modules`, ... through TRL's
            `get_peft_config`: LoRA adapters on the `num_trainable_layers` top layers instead of the layers
            themselves) and the quantisation flags (`load_in_4bit`, `load_in_8bit`: the frozen trunk under full top
            layers; every layer's base weights with `use_peft`, i.e. QLoRA).
        training_args (`FlagPPOConfig`): The training configuration.

    Returns:
        `tuple[FlagPolicy, PreTrainedTokenizerBase]`: the policy (its reference policy included) and the tokenizer.

    Raises:
        `ValueError`: for LoRA settings that would put adapters below the trainable layers (`flagtrl.models.lora`).
    """
    peft_config = get_peft_config(model_args)
    tokenizer = load_tokenizer(model_args.model_name_or_path, model_args.model_revision)
    backbone = load_backbone(
        model_args.model_name_or_path,
        revision=model_args.model_revision,
        dtype=model_args.dtype,
        quantization_config=get_quantization_config(model_args),
        num_trainable_layers=training_args.num_trainable_layers,
        attn_implementation=model_args.attn_implementation,
        quantize_trainable_layers=peft_config is not None,
    )
    policy = FlagPolicy.from_backbone(
        backbone,
        tokenizer,
        num_trainable_layers=training_args.num_trainable_layers,
        policy_head_init=training_args.policy_head_init,
        base_model_name_or_path=model_args.model_name_or_path,
        prompt_config=vars(training_args.prompt_config()),
        last_token_top_layer=training_args.last_token_top_layer,
        peft_config=peft_config,
    )
    return policy, tokenizer
