"""Batched feature extraction through the Encoder contract, with an on-disk cache shared by all harnesses.

A cache entry is keyed by (weights fingerprint, dataset fingerprint, transform, dense mode, precision) for images
and by (weights fingerprint, texts, precision) for texts, so a second run, or few-shot and zero-shot on the same
images, encodes nothing. Entries are written atomically with a sha256 of their tensor; a corrupt entry is
detected on read, removed and recomputed.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset
from tqdm import tqdm

from adapters.encoder import Encoder
from benchmarks.decode import TensorDecode, TensorTransform
from benchmarks.options import DECODES, DEFAULT_DECODE, HarnessOptions
from benchmarks.placement import DecodePlacement
from benchmarks.readers.images import (
    BadImage,
    ImageRef,
    bomb_warnings_silenced,
    data_fingerprint,
    settle_bad_images,
    unit_ids,
)
from silc.errors import UserError
from silc.io import atomic_write_bytes
from silc.kernel import autocast
from silc.kernel import resolve_precision as kernel_resolve_precision

log = logging.getLogger(__name__)

CACHE_ENV = "SILC_BENCH_CACHE"
EVAL_CUDA_DEFAULT = "fp16"  # what ``auto`` means for evaluation on CUDA (fp32 elsewhere)


def default_cache_dir() -> Path:
    """``$SILC_BENCH_CACHE`` when set, else ``~/.cache/silc-bench/features``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else Path.home() / ".cache" / "silc-bench" / "features"


def describe_transform(transform: Callable) -> str:
    """A stable text description of an image transform (resize, crop, interpolation, mean, std)."""
    parts = getattr(transform, "transforms", None)
    if parts is not None:
        return "Compose(" + ", ".join(describe_transform(t) for t in parts) + ")"
    if hasattr(transform, "__qualname__") and not hasattr(transform, "forward"):
        return transform.__qualname__
    return re.sub(r"\s+", " ", re.sub(r" at 0x[0-9a-fA-F]+", "", repr(transform))).strip()


def resolve_precision(precision: str, device: torch.device | str) -> str:
    """``auto`` becomes ``fp16`` (autocast) on CUDA and ``fp32`` elsewhere; other values must be known."""
    return kernel_resolve_precision(precision, device, cuda_default=EVAL_CUDA_DEFAULT)


class FeatureCache:
    """Tensors on disk under ``root/<k[:2]>/<k>.pt``, keyed by the sha256 of a JSON description; ``root=None``
    disables caching."""

    def __init__(self, root: str | Path | None):
        self.root = Path(root) if root is not None else None

    @staticmethod
    def key(parts: dict[str, Any]) -> str:
        return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()

    def path(self, key: str) -> Path:
        assert self.root is not None
        return self.root / key[:2] / f"{key}.pt"

    def load(self, parts: dict[str, Any]) -> torch.Tensor | None:
        """The cached tensor for ``parts``, or None when absent or corrupt (a corrupt entry is removed)."""
        if self.root is None:
            return None
        path = self.path(self.key(parts))
        if not path.is_file():
            return None
        try:
            entry = torch.load(path, map_location="cpu", weights_only=True)
            tensor = entry["tensor"]
            if entry["sha256"] != _tensor_sha256(tensor) or entry["parts"] != json.dumps(
                parts, sort_keys=True
            ):
                raise ValueError("checksum mismatch")
        except Exception as e:  # any unreadable entry is recomputed, never trusted
            log.warning("feature cache entry %s is corrupt (%s); recomputing", path, e)
            path.unlink(missing_ok=True)
            return None
        return tensor

    def save(self, parts: dict[str, Any], tensor: torch.Tensor) -> None:
        """Store ``tensor`` for ``parts`` atomically (no-op when caching is disabled)."""
        if self.root is None:
            return
        tensor = tensor.detach().cpu().contiguous()
        buf = io.BytesIO()
        entry = {
            "tensor": tensor,
            "sha256": _tensor_sha256(tensor),
            "parts": json.dumps(parts, sort_keys=True),
        }
        torch.save(entry, buf)
        atomic_write_bytes(self.path(self.key(parts)), buf.getvalue())


