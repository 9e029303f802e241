"""Image references (a file, or a member inside a tar): where an image's bytes are, and its decoding.

Decoding is torchvision's ``pil_loader`` (``Image.open(f).convert("RGB")``, as clip_benchmark reads images) with
every failure named: a file that does not decode fully (truncated, empty, not an image) or that is larger than
PIL's decompression-bomb limit is a :class:`BadImage`, never a partial or grey image. Label maps
(:func:`decode_label_map`) are decoded the same way but keep their stored values.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
from PIL import Image, UnidentifiedImageError

from silc.errors import UserError, first_line, listed

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
MAX_LISTED = 10  # bad images named in one error or warning line; the rest are counted
_T = TypeVar("_T")


class BadImage(Exception):
    """An image that does not decode; the message says why in a few words (no path)."""


def decode_rgb(source: str | os.PathLike | io.BytesIO) -> Image.Image:
    """The fully decoded image converted to RGB, as torchvision's ``pil_loader``; a truncated, empty or
    unreadable file, or one over ``Image.MAX_IMAGE_PIXELS`` pixels, raises :class:`BadImage`.

    Call it inside :func:`bomb_warnings_silenced` (the size check here replaces PIL's warning)."""
    return _decoded(source, lambda im: im.convert("RGB"))


def decode_label_map(path: str | os.PathLike) -> np.ndarray:
    """A label map's stored values (no mode conversion: an ``L`` or ``P`` PNG gives its values or indices), fully
    decoded; every failure is a :class:`BadImage`, as in :func:`decode_rgb` (call it inside
    :func:`bomb_warnings_silenced` too)."""

    def values(im: Image.Image) -> np.ndarray:
        im.load()  # decode errors raise here, not inside numpy's array conversion
        return np.array(im)

    return _decoded(path, values)


def _decoded(source: str | os.PathLike | io.BytesIO, read: Callable[[Image.Image], _T]) -> _T:
    """``read`` of the opened image, with every failure (including the size check) a :class:`BadImage`."""
    try:
        with Image.open(source) as im:
            pixels = im.width * im.height
            if Image.MAX_IMAGE_PIXELS is not None and pixels > Image.MAX_IMAGE_PIXELS:
                raise BadImage(_bomb(pixels, f"{im.width}x{im.height} = "))
            # reads every byte: a truncated file raises (PIL's ImageFile.LOAD_TRUNCATED_IMAGES stays False)
            return read(im)
    except BadImage:
        raise
    except FileNotFoundError:
        raise BadImage("missing") from None
    except Image.DecompressionBombError as e:  # over twice the limit: PIL refuses before reading the size out
        found = re.search(r"\((\d+) pixels\)", str(e))
        raise BadImage(_bomb(int(found.group(1))) if found else str(e)) from None
    except UnidentifiedImageError:
        raise BadImage("empty file" if _is_empty(source) else "not an image PIL can read") from None
    except Exception as e:  # any other decoder failure is this file's fault, named as such
        raise BadImage("truncated" if "truncated" in str(e).lower() else first_line(e)) from None


def _is_empty(source: str | os.PathLike | io.BytesIO) -> bool:
    if isinstance(source, io.BytesIO):
        return not source.getbuffer().nbytes
    return os.path.getsize(source) == 0


def _bomb(pixels: int, size: str = "") -> str:
    return f"{size}{pixels} pixels, over PIL's decompression-bomb limit of {Image.MAX_IMAGE_PIXELS}"


@contextmanager
def bomb_warnings_silenced() -> Iterator[None]:
    """Silence PIL's ``DecompressionBombWarning`` (``decode_rgb`` refuses those images itself). Not thread-safe:
    enter it in the thread that starts the decoding threads or processes, or in a single-threaded worker."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        yield


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
        """The decoded image, converted to RGB (:func:`decode_rgb`; raises :class:`BadImage`)."""
        return decode_rgb(self.path if self.offset < 0 else io.BytesIO(self.read_bytes()))


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


def find_bad_images(paths: Sequence[str | os.PathLike], threads: int | None = None) -> dict[int, str]:
    """Decode every file of ``paths`` fully (:func:`decode_rgb`, in a thread pool: PIL decodes outside the GIL);
    returns ``{index: why}`` for those that do not decode. For pipelines that decode with another library (cv2
    in mmseg/mmdet), which would read a truncated JPEG as grey without a word."""

    def why(path: str | os.PathLike) -> str | None:
        try:
            decode_rgb(path)
        except BadImage as e:
            return str(e)
        return None

    with bomb_warnings_silenced(), ThreadPoolExecutor(threads or min(16, os.cpu_count() or 1)) as pool:
        reasons = list(pool.map(why, paths))
    return {i: r for i, r in enumerate(reasons) if r is not None}


def settle_bad_images(bad: dict[str, str], root: str | Path, skip: bool, left: int) -> list[str]:
    """What to do with the images ``bad`` (name relative to ``root`` -> why) that did not decode: without
    ``skip``, stop with one line naming them (at most ten, then a count); with ``skip``, log one warning line and
    return their sorted names (the record's ``skipped_images``). ``left``: the images still evaluated without
    them; none left stops the run either way."""
    if not bad:
        return []
    names = sorted(bad)
    files = listed([f"{n} ({bad[n]})" for n in names], MAX_LISTED)
    what = f"{root}: {len(names)} image(s) do not decode: {files}"
    if left == 0:
        raise UserError(f"{what}; no image is left to evaluate")
    if not skip:
        raise UserError(f"{what}; repair or remove them, or pass --skip-bad-images to leave them out")
    log.warning("%s; left out of the evaluation (--skip-bad-images)", what)
    return names
