"""Pieces shared by the pair sources: seeded generators, image decoding that reports corrupt files, and the
batch dict that a loader worker hands back to the main process."""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

# Generator streams are keyed by a purpose tag so that, e.g., epoch permutations and augmentations never share one.
PERMUTATION, AUGMENT, REPLACE, SHARDS, SHUFFLE = 1, 2, 3, 4, 5


def mix_seed(*keys: int) -> int:
    """A 63-bit seed that depends on every key (numpy SeedSequence hashing), for torch.Generator.manual_seed."""
    state = np.random.SeedSequence([int(k) for k in keys]).generate_state(2, np.uint64)
    return int((int(state[0]) << 32 ^ int(state[1])) & ((1 << 63) - 1))


def generator(*keys: int) -> torch.Generator:
    """A fresh CPU generator seeded from ``keys`` (see :func:`mix_seed`)."""
    g = torch.Generator()
    g.manual_seed(mix_seed(*keys))
    return g


def decode_image(source: bytes | Path) -> Image.Image:
    """Fully decode an image (bytes or file) to RGB; raises OSError/ValueError on corrupt or truncated data."""
    img = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
    img.load()
    return img.convert("RGB")


DECODE_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)

ViewFn = Callable[[Image.Image, torch.Generator], dict[str, torch.Tensor]]


@dataclass
class BatchParts:
    """Samples collected by a worker, plus what the main process needs for counting and positions."""

    views: list[dict[str, torch.Tensor]] = field(default_factory=list)
    captions: list[str] = field(default_factory=list)
    index: list[int] = field(default_factory=list)
    seen: int = 0
    skipped_keys: list[str] = field(default_factory=list)

    def add(self, views: dict[str, torch.Tensor], caption: str, index: int) -> None:
        self.views.append(views)
        self.captions.append(caption)
        self.index.append(index)

    def to_batch(self, position: dict | None = None, error: str | None = None) -> dict:
        """Stack the views into ``[B, V, 3, H, W]`` tensors; ``_``-prefixed keys are for the loader only."""
        batch: dict = {
            "_seen": self.seen,
            "_skipped_keys": self.skipped_keys,
            "_position": position,
            "_error": error,
        }
        if error is None:
            batch.update({k: torch.stack([v[k] for v in self.views]) for k in self.views[0]})
            batch["_captions"] = self.captions
            batch["index"] = torch.tensor(self.index, dtype=torch.long)
        return batch
