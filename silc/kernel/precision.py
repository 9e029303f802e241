"""One precision vocabulary for training and evaluation: ``fp32 | bf16 | fp16`` (plus ``auto``).

``bf16``/``fp16`` mean autocast to that dtype (parameters stay float32); ``fp32`` means no autocast. ``auto``
resolves per device: float32 on CPU, the caller's CUDA default on CUDA (the trainer uses bf16, evaluation fp16).
The earlier evaluation names ``amp-fp16``/``amp-bf16`` are accepted as aliases of ``fp16``/``bf16``. ``bf16`` on a
CPU without native bfloat16 (AVX512-BF16 or AMX on x86, BF16 on Arm) runs emulated, usually slower than fp32: one
warning line says so.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

PRECISIONS = ("fp32", "bf16", "fp16")
AUTO = "auto"
CHOICES = (AUTO, *PRECISIONS)  # what a config or a protocol may name
ALIASES = {"amp-fp16": "fp16", "amp-bf16": "bf16"}
_DTYPE_NAMES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
CPUINFO = Path("/proc/cpuinfo")
_BF16_FLAGS = re.compile(r"^(flags|Features)\s*:.*\b(avx512_bf16|amx_bf16|bf16)\b", re.MULTILINE)

log = logging.getLogger(__name__)


def normalize_precision(name: str) -> str:
    """``name`` in the one vocabulary (``auto`` kept, aliases mapped); unknown names raise ValueError."""
    name = ALIASES.get(name, name)
    if name != AUTO and name not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join((AUTO, *PRECISIONS))}, got {name!r}")
    return name


def resolve_precision(name: str, device: torch.device | str, cuda_default: str) -> str:
    """A concrete precision for ``device``: ``auto`` becomes ``fp32`` off CUDA and ``cuda_default`` on CUDA."""
    import torch

    name = normalize_precision(name)
    if name == AUTO:
        return cuda_default if torch.device(device).type == "cuda" else "fp32"
    if name == "bf16" and torch.device(device).type == "cpu" and not cpu_has_native_bf16():
        _warn_emulated_bf16()
    return name


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively: torch's AVX512-BF16 / AMX detectors, else the ``avx512_bf16``,
    ``amx_bf16`` (x86) or ``bf16`` (Arm) flags of /proc/cpuinfo."""
    import torch

    for detector in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        check = getattr(torch.cpu, detector, None)
        if check is not None and check():
            return True
    try:
        return _BF16_FLAGS.search(CPUINFO.read_text()) is not None
    except OSError:
        return False


@functools.cache
def _warn_emulated_bf16() -> None:
    """The one warning line of a process that asks for bf16 on a CPU without native bfloat16."""
    log.warning(
        "bf16 requested on a CPU without native bfloat16 (avx512_bf16, amx_bf16 or Arm bf16): it runs emulated, "
        "usually slower than fp32"
    )


def precision_dtype(name: str) -> torch.dtype:
    """The torch dtype a concrete precision computes in (``fp32`` -> float32, ...)."""
    import torch

    return getattr(torch, _DTYPE_NAMES[normalize_precision(name)])


def autocast(precision: str, device: torch.device | str) -> contextlib.AbstractContextManager:
    """The autocast context of a concrete precision on ``device`` (a no-op for ``fp32``)."""
    import torch

    dtype = precision_dtype(precision)
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)
