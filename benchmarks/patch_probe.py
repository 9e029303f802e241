"""A fast dense probe that needs no mmseg: a linear classifier on frozen patch features, in plain torch.

For training-time evaluation (and protocol ``linear-fast`` of ``seg-ade20k``). Each image of an ADE20K-layout split
is resized as mmseg's ``Resize(scale=(max_long_side, short_side), keep_ratio=True)`` sizes it (PIL bilinear),
normalised with the encoder's mean/std, zero-padded to whole patches and encoded once (``encode_dense``). Labels
follow ``reduce_zero_label`` (0 is ignored, k becomes k-1). The target of a training patch is the most frequent
valid label among its pixels (of the label map resized nearest to the image). The head is BatchNorm + a linear
layer (the ``BNHead`` of the mmseg probe), trained full-batch with AdamW for a fixed number of steps from a fixed
seed. A validation image's patch logits are upsampled bilinearly to the padded image, cropped, resized to the
label map and arg-maxed; its per-class areas are IoUMetric's (:func:`benchmarks.seg_areas.image_areas`), so
the metrics come from the same area sums as every seg-ade20k record.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from adapters.encoder import Encoder
from benchmarks.readers.images import bomb_warnings_silenced, decode_label_map, decode_rgb
from benchmarks.seg_areas import AREA_KEYS, image_areas

IGNORE = 255


@dataclass(frozen=True)
class ProbeSettings:
    """What fixes the probe's number (all recorded in the protocol)."""

    short_side: int
    max_long_side: int
    dense_mode: str
    steps: int
    lr: float
    weight_decay: float
    seed: int


@dataclass
class ProbeResult:
    """The validation images (paths relative to the dataset root), their per-image areas (``AREA_KEYS`` ->
    int64 ``[n, C]``), the number of training patches, the last training loss and the seconds spent."""

    units: list[str]
    areas: dict[str, np.ndarray]
    train_patches: int
    final_loss: float
    timing: dict[str, float]


def reduce_zero_label(labels: np.ndarray) -> torch.Tensor:
    """mmseg's ``reduce_zero_label``: 0 becomes the ignore index, every other value v becomes v - 1 (255 stays)."""
    out = torch.from_numpy(labels.astype(np.int64))
    return torch.where((out == 0) | (out == IGNORE), IGNORE, out - 1)


def scaled_size(height: int, width: int, short_side: int, max_long_side: int) -> tuple[int, int]:
    """(h, w) of mmcv's keep-ratio rescale to ``scale=(max_long_side, short_side)``."""
    factor = min(max_long_side / max(height, width), short_side / min(height, width))
    return int(height * factor + 0.5), int(width * factor + 0.5)


def _image(path: Path, encoder: Encoder, settings: ProbeSettings) -> tuple[torch.Tensor, tuple[int, int]]:
    """``[3, H, W]`` normalised pixels padded to whole patches, and the resized (unpadded) size."""
    with bomb_warnings_silenced():
        image = decode_rgb(path)
    h, w = scaled_size(image.height, image.width, settings.short_side, settings.max_long_side)
    pixels = torch.from_numpy(
        np.asarray(image.resize((w, h), resample=2), dtype=np.float32) / 255.0
    )  # BILINEAR
    mean, std = torch.tensor(encoder.mean).view(3, 1, 1), torch.tensor(encoder.std).view(3, 1, 1)
    x = (pixels.permute(2, 0, 1) - mean) / std
    p = encoder.patch_size
    return F.pad(x, (0, math.ceil(w / p) * p - w, 0, math.ceil(h / p) * p - h)), (h, w)


def _labels(path: Path) -> torch.Tensor:
    with bomb_warnings_silenced():
        return reduce_zero_label(decode_label_map(path))


def patch_targets(
    labels: torch.Tensor, size: tuple[int, int], padded: tuple[int, int], patch: int, classes: int
) -> torch.Tensor:
    """``[h/p, w/p]`` targets: per patch, the most frequent valid label of ``labels`` resized (nearest) to
    ``size`` and padded to ``padded``; the ignore index where a patch has no valid pixel."""
    resized = F.interpolate(labels[None, None].float(), size=size, mode="nearest")[0, 0].long()
    grid = F.pad(resized, (0, padded[1] - size[1], 0, padded[0] - size[0]), value=IGNORE)
    grid = torch.where(grid == IGNORE, classes, grid)
    counts = F.one_hot(grid, classes + 1)[..., :classes].float()  # [H, W, C]
    gh, gw = padded[0] // patch, padded[1] // patch
    counts = counts.view(gh, patch, gw, patch, classes).sum(dim=(1, 3))
    return torch.where(counts.sum(dim=-1) > 0, counts.argmax(dim=-1), IGNORE)


