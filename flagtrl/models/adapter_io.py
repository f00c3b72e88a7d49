"""Writing and reading a FLAG-Trader adapter folder, in either of its two layouts.

Top layers trained in full (`peft_type` `null`; the layout of every flagtrl release so far):

    adapter_config.json        {"base_model_name_or_path", "peft_type": null, "flagtrl": {FlagPolicyConfig}, ...}
    adapter_model.safetensors  layers.<i>.*, norm.*, policy_head.*, value_head.*, reference.policy_head.*

LoRA (`peft_type` `"LORA"`): the LoRA part in peft's own format, so that `PeftModel.from_pretrained(base, folder)` loads
it, with flagtrl's part beside it:

    adapter_config.json        peft's `LoraConfig` (written by `PeftModel.save_pretrained`)
    adapter_model.safetensors  peft's LoRA weights, `base_model.model.model.layers.<i>.<module>.lora_{A,B}.weight`
    flagtrl_config.json        {"flagtrl": {FlagPolicyConfig}, ...}
    flagtrl_heads.safetensors  policy_head.*, value_head.*, reference.policy_head.*

Both hold float32 tensors (the trained parts' master weights) and, when a tokenizer is given, its files.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors.torch import load_file, save_file


if TYPE_CHECKING:
    from .flag_policy import FlagPolicy

ADAPTER_CONFIG_NAME = "adapter_config.json"
ADAPTER_WEIGHTS_NAME = "adapter_model.safetensors"
FLAGTRL_CONFIG_NAME = "flagtrl_config.json"
HEADS_WEIGHTS_NAME = "flagtrl_heads.safetensors"
# What `peft.get_peft_model_state_dict` puts before a module's name (PeftModel -> LoraModel -> the causal LM).
LORA_KEY_PREFIX = "base_model.model."


@dataclass
class SavedAdapter:
    """An adapter folder's contents.

    Args:
        settings (`dict`): The `FlagPolicyConfig` fields.
        peft_config (`peft.LoraConfig`, *optional*): The LoRA settings (`None` for top layers trained in full).
        state (`dict[str, torch.Tensor]`): Every tensor, named as `FlagPolicy.adapter_state_dict` names them.
    """

    settings: dict
    peft_config: object | None
    state: dict[str, torch.Tensor]


def save_adapter(policy: FlagPolicy, save_directory: str | Path, tokenizer=None, prompt_config: dict | None = None):
    """Write `policy`'s adapter to `save_directory` (the layout of the module docstring).

    Args:
        prompt_config (`dict`, *optional*): The prompt settings to record for a policy built without any (a trainer
            passes the ones it trained with); the policy's own otherwise.
    """
    save_directory = Path(save_directory)
    save_directory.mkdir(parents=True, exist_ok=True)
    config = policy.config_flag
    settings = asdict(config) | {"prompt_config": dict(config.prompt_config or prompt_config or {})}
    state = policy.adapter_state_dict()
    if policy.peft_model is None:
        save_file(state, str(save_directory / ADAPTER_WEIGHTS_NAME), metadata={"format": "pt"})
        adapter_config = {
            "base_model_name_or_path": config.base_model_name_or_path,
            "revision": config.base_model_revision,
            "library_name": "flagtrl",
            "peft_type": None,  # not a PEFT method: the top layers are trained in full
            "task_type": "FLAG_ACTOR_CRITIC",
            "flagtrl": settings,
        }
        (save_directory / ADAPTER_CONFIG_NAME).write_text(json.dumps(adapter_config, indent=2))
    else:
        peft_config = policy.peft_config
        peft_config.base_model_name_or_path = config.base_model_name_or_path
        peft_config.revision = config.base_model_revision
        # peft's own writer: its adapter_config.json, its key names, its README; then flagtrl's part beside it.
        policy.peft_model.save_pretrained(str(save_directory))
        heads = {k: v for k, v in state.items() if not k.startswith(LORA_KEY_PREFIX)}
        save_file(heads, str(save_directory / HEADS_WEIGHTS_NAME), metadata={"format": "pt"})
        flagtrl_config = {"library_name": "flagtrl", "task_type": "FLAG_ACTOR_CRITIC", "flagtrl": settings}
        (save_directory / FLAGTRL_CONFIG_NAME).write_text(json.dumps(flagtrl_config, indent=2))
    if tokenizer is not None:
        tokenizer.save_pretrained(save_directory)


def read_adapter(folder: str | Path) -> SavedAdapter:
    """Read an adapter folder of either layout.

    Raises:
        `ValueError`: for a peft adapter that flagtrl did not write (it has no policy or value head).
    """
    folder = Path(folder)
    raw = json.loads((folder / ADAPTER_CONFIG_NAME).read_text())
    if "flagtrl" in raw:  # top layers trained in full
        return SavedAdapter(raw["flagtrl"], None, load_file(str(folder / ADAPTER_WEIGHTS_NAME)))
    if not (folder / FLAGTRL_CONFIG_NAME).exists():
        raise ValueError(
            f"{folder} holds a {raw.get('peft_type')} adapter without flagtrl's heads ({FLAGTRL_CONFIG_NAME}): "
            "load it with peft.PeftModel.from_pretrained; FlagPolicy.from_pretrained needs an adapter saved by flagtrl."
        )
    from peft import PeftConfig

    settings = json.loads((folder / FLAGTRL_CONFIG_NAME).read_text())["flagtrl"]
    peft_config = PeftConfig.from_pretrained(str(folder))
    state = load_file(str(folder / HEADS_WEIGHTS_NAME)) | load_file(str(folder / ADAPTER_WEIGHTS_NAME))
    return SavedAdapter(settings, peft_config, state)
