"""`dtype: auto` on a CPU: bf16 only where it beats float32 (AMX; AMD with AVX512-BF16), float32 elsewhere."""

from __future__ import annotations

import pytest
import torch

from flagtrl.hardware import cpu_flags, cpu_has_fast_bf16, cpu_has_native_bf16, cpu_vendor
from flagtrl.models import loading


def test_bf16_pays_with_amx_or_on_amd_avx512_bf16():
    avx512_bf16 = {"avx2", "avx512f", "avx512_bf16", "avx512_vnni"}  # native bf16 dot products
    # Intel without AMX: measured slower than float32; AMD Zen 4: measured 1.56x faster.
    assert not cpu_has_fast_bf16(avx512_bf16, "GenuineIntel") and cpu_has_native_bf16(avx512_bf16)
    assert cpu_has_fast_bf16(avx512_bf16, "AuthenticAMD")
    assert cpu_has_fast_bf16(avx512_bf16 | {"amx_tile", "amx_bf16"}, "GenuineIntel")
    for vendor in ("GenuineIntel", "AuthenticAMD", ""):  # AVX2 only: emulated bf16, 50x slower
        assert not cpu_has_fast_bf16({"avx2"}, vendor) and not cpu_has_native_bf16({"avx2"})
    assert isinstance(cpu_flags(), set) and isinstance(cpu_vendor(), str)


@pytest.mark.skipif(torch.cuda.is_available(), reason="auto keeps the checkpoint's dtype on a GPU")
@pytest.mark.parametrize(("fast", "dtype"), [(True, torch.bfloat16), (False, torch.float32)])
def test_auto_dtype_follows_fast_bf16(monkeypatch, fast, dtype):
    monkeypatch.setattr(loading, "cpu_has_fast_bf16", lambda: fast)
    assert loading.resolve_dtype("auto") is dtype
    assert loading.resolve_dtype("bfloat16") is torch.bfloat16