def _encode(encoder: Encoder, images: list[torch.Tensor], mode: str, batch: int = 32) -> list[torch.Tensor]:
    """``[D, h/p, w/p]`` float32 features of each image (images of one size share forwards)."""
    out: list[torch.Tensor | None] = [None] * len(images)
    by_size: dict[tuple[int, ...], list[int]] = {}
    for i, x in enumerate(images):
        by_size.setdefault(tuple(x.shape), []).append(i)
    with torch.inference_mode():
        for members in by_size.values():
            for s in range(0, len(members), batch):
                chunk = members[s : s + batch]
                x = torch.stack([images[i] for i in chunk]).to(encoder.device)
                feats = encoder.encode_dense(x, mode).float().cpu()
                for i, f in zip(chunk, feats, strict=True):
                    out[i] = f
    return out  # type: ignore[return-value]


def train_head(
    features: torch.Tensor, targets: torch.Tensor, classes: int, settings: ProbeSettings
) -> tuple[nn.Module, float]:
    """BatchNorm + linear head trained full-batch (cross-entropy, AdamW) on ``[N, D]`` patch features; returns the
    head in eval mode and the last loss. The global RNG is left as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.seed)
        head = nn.Sequential(nn.BatchNorm1d(features.shape[1]), nn.Linear(features.shape[1], classes))
        optimizer = torch.optim.AdamW(head.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
        loss = torch.zeros(())
        for _ in range(settings.steps):
            optimizer.zero_grad()
            loss = F.cross_entropy(head(features), targets)
            loss.backward()
            optimizer.step()
    return head.eval(), float(loss.detach())


def patch_probe(
    encoder: Encoder,
    root: Path,
    classes: int,
    settings: ProbeSettings,
    train_split: str,
    train: list[str],
    val_split: str,
    val: list[str],
) -> ProbeResult:
    """Train the probe on the ``train`` images of ``train_split`` and score the ``val`` images of ``val_split`` of an
    ADE20K-layout ``root`` (names without suffix, under ``images/<split>/<name>.jpg`` and
    ``annotations/<split>/<name>.png``) with ``classes`` classes after ``reduce_zero_label``."""
    timing: dict[str, float] = {}
    start = time.perf_counter()
    patch = int(encoder.patch_size)
    feats, targets = [], []
    loaded = [_image(root / "images" / train_split / f"{n}.jpg", encoder, settings) for n in train]
    for (x, size), f, name in zip(
        loaded, _encode(encoder, [x for x, _ in loaded], settings.dense_mode), train, strict=True
    ):
        labels = _labels(root / "annotations" / train_split / f"{name}.png")
        t = patch_targets(labels, size, tuple(x.shape[-2:]), patch, classes).flatten()
        keep = t != IGNORE
        feats.append(f.flatten(1).T[keep])
        targets.append(t[keep])
    timing["train_features_s"] = time.perf_counter() - start
    start = time.perf_counter()
    head, loss = train_head(torch.cat(feats), torch.cat(targets), classes, settings)
    timing["train_s"] = time.perf_counter() - start
    start = time.perf_counter()
    loaded = [_image(root / "images" / val_split / f"{n}.jpg", encoder, settings) for n in val]
    per_image = []
    with torch.inference_mode():
        for (x, (h, w)), f, name in zip(
            loaded, _encode(encoder, [x for x, _ in loaded], settings.dense_mode), val, strict=True
        ):
            labels = _labels(root / "annotations" / val_split / f"{name}.png")
            d, gh, gw = f.shape
            logits = head(f.flatten(1).T).T.reshape(1, classes, gh, gw)
            logits = F.interpolate(logits, size=tuple(x.shape[-2:]), mode="bilinear", align_corners=False)[
                ..., :h, :w
            ]
            logits = F.interpolate(logits, size=tuple(labels.shape), mode="bilinear", align_corners=False)
            per_image.append(image_areas(logits[0].argmax(dim=0), labels, classes, IGNORE))
    timing["predict_s"] = time.perf_counter() - start
    areas = {key: np.stack([a[key] for a in per_image]).astype(np.int64) for key in AREA_KEYS}
    units = [f"images/{val_split}/{n}.jpg" for n in val]
    return ProbeResult(units, areas, int(sum(len(t) for t in targets)), loss, timing)
