"""Image references (a file, or a member inside a tar): where an image's bytes are, and its decoding."""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")


@dataclass(frozen=True)
class ImageRef:
    """Where one image's bytes live: a whole file (``offset < 0``) or ``size`` bytes at ``offset`` in a tar."""

    path: str
    offset: int = -1
    size: int = -1

    def read_bytes(self) -> bytes:
        """The encoded image bytes."""
        with open(self.path, "rb") as f:
            if self.offset < 0:
                return f.read()
            f.seek(self.offset)
            return f.read(self.size)

    def open(self) -> Image.Image:
        """The decoded image, converted to RGB."""
        if self.offset < 0:
            with Image.open(self.path) as im:
                return im.convert("RGB")
        with Image.open(io.BytesIO(self.read_bytes())) as im:
            return im.convert("RGB")


def unit_ids(refs: Sequence[ImageRef], root: str | Path) -> list[str]:
    """Each image's id for per-sample outcomes: its path relative to ``root`` (``@offset`` for a tar member)."""
    root = os.path.abspath(root)
    return [
        os.path.relpath(os.path.abspath(r.path), root) + (f"@{r.offset}" if r.offset >= 0 else "")
        for r in refs
    ]


def is_image(name: str) -> bool:
    """Whether a file name has one of the image extensions the readers accept (case-insensitive)."""
    return name.lower().endswith(IMAGE_EXTENSIONS)


def data_fingerprint(refs: Sequence[ImageRef], root: str | Path) -> str:
    """sha256 over each image's path relative to ``root``, its byte range, and its file's size and mtime.

    Cheap (stat only, no image read) so a cached run stays fast; touching or replacing a file changes it.
    """
    root = str(Path(root).resolve())
    h = hashlib.sha256()
    stats: dict[str, tuple[int, int]] = {}
    for ref in refs:
        st = stats.get(ref.path)
        if st is None:
            s = os.stat(ref.path)
            st = stats[ref.path] = (s.st_size, s.st_mtime_ns)
        rel = os.path.relpath(os.path.abspath(ref.path), root)
        h.update(f"{rel}|{ref.offset}|{ref.size}|{st[0]}|{st[1]}\n".encode())
    return h.hexdigest()
