"""Model adapters: the Encoder contract and its implementations, plus glue for clip_benchmark/mmseg/mmdet.

``load_encoder`` and ``parse_spec`` load their module (open_clip, torch) on first use, so importing the contract
(``adapters.encoder``) stays light.
"""

from __future__ import annotations

from typing import Any

from adapters.encoder import DENSE_MODES, Encoder, weights_fingerprint

__all__ = ["DENSE_MODES", "Encoder", "load_encoder", "parse_spec", "weights_fingerprint"]


def __getattr__(name: str) -> Any:
    """``load_encoder`` / ``parse_spec`` from :mod:`adapters.loading`, imported on first use (PEP 562)."""
    if name in ("load_encoder", "parse_spec"):
        from adapters import loading

        return getattr(loading, name)
    raise AttributeError(f"module 'adapters' has no attribute {name!r}")