def _tensor_sha256(t: torch.Tensor) -> str:
    h = hashlib.sha256(f"{t.dtype}|{tuple(t.shape)}|".encode())
    h.update(t.contiguous().view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


class ImageDataset(Dataset):
    """``refs[i]`` decoded and passed through ``transform``; yields ``(tensor, i, None)``, or ``(None, i, why)``
    for an image that does not decode (:class:`BadImage`), so that a run can name every bad image at once. Read it
    inside :func:`bomb_warnings_silenced` (entered by the thread that starts the decoding threads, and in each
    loader process by :func:`silence_bomb_warnings`). A :class:`TensorDecode` transform takes the ref itself
    (``decode: tensor``: it reads and decodes the bytes its own way)."""

    def __init__(
        self, refs: Sequence[ImageRef], transform: Callable[[Image.Image], torch.Tensor] | TensorDecode
    ):
        self.refs = list(refs)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.refs)

    def __getitem__(self, i: int) -> tuple[torch.Tensor | None, int, str | None]:
        try:
            if isinstance(self.transform, TensorDecode):
                return self.transform(self.refs[i]), i, None
            image = self.refs[i].open()
        except BadImage as e:
            return None, i, str(e)
        return self.transform(image), i, None


def silence_bomb_warnings(worker_id: int) -> None:
    """A loader process's ``worker_init_fn``: PIL's decompression-bomb warning off for the process's life (the
    reader refuses those images itself)."""
    warnings.simplefilter("ignore", Image.DecompressionBombWarning)


def collate_decoded(
    items: list[tuple[torch.Tensor | None, int, str | None]],
) -> tuple[torch.Tensor | None, torch.Tensor, list[tuple[int, str]]]:
    """A batch of :class:`ImageDataset` items: the stacked decoded images (None if none decoded), their indices,
    and ``(index, why)`` of those that did not decode."""
    good = [(x, i) for x, i, _ in items if x is not None]
    bad = [(i, why) for x, i, why in items if x is None]
    x = torch.stack([x for x, _ in good]) if good else None
    return x, torch.tensor([i for _, i in good], dtype=torch.long), bad


@dataclass
class Features:
    """Encoded features and how they were obtained."""

    tensor: torch.Tensor  # float32, on CPU; NaN rows for ``bad`` images ([N, 0] when none decodes)
    from_cache: bool
    encoded: int  # items that went through the encoder in this call
    bad: dict[int, str] = field(default_factory=dict)  # index -> why, for the images that do not decode


@dataclass
class EncodeSettings:
    """How to run the encoder: resolved precision, batching, loader workers, the cache, and how images become
    pixels (``decode``: benchmarks/decode.py)."""

    precision: str
    batch_size: int = 64
    workers: int = 2
    cache: FeatureCache | None = None
    decode: str = DEFAULT_DECODE


def image_parts(
    encoder: Encoder,
    refs: Sequence[ImageRef],
    root: str | Path,
    precision: str,
    mode: str | None = None,
    decode: str = DEFAULT_DECODE,
) -> dict[str, Any]:
    """The cache key parts of an image set: weights, data (stat fingerprint), transform, dense mode, precision,
    and the decode path when it is not the default (with the device type: nvJPEG's pixels are not libjpeg's)."""
    parts = {
        "kind": "image",
        "weights": encoder.fingerprint,
        "data": data_fingerprint(refs, root),
        "count": len(refs),
        "transform": describe_transform(encoder.preprocess),
        "mode": mode or "global",
        "precision": precision,
    }
    if decode != DEFAULT_DECODE:
        parts["decode"] = f"{decode}:{encoder.device.type}"
    return parts


def encode_images(
    encoder: Encoder,
    refs: Sequence[ImageRef],
    root: str | Path,
    settings: EncodeSettings,
    mode: str | None = None,
    desc: str = "images",
    allow_bad: bool = False,
) -> Features:
    """Normalised global (``mode=None``) or dense features of ``refs``, from the cache when present.

    Images that do not decode stop the run with one line naming all of them, unless ``allow_bad``: then they come
    back in ``Features.bad`` for the harness to settle (:func:`settle_bad_images`). Features with bad rows are
    never cached, so that a later run finds the bad images again. Under torchrun the ranks encode consecutive
    runs of the batches one process would (:mod:`benchmarks.sharding`) and every rank returns every row."""
    from benchmarks import sharding

    cache = settings.cache or FeatureCache(None)
    parts = image_parts(encoder, refs, root, settings.precision, mode, settings.decode)
    cached = sharding.everywhere(cache.load(parts))
    if cached is not None:
        log.info("%s: %d features from cache", desc, len(refs))
        return Features(cached, True, 0)
    mine = sharding.shard(len(refs), settings.batch_size)
    part, part_bad = _run_images(encoder, refs[mine.start : mine.stop], settings, mode, desc)
    tensor = sharding.gather_rows(part, len(refs))
    bad = sharding.gather_dict({mine.start + i: why for i, why in part_bad.items()})
    if bad and not allow_bad:
        units = unit_ids(refs, root)
        settle_bad_images({units[i]: why for i, why in bad.items()}, root, False, len(refs) - len(bad))
    if not bad and sharding.is_main():
        cache.save(parts, tensor)
    return Features(tensor, False, len(refs) - len(bad), bad)


@dataclass(frozen=True)
class DecodedRows:
    """The rows of an image set whose images decoded (indices into it, and their per-sample unit ids), and the
    names of the images left out (the record's ``skipped_images``)."""

    rows: list[int]
    units: list[str]
    skipped: list[str]


def decoded_rows(
    features: Features,
    refs: Sequence[ImageRef],
    root: str | Path,
    skip: bool,
    also_bad: dict[str, str] | None = None,
) -> DecodedRows:
    """Settle the images of ``refs`` that did not decode (``features.bad``, named relative to ``root``, and
    ``also_bad``: other images of the run, name -> why) with :func:`settle_bad_images`: stop with one line, or
    with ``skip`` leave them out; returns the rows that remain."""
    units = unit_ids(refs, root)
    rows = [i for i in range(len(refs)) if i not in features.bad]
    bad = {units[i]: why for i, why in features.bad.items()} | (also_bad or {})
    skipped = settle_bad_images(bad, root, skip, len(rows))
    return DecodedRows(rows, [units[i] for i in rows], skipped)


def _run_images(
    encoder: Encoder, refs: Sequence[ImageRef], settings: EncodeSettings, mode: str | None, desc: str
) -> tuple[torch.Tensor, dict[int, str]]:
    """The features of ``refs`` (NaN rows for images that do not decode) and ``{index: why}`` of those; where
    decoding runs is chosen from measured costs (:mod:`benchmarks.placement`)."""
    out: torch.Tensor | None = None
    bad: dict[int, str] = {}
    device = encoder.device
    decoder = TensorDecode(encoder.preprocess, device) if settings.decode != DEFAULT_DECODE else None
    dataset = ImageDataset(refs, decoder or encoder.preprocess)
    collate = decoder.collate if decoder else collate_decoded
    placement = DecodePlacement(
        dataset, settings.batch_size, device, settings.workers, collate, silence_bomb_warnings
    )
    with (
        bomb_warnings_silenced(),
        torch.inference_mode(),
        autocast(settings.precision, device),
        tqdm(total=len(refs), desc=desc, unit="img", disable=None) as bar,
    ):
        for batch in placement.batches():
            x, idx, failed = decoder.finish(*batch) if decoder else batch  # decode: tensor ends on the device
            bad.update(failed)
            bar.update(len(idx) + len(failed))
            if x is None:
                continue
            start = time.perf_counter()
            x = x.to(device, non_blocking=True)
            f = encoder.encode_image(x) if mode is None else encoder.encode_dense(x, mode)
            f = F.normalize(f.float(), dim=1).cpu()
            placement.encoded(len(idx), time.perf_counter() - start)
            if out is None:
                out = torch.full((len(refs), *f.shape[1:]), float("nan"), dtype=torch.float32)
            out[idx] = f
    return (out if out is not None else torch.full((len(refs), 0), float("nan"))), bad


