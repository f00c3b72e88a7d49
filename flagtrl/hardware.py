"""What the machine can do, read once where a default depends on it (no torch import: the config layer uses it)."""

from __future__ import annotations

from pathlib import Path


def cpu_has_fast_bf16() -> bool:
    """Whether bf16 beats float32 on this CPU: only with AMX tiles.

    Without AMX bf16 does not pay: on an AVX2-only AMD EPYC emulated bf16 matmuls measured 50x slower than float32,
    and on an AVX512-BF16 Xeon (native bf16 dot products, no AMX; torch 2.13, oneDNN's avx512_core_bf16 kernel, one
    thread) a 187x576 @ 576x1536 matmul ran at 81 GFLOP/s in bf16 against 141 in float32, a warm PPO step's frozen
    suffix 1.4x and its top layers 1.7x slower in bf16 (`benchmarks/ppo_throughput.py --sections levers`). With AMX
    bf16 is about 2x faster. So "auto" picks bf16 on AMX CPUs only.
    """
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags


def cpu_has_native_bf16() -> bool:
    """Whether this CPU has bf16 instructions at all (AVX512-BF16 or AMX): bf16 then runs, at a speed to measure."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags
