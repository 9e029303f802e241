"""Byte-stable encoders: PNG/JPEG with fixed settings, JSON with fixed layout, tar with fixed member metadata."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

JPEG_QUALITY = 95
PHOTO_CHROMA = "4:2:0"  # the chroma subsampling cameras write (PIL's subsampling=2)


def png_bytes(array: np.ndarray) -> bytes:
    """PNG of an RGB (H, W, 3) or single-channel (H, W) uint8 array."""
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG", compress_level=1, optimize=False)
    return buf.getvalue()


def jpeg_bytes(array: np.ndarray) -> bytes:
    """Baseline JPEG (quality 95, no chroma subsampling, no metadata) of an RGB uint8 array."""
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="JPEG", quality=JPEG_QUALITY, subsampling=0, optimize=False)
    return buf.getvalue()


def photo_jpeg_bytes(array: np.ndarray, quality: int) -> bytes:
    """Baseline JPEG as cameras write it (``quality``, 4:2:0 chroma subsampling, no metadata) of an RGB array."""
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="JPEG", quality=quality, subsampling=PHOTO_CHROMA, optimize=False)
    return buf.getvalue()


def resized(array: np.ndarray, size: tuple[int, int], labels: bool = False) -> np.ndarray:
    """``array`` resized by PIL to ``size`` (W, H): bicubic for an image, nearest for a label map (values kept)."""
    resample = Image.Resampling.NEAREST if labels else Image.Resampling.BICUBIC
    return np.asarray(Image.fromarray(array).resize(size, resample=resample))


def json_bytes(obj: Any) -> bytes:
    """Compact JSON in the dicts' own key order, newline-terminated."""
    return (json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")


def write(path: Path, data: bytes) -> None:
    """Write a file inside the staging area (the whole dataset folder is moved into place at the end)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def open_tar(path: Path) -> tarfile.TarFile:
    """A new ustar archive (use as a context manager); add members with :func:`tar_add`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return tarfile.open(path, "w", format=tarfile.USTAR_FORMAT)


def tar_add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    """Add a member whose header depends only on its name and size (mtime 0, uid/gid 0, mode 644)."""
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    tar.addfile(info, io.BytesIO(data))