def encode_texts(
    encoder: Encoder, texts: Sequence[str], settings: EncodeSettings, desc: str = "texts"
) -> Features:
    """Normalised text embeddings ``[N, D]`` of ``texts`` in order, from the cache when present (under torchrun
    the ranks encode consecutive runs of the chunks and every rank returns every row)."""
    from benchmarks import sharding

    cache = settings.cache or FeatureCache(None)
    parts = {
        "kind": "text",
        "weights": encoder.fingerprint,
        "texts": hashlib.sha256(json.dumps(list(texts), ensure_ascii=False).encode()).hexdigest(),
        "count": len(texts),
        "precision": settings.precision,
    }
    cached = sharding.everywhere(cache.load(parts))
    if cached is not None:
        return Features(cached, True, 0)
    chunk = max(settings.batch_size, 256)
    # shortest first, so that each chunk holds texts of about one length (a causal tower runs on the chunk's
    # longest text only: adapters.openclip.trimmed_text_features)
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    mine = sharding.shard(len(texts), chunk)
    outs = []
    with torch.inference_mode(), autocast(settings.precision, encoder.device):
        for start in tqdm(range(mine.start, mine.stop, chunk), desc=desc, unit="batch", disable=None):
            chunk_texts = [texts[i] for i in order[start : min(start + chunk, mine.stop)]]
            tokens = encoder.tokenize(chunk_texts).to(encoder.device)
            outs.append(F.normalize(encoder.encode_text(tokens).float(), dim=-1).cpu())
    in_order = sharding.gather_rows(
        torch.cat(outs) if outs else torch.empty(0, encoder.embed_dim), len(texts)
    )
    tensor = torch.empty_like(in_order)
    tensor[torch.tensor(order, dtype=torch.long)] = in_order
    if sharding.is_main():
        cache.save(parts, tensor)
    return Features(tensor, False, len(texts))


def settings_from_options(
    options: HarnessOptions, precision: str, batch_size: int = 64, decode: str = DEFAULT_DECODE
) -> EncodeSettings:
    """Encode settings from harness options (``batch_size`` else the harness's ``batch_size``, ``workers``,
    ``cache_dir``, ``no_cache``) and the pinned protocol's ``precision`` and ``decode``."""
    cache_dir = None if options.no_cache else (options.cache_dir or default_cache_dir())
    return EncodeSettings(
        precision=precision,
        batch_size=options.batch_size or batch_size,
        workers=options.workers if options.workers is not None else min(4, os.cpu_count() or 1),
        cache=FeatureCache(cache_dir),
        decode=decode,
    )


def pin_encoding(protocol: dict[str, Any], encoder: Encoder) -> dict[str, Any]:
    """Fix the model-dependent knobs of a protocol: the eval transform's description, the resolved precision, and
    ``decode`` when it is not the default ``pil`` (so records of the default path keep their protocol hash)."""
    pinned = dict(protocol)
    pinned["transform"] = describe_transform(encoder.preprocess)
    pinned["precision"] = resolve_precision(protocol.get("precision", "auto"), encoder.device)
    decode = pinned.pop("decode", DEFAULT_DECODE)
    if decode not in DECODES:
        raise UserError(f"decode {decode!r}: expected one of {', '.join(DECODES)}")
    if decode != DEFAULT_DECODE:
        TensorTransform(encoder.preprocess)  # an eval transform without a tensor form stops here, in one line
        pinned["decode"] = decode
    return pinned
