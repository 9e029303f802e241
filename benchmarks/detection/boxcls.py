"""Training-free box classification on ground-truth boxes (CLIPSelf's protocol, split into base and novel).

Every non-crowd box is classified twice against the category text embeddings: by its region embedding from the
dense map (RoIAlign on ``encode_dense`` of the whole image, mean-pooled, renormalised) and by the global embedding
of the image cropped to the box. Metrics are mean per-class top-1/top-5 accuracy (percent).
"""

from __future__ import annotations

import math
import os
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torchvision.transforms.functional as TF
from PIL import Image

from adapters.encoder import Encoder
from adapters.open_vocab import region_embeddings
from benchmarks.readers.images import (
    BadImage,
    bomb_warnings_silenced,
    decode_rgb,
    find_bad_images,
    settle_bad_images,
)
from silc.errors import UserError

SOURCES = ("dense", "crop")
MIN_BOX_SIDE = 1.0  # mmdet's CocoDataset drops boxes thinner than one pixel; so do we


@dataclass
class ImageBoxes:
    """One image's evaluated boxes: ``xyxy`` in original pixels and vocabulary indices."""

    image_id: int
    path: Path
    width: int
    height: int
    boxes: torch.Tensor
    labels: list[int]


@dataclass
class BoxclsCounts:
    """Per-class box totals and top-k hits for each feature source, plus each box's dense top-1 prediction.

    Also each box's own outcome, in classification order: ``box_hits[(source, k)]`` (bool chunks) and
    ``box_images`` (the index of its image in the samples) — the per-sample outcomes the intervals resample."""

    num_classes: int
    totals: torch.Tensor = field(init=False)
    hits: dict[tuple[str, int], torch.Tensor] = field(init=False)
    predictions: dict[int, list[int]] = field(default_factory=dict)
    box_labels: list[torch.Tensor] = field(default_factory=list)
    box_images: list[torch.Tensor] = field(default_factory=list)
    box_hits: dict[tuple[str, int], list[torch.Tensor]] = field(init=False)

    def __post_init__(self) -> None:
        self.totals = torch.zeros(self.num_classes, dtype=torch.long)
        self.hits = {(s, k): torch.zeros(self.num_classes, dtype=torch.long) for s in SOURCES for k in (1, 5)}
        self.box_hits = {key: [] for key in self.hits}

    def add(self, source: str, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Count top-1/top-5 hits of ``logits [N, C]``; returns the top-1 predictions."""
        top = logits.topk(min(5, logits.shape[1]), dim=1).indices
        for k in (1, 5):
            hit = (top[:, :k] == labels[:, None]).any(dim=1)
            self.hits[(source, k)].index_add_(0, labels, hit.long())
            self.box_hits[(source, k)].append(hit)
        return top[:, 0]


def gather_boxes(coco: dict[str, Any], image_dir: Path, vocabulary: Sequence[str]) -> list[ImageBoxes]:
    """The images that hold at least one evaluated box (non-crowd, of a vocabulary category), by image id."""
    name_of = {c["id"]: c["name"] for c in coco["categories"]}
    index = {name: i for i, name in enumerate(vocabulary)}
    images = {img["id"]: img for img in coco["images"]}
    per_image: dict[int, list[tuple[list[float], int]]] = defaultdict(list)
    for ann in coco["annotations"]:
        name = name_of[ann["category_id"]]
        x, y, w, h = ann["bbox"]
        if ann.get("iscrowd", 0) or name not in index or w < MIN_BOX_SIDE or h < MIN_BOX_SIDE:
            continue
        img = images[ann["image_id"]]
        box = [max(x, 0.0), max(y, 0.0), min(x + w, img["width"]), min(y + h, img["height"])]
        per_image[ann["image_id"]].append((box, index[name]))
    out = []
    for image_id in sorted(per_image):
        img, items = images[image_id], per_image[image_id]
        boxes = torch.tensor([b for b, _ in items], dtype=torch.float32)
        out.append(ImageBoxes(image_id, image_dir / img["file_name"], img["width"], img["height"], boxes,
                              [label for _, label in items]))  # fmt: skip
    return out


def without_bad_images(
    samples: list[ImageBoxes], root: Path, skip: bool
) -> tuple[list[ImageBoxes], list[str]]:
    """Every image of ``samples`` decoded before any compute (:func:`find_bad_images`): the bad ones stop the run in
    one line naming them (relative to ``root``), or with ``skip`` leave with their boxes. Returns the samples
    left and the names skipped."""
    found = find_bad_images([s.path for s in samples])
    bad = {os.path.relpath(samples[i].path, root): why for i, why in found.items()}
    samples = [s for i, s in enumerate(samples) if i not in found]
    return samples, settle_bad_images(bad, root, skip, len(samples))


def load_rgb(path: Path) -> Image.Image:
    """An image file as RGB (torchvision's ``pil_loader``: :func:`decode_rgb`); a missing or undecodable file is a
    UserError naming it (the harness checks every image first: :func:`find_bad_images`)."""
    try:
        with bomb_warnings_silenced():
            return decode_rgb(path)
    except BadImage as e:
        raise UserError(f"{path}: cannot read image ({e})") from None


def to_input(image: Image.Image, size: tuple[int, int], encoder: Encoder) -> torch.Tensor:
    """Resize to ``size`` (width, height; bicubic) and normalise with the encoder's mean/std: ``[3, H, W]``."""
    resized = image.resize(size, Image.Resampling.BICUBIC)
    return TF.normalize(TF.to_tensor(resized), list(encoder.mean), list(encoder.std))


def crop_inputs(image: Image.Image, boxes: torch.Tensor, encoder: Encoder) -> torch.Tensor:
    """Each box cropped from ``image`` (outward to whole pixels, at least 1 px) at the encoder's input size."""
    crops = []
    for x0, y0, x1, y1 in boxes.tolist():
        left, top = math.floor(x0), math.floor(y0)
        right, bottom = max(math.ceil(x1), left + 1), max(math.ceil(y1), top + 1)
        crops.append(to_input(image.crop((left, top, right, bottom)), (encoder.image_size,) * 2, encoder))
    return torch.stack(crops)


@torch.no_grad()
def classify_boxes(
    encoder: Encoder,
    samples: list[ImageBoxes],
    text: torch.Tensor,
    dense_mode: str,
    input_size: int,
    roi_size: int,
    batch_size: int,
    progress: Callable[[int], None] | None = None,
    first: int = 0,
) -> BoxclsCounts:
    """Classify every box of ``samples`` by both sources against ``text [C, D]``; returns the counts (``first``:
    the index of ``samples[0]`` in the evaluation's samples, which ``box_images`` count in)."""
    counts = BoxclsCounts(text.shape[0])
    text = text.to(encoder.device)
    for start in range(0, len(samples), batch_size):
        batch = samples[start : start + batch_size]
        images = [load_rgb(s.path) for s in batch]
        inputs = torch.stack([to_input(im, (input_size, input_size), encoder) for im in images])
        dense = encoder.encode_dense(inputs.to(encoder.device), mode=dense_mode)
        stride = input_size / dense.shape[-1]
        scaled = [s.boxes * torch.tensor([input_size / s.width, input_size / s.height] * 2) for s in batch]
        labels = torch.tensor([label for s in batch for label in s.labels])
        counts.totals.index_add_(0, labels, torch.ones_like(labels))
        counts.box_labels.append(labels)
        counts.box_images.append(
            torch.tensor([first + start + i for i, s in enumerate(batch) for _ in s.labels])
        )
        region = region_embeddings(dense, scaled, stride, roi_size)
        top1 = counts.add("dense", (region @ text.T).cpu(), labels)
        crops = torch.cat([crop_inputs(im, s.boxes, encoder) for im, s in zip(images, batch, strict=True)])
        counts.add("crop", (encoder.encode_image(crops.to(encoder.device)).float() @ text.T).cpu(), labels)
        offset = 0
        for s in batch:
            counts.predictions[s.image_id] = top1[offset : offset + len(s.labels)].tolist()
            offset += len(s.labels)
        if progress is not None:
            progress(len(batch))
    return counts


def merged(parts: Sequence[BoxclsCounts]) -> BoxclsCounts:
    """The counts of consecutive runs of samples classified apart (torchrun ranks, in order) as one run over all
    of them: totals and hits added, predictions united, per-box outcomes concatenated in order."""
    out = BoxclsCounts(parts[0].num_classes)
    for part in parts:
        out.totals += part.totals
        for key, hits in part.hits.items():
            out.hits[key] += hits
            out.box_hits[key] += part.box_hits[key]
        out.predictions |= part.predictions
        out.box_labels += part.box_labels
        out.box_images += part.box_images
    return out


def summarize(
    counts: BoxclsCounts, vocabulary: Sequence[str], base: Sequence[str], novel: Sequence[str]
) -> tuple[dict[str, float | None], dict[str, Any]]:
    """Mean per-class accuracy (percent) over the base, novel and all classes that have boxes.

    Keys are ``<source>_top<k>_<subset>``; a subset without boxes gives None. Also returns per-class detail."""
    present = [i for i in range(len(vocabulary)) if counts.totals[i] > 0]
    subsets = {
        "base": [i for i in present if vocabulary[i] in set(base)],
        "novel": [i for i in present if vocabulary[i] in set(novel)],
        "all": present,
    }
    metrics: dict[str, float | None] = {}
    for (source, k), hits in counts.hits.items():
        acc = hits.double() / counts.totals.clamp(min=1).double() * 100
        for subset, idx in subsets.items():
            metrics[f"{source}_top{k}_{subset}"] = float(acc[idx].mean()) if idx else None
    per_class = {
        vocabulary[i]: {
            "boxes": int(counts.totals[i]),
            **{f"{s}_top{k}": float(counts.hits[(s, k)][i] / counts.totals[i] * 100) for s, k in counts.hits},
        }
        for i in present
    }
    return metrics, {"per_class": per_class}


def box_outcomes(
    counts: BoxclsCounts, vocabulary: Sequence[str], base: Sequence[str], novel: Sequence[str]
) -> dict[str, Any]:
    """Per box (classification order): ``box_image`` (sample index), ``box_class`` (vocabulary index) and the
    ``<source>_top<k>`` hits; per vocabulary class ``class_base`` / ``class_novel`` (as :func:`summarize` reads
    the split). numpy arrays for :class:`benchmarks.uncertainty.Outcomes`."""
    import numpy as np

    def cat(chunks: list[torch.Tensor], dtype) -> np.ndarray:
        return torch.cat(chunks).numpy().astype(dtype) if chunks else np.zeros(0, dtype)

    arrays = {"box_image": cat(counts.box_images, np.int32), "box_class": cat(counts.box_labels, np.int32)}
    for (source, k), chunks in counts.box_hits.items():
        arrays[f"{source}_top{k}"] = cat(chunks, bool)
    arrays["class_base"] = np.asarray([name in set(base) for name in vocabulary], dtype=bool)
    arrays["class_novel"] = np.asarray([name in set(novel) for name in vocabulary], dtype=bool)
    return arrays


def metrics_from_counts(arrays: dict[str, Any], counts: Any) -> dict[str, Any]:
    """:func:`summarize`'s metrics for each resample of images (``counts [B, images]``): per class, drawn hits /
    drawn boxes * 100 (integer sums in float64, the same two float operations); per subset, the mean over its
    classes with at least one drawn box, summed by torch's row reduction over the subset's classes with boxes in
    the full set (bit-equal to summarize's ``acc[idx].mean()`` when every image is drawn once; a class not
    drawn adds an exact 0). An undefined mean (no class of the subset drawn) is NaN."""
    import numpy as np

    weights = counts.astype(np.float64)
    n_img = counts.shape[1]
    num_classes = len(arrays["class_base"])
    cell = arrays["box_image"].astype(np.intp) * num_classes + arrays["box_class"].astype(np.intp)

    def per_image(values: np.ndarray | None) -> np.ndarray:  # [images, classes] box counts (of hits)
        flat = np.bincount(cell, weights=values, minlength=n_img * num_classes)
        return flat.reshape(n_img, num_classes).astype(np.float64)

    boxes = per_image(None)
    totals = weights @ boxes  # [B, C]
    in_data = boxes.sum(axis=0) > 0
    subsets = {
        "base": np.flatnonzero(in_data & arrays["class_base"]),
        "novel": np.flatnonzero(in_data & arrays["class_novel"]),
        "all": np.flatnonzero(in_data),
    }
    drawn = (totals > 0).astype(np.float64)
    out: dict[str, Any] = {}
    for source in SOURCES:
        for k in (1, 5):
            hits = weights @ per_image(arrays[f"{source}_top{k}"].astype(np.float64))
            acc = hits / np.maximum(totals, 1.0) * 100
            for subset, idx in subsets.items():
                if not len(idx):
                    out[f"{source}_top{k}_{subset}"] = np.full(len(counts), np.nan)
                    continue
                total = torch.from_numpy(np.ascontiguousarray(acc[:, idx])).sum(dim=1).numpy()
                with np.errstate(invalid="ignore"):
                    out[f"{source}_top{k}_{subset}"] = total / drawn[:, idx].sum(axis=1)
    return out
