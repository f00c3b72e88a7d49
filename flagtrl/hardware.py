"""What the machine can do, read once where a default depends on it (no torch import: the config layer uses it)."""

from __future__ import annotations

from pathlib import Path


def _cpuinfo_lines() -> list[str]:
    """The lines of /proc/cpuinfo (none where there is no such file)."""
    try:
        return Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return []


def cpu_flags() -> set[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where there is none)."""
    return {flag for line in _cpuinfo_lines() if line.startswith("flags") for flag in line.split(":", 1)[1].split()}


def cpu_vendor() -> str:
    """The CPU's vendor string from /proc/cpuinfo (`GenuineIntel`, `AuthenticAMD`; empty where there is none)."""
    return next((line.split(":", 1)[1].strip() for line in _cpuinfo_lines() if line.startswith("vendor_id")), "")


def cpu_has_fast_bf16(flags: set[str] | None = None, vendor: str | None = None) -> bool:
    """Whether bf16 beats float32 on this CPU: with AMX tiles, or on an AMD CPU with AVX512-BF16 (Zen 4 and later).

    Measured (torch 2.13, oneDNN, one thread; `benchmarks/ppo_throughput.py --sections levers`):

    - AVX2 only (AMD EPYC): emulated bf16 matmuls 50x slower than float32.
    - AVX512-BF16 without AMX, Intel Xeon: a 187x576 @ 576x1536 matmul at 81 GFLOP/s in bf16 against 141 in float32;
      a warm PPO step's frozen suffix and top layers 1.4x and 1.7x slower in bf16.
    - AVX512-BF16, AMD EPYC (family 25, Zen 4): the frozen suffix 1.56x and the top layers 1.58x *faster* in bf16
      (419 against 655 ms and 59 against 94 ms per sample); the matmul above 92 against 63 GFLOP/s.
    - AMX (Intel Sapphire Rapids and later): bf16 about 2x faster.

    So "auto" picks bf16 on AMX CPUs and on AMD CPUs with AVX512-BF16, float32 elsewhere.

    Args:
        flags (`set[str]`, *optional*): CPU flags (default: this machine's, `cpu_flags()`).
        vendor (`str`, *optional*): CPU vendor string (default: this machine's, `cpu_vendor()`).
    """
    flags = cpu_flags() if flags is None else flags
    vendor = cpu_vendor() if vendor is None else vendor
    return "amx_bf16" in flags or ("avx512_bf16" in flags and vendor == "AuthenticAMD")


def cpu_has_native_bf16(flags: set[str] | None = None) -> bool:
    """Whether this CPU has bf16 instructions at all (AVX512-BF16 or AMX): bf16 runs there, at a speed to measure."""
    return bool({"avx512_bf16", "amx_bf16"} & (cpu_flags() if flags is None else flags))
