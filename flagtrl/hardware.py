"""What the machine can do, read once where a default depends on it (no torch import: the config layer uses it)."""

from __future__ import annotations

from pathlib import Path


def cpu_flags() -> set[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    return {flag for line in text.splitlines() if line.startswith("flags") for flag in line.split(":", 1)[1].split()}


def cpu_has_fast_bf16(flags: set[str] | None = None) -> bool:
    """Whether bf16 beats float32 on this CPU: only with AMX tiles.

    Without AMX bf16 does not pay: on an AVX2-only AMD EPYC emulated bf16 matmuls measured 50x slower than float32,
    and on an AVX512-BF16 Xeon (native bf16 dot products, no AMX; torch 2.13, oneDNN's avx512_core_bf16 kernel, one
    thread) a 187x576 @ 576x1536 matmul ran at 81 GFLOP/s in bf16 against 141 in float32, and a warm PPO step's frozen
    suffix and top layers ran 1.4x and 1.7x slower in bf16 (`benchmarks/ppo_throughput.py --sections levers`). With
    AMX bf16 is about 2x faster. So "auto" picks bf16 on AMX CPUs only.
    """
    return "amx_bf16" in (cpu_flags() if flags is None else flags)


def cpu_has_native_bf16(flags: set[str] | None = None) -> bool:
    """Whether this CPU has bf16 instructions at all (AVX512-BF16 or AMX): bf16 runs there, at a speed to measure."""
    return bool({"avx512_bf16", "amx_bf16"} & (cpu_flags() if flags is None else flags))
