"""bf16 on a CPU: native bfloat16 is detected, and asking for bf16 on a CPU without it warns once, in one line."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from silc.kernel import precision
from silc.kernel.precision import cpu_has_native_bf16, resolve_precision

WARNING = (
    "bf16 requested on a CPU without native bfloat16 (avx512_bf16, amx_bf16 or Arm bf16): it runs emulated, "
    "usually slower than fp32"
)


@pytest.mark.parametrize("native", [True, False])
def test_bf16_warns_once_exactly_on_a_cpu_without_it(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, native: bool
) -> None:
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: native)
    precision._warn_emulated_bf16.cache_clear()
    with caplog.at_level(logging.WARNING, logger=precision.__name__):
        assert resolve_precision("amp-bf16", "cpu", cuda_default="bf16") == "bf16"
        assert resolve_precision("bf16", torch.device("cpu"), cuda_default="bf16") == "bf16"
        assert (
            resolve_precision("bf16", "cuda", cuda_default="fp16") == "bf16"
        )  # the GPU's concern, not the CPU's
        assert resolve_precision("auto", "cpu", cuda_default="bf16") == "fp32"
        assert resolve_precision("fp16", "cpu", cuda_default="bf16") == "fp16"
    warned = [r.getMessage() for r in caplog.records if r.name == precision.__name__]
    assert warned == ([] if native else [WARNING])
    precision._warn_emulated_bf16.cache_clear()


@pytest.mark.parametrize(
    ("cpuinfo", "native"),
    [
        ("flags\t\t: fpu sse2 avx2 avx512f avx512_bf16 amx_tile\n", True),
        ("flags\t\t: fpu sse2 avx2 amx_bf16 amx_tile\n", True),
        ("Features\t: fp asimd sve bf16 i8mm\n", True),  # Arm (Neoverse V1)
        ("flags\t\t: fpu sse2 avx2 avx512f avx512bw\n", False),
        ("model name\t: bf16 in a name is no flag\nflags\t\t: avx2\n", False),
        (None, False),  # no /proc/cpuinfo
    ],
)
def test_native_bf16_is_read_from_the_cpu_flags(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, cpuinfo: str | None, native: bool
) -> None:
    for detector in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        monkeypatch.setattr(torch.cpu, detector, lambda: False, raising=False)
    path = tmp_path / "cpuinfo"
    if cpuinfo is not None:
        path.write_text(cpuinfo)
    monkeypatch.setattr(precision, "CPUINFO", path)
    assert cpu_has_native_bf16() is native
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    assert cpu_has_native_bf16() is True
