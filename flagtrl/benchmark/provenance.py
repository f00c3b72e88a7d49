"""What produced a number: the versions, the hardware, the dtype, the seed and the prompt version of each run, so that
two machines' tables can be compared (and told apart when they differ).

Versions are read from the installed packages' metadata (no import); the CPU from `/proc/cpuinfo` (its model and the
instruction sets that change results or speed: AVX2, AVX-512, native bf16); the GPU only when torch is already loaded
(an LLM agent ran).
"""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata
from pathlib import Path

from ..hardware import cpu_has_fast_bf16, cpu_has_native_bf16, cpu_vendor
from ..prompt import PROMPT_VERSION


PACKAGES = ("flagtrl", "numpy", "pandas", "torch", "transformers", "trl", "peft", "accelerate", "datasets", "arch")
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def cpu_description() -> dict:
    model, flags = "", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and not model:
                model = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    except OSError:  # not Linux: the model from the platform, no flags
        pass
    return {
        "cpu": model or platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "cpu_flags": [f for f in CPU_FLAGS if f in flags],
        "cpu_vendor": cpu_vendor(),
        "native_bf16": cpu_has_native_bf16(),  # bf16 instructions (AVX512-BF16 or AMX)
        "fast_bf16": cpu_has_fast_bf16(),  # bf16 beats float32 here: what `dtype: auto` loads
    }


def gpu_description() -> str | None:
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available():
        return None
    return torch.cuda.get_device_name(torch.cuda.current_device())


def machine_record(world_size: int = 1) -> dict:
    """The versions and the hardware of this process (computed once per benchmark process)."""
    return {
        "versions": package_versions(),
        "hardware": {**cpu_description(), "platform": platform.platform()},
        "processes": world_size,
    }


def agent_dtype(agent) -> str | None:
    """The weights' dtype of an LLM agent (its `model` or `policy`), `None` for a rule."""
    for attribute in ("model", "policy"):
        module = getattr(agent, attribute, None)
        parameters = getattr(module, "parameters", None)
        if parameters is not None:
            first = next(iter(parameters()), None)
            if first is not None:
                return str(first.dtype).removeprefix("torch.")
    return None


def run_provenance(machine: dict, agent, seed: int, is_llm: bool, anonymised: bool) -> dict:
    """One run's provenance: `machine` plus the seed, the dtype, and for LLM agents the prompt version and settings."""
    builder = getattr(agent, "builder", None)
    return {
        "seed": seed,
        "dtype": agent_dtype(agent),
        "prompt_version": PROMPT_VERSION if is_llm else None,
        "prompt_fingerprint": getattr(builder, "fingerprint", None) if is_llm else None,
        "anonymised": anonymised,
        "gpu": gpu_description() if is_llm else None,
        **machine,
    }
