"""`dtype: auto` on a CPU: bf16 only where it beats float32 (AMX), float32 elsewhere."""

from __future__ import annotations

import pytest
import torch

from flagtrl.hardware import cpu_flags, cpu_has_fast_bf16, cpu_has_native_bf16
from flagtrl.models import loading


def test_bf16_pays_only_with_amx():
    avx512_bf16 = {"avx2", "avx512f", "avx512_bf16", "avx512_vnni"}  # native bf16 dot products, measured slower
    assert not cpu_has_fast_bf16(avx512_bf16) and cpu_has_native_bf16(avx512_bf16)
    assert cpu_has_fast_bf16(avx512_bf16 | {"amx_tile", "amx_bf16"})
    assert not cpu_has_fast_bf16({"avx2"}) and not cpu_has_native_bf16({"avx2"})
    assert isinstance(cpu_flags(), set)


@pytest.mark.skipif(torch.cuda.is_available(), reason="auto keeps the checkpoint's dtype on a GPU")
@pytest.mark.parametrize(("amx", "dtype"), [(True, torch.bfloat16), (False, torch.float32)])
def test_auto_dtype_follows_amx(monkeypatch, amx, dtype):
    monkeypatch.setattr(loading, "cpu_has_fast_bf16", lambda: amx)
    assert loading.resolve_dtype("auto") is dtype
    assert loading.resolve_dtype("bfloat16") is torch.bfloat16
