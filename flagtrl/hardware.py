"""What the machine can do, read once where a default depends on it (no torch import: the config layer uses it)."""

from __future__ import annotations

from pathlib import Path


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU has native bf16 matrix instructions (AVX512-BF16 or AMX).

    Without them bf16 matmuls are emulated: on an AVX2-only AMD EPYC we measured them 50x slower than float32, while
    on a CPU with AMX bf16 is about 2x faster. So "auto" picks bf16 only where it pays.
    """
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def cpu_has_native_bf16() -> bool:
    """Whether this CPU has bf16 instructions at all (AVX512-BF16 or AMX): bf16 then runs, at a speed to measure."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags
