"""Segmentation test helpers: colour-coded datasets in public layouts and an oracle Encoder that reads them.

A colour-coded image paints every pixel with its ground-truth class's colour (far-apart colours, lossless-enough
JPEG). The oracle recovers the class of each patch from the pixel at the patch centre, so its dense features are
the one-hot ground truth at patch resolution -- but only if the harness hands it the right pixels: resizing, BGR/RGB
order, normalisation, slide-window placement and stitching, and the label shift of ``reduce_zero_label`` all have
to be right for the prediction to match the annotation.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from adapters.encoder import DENSE_MODES, Encoder

# 27 colours at least 128 apart per channel step: robust to JPEG and to bilinear blending inside a region.
COLOURS = np.array(list(itertools.product((0, 128, 255), repeat=3)), dtype=np.uint8)


def save_jpeg(path: Path, rgb: np.ndarray) -> None:
    """Near-lossless JPEG (quality 100, no chroma subsampling)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path, quality=100, subsampling=0)


def save_label(path: Path, labels: np.ndarray) -> None:
    """A uint8 label PNG, as ADE20K's annotations."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(labels.astype(np.uint8)).save(path)


def block_labels(
    rng: np.random.Generator, height: int, width: int, block: int, values: Sequence[int]
) -> np.ndarray:
    """A label map of ``block`` x ``block`` squares, each one value drawn from ``values``."""
    grid = rng.choice(np.asarray(values), size=(-(-height // block), -(-width // block)))
    return np.kron(grid, np.ones((block, block), dtype=grid.dtype))[:height, :width]


def stripe_labels(
    rng: np.random.Generator, height: int, width: int, stripe: int, values: Sequence[int], vertical: bool
) -> np.ndarray:
    """Stripes ``stripe`` pixels wide (vertical: class varies along x), each one value drawn from ``values``.

    Stripes keep the oracle exact: bilinear upsampling of one-hot patch logits flips the argmax exactly at a
    boundary between two classes, whereas at a corner of three or more regions it rounds the corner off.
    """
    if vertical:
        return np.broadcast_to(block_labels(rng, 1, width, stripe, values), (height, width)).copy()
    return np.broadcast_to(block_labels(rng, height, 1, stripe, values), (height, width)).copy()


def colour_of(labels: np.ndarray, colour_index: dict[int, int]) -> np.ndarray:
    """RGB image painting label value v with ``COLOURS[colour_index[v]]``."""
    lut = np.zeros((256, 3), dtype=np.uint8)
    for value, k in colour_index.items():
        lut[value] = COLOURS[k]
    return lut[labels]


def write_ade(
    root: Path, label_maps: dict[str, np.ndarray], colour_index: dict[int, int], split: str = "validation"
) -> Path:
    """``root/ADEChallengeData2016/{images,annotations}/<split>/`` with colour-coded JPEGs and label PNGs."""
    ade = root / "ADEChallengeData2016"
    for stem, labels in label_maps.items():
        save_jpeg(ade / "images" / split / f"{stem}.jpg", colour_of(labels, colour_index))
        save_label(ade / "annotations" / split / f"{stem}.png", labels)
    return ade


def colourise_ade(src: Path, dst: Path, split: str = "validation") -> dict[int, int]:
    """Copy an ADE-layout dataset (annotations, classnames.txt) to ``dst`` with colour-coded images instead of
    its own; returns the label value -> colour index map used."""
    src_ade, dst_ade = src / "ADEChallengeData2016", dst / "ADEChallengeData2016"
    names = (src_ade / "classnames.txt").read_text().splitlines()
    assert len(names) < len(COLOURS), "more classes than oracle colours"
    colour_index = {v: v for v in range(len(names) + 1)}
    for ann in sorted((src_ade / "annotations" / split).glob("*.png")):
        labels = np.asarray(Image.open(ann))
        save_jpeg(dst_ade / "images" / split / f"{ann.stem}.jpg", colour_of(labels, colour_index))
        save_label(dst_ade / "annotations" / split / ann.name, labels)
    (dst_ade / "classnames.txt").write_text((src_ade / "classnames.txt").read_text())
    return colour_index


class ColourOracle(Encoder):
    """Test double: dense feature of a patch = one-hot of the class whose colour is at the patch centre;
    text embedding of a class name (or synonym) = one-hot of that class.

    ``class_colours[c]`` is the colour index of dataset class c (0-based, i.e. after ``reduce_zero_label``).
    """

    dense_modes = DENSE_MODES

    def __init__(
        self,
        class_names: Sequence[Sequence[str]],
        class_colours: Sequence[int],
        patch_size: int = 16,
        mean: tuple[float, float, float] = (0.3, 0.5, 0.7),
        std: tuple[float, float, float] = (0.2, 0.25, 0.3),
    ) -> None:
        self.name = "oracle"
        self.spec = "oracle"
        self.embed_dim = len(class_names)
        self.patch_size = patch_size
        self.image_size = 224
        self.mean, self.std = mean, std
        self.preprocess = None
        self.device = torch.device("cpu")
        self._index = {name: c for c, synonyms in enumerate(class_names) for name in synonyms}
        self._colours = torch.tensor(COLOURS[list(class_colours)], dtype=torch.float32)  # [C, 3]
        self.dense_calls: list[tuple[int, ...]] = []

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.encode_dense(images).mean(dim=(2, 3)), dim=1)

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        return F.one_hot(tokens[:, 0], self.embed_dim).float()

    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        return torch.tensor([[self._index[t]] for t in texts])

    def encode_dense(self, images: torch.Tensor, mode: str = "naive") -> torch.Tensor:
        self.dense_calls.append(tuple(images.shape))
        p = self.patch_size
        mean = torch.tensor(self.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.std).view(1, 3, 1, 1)
        rgb = (images * std + mean) * 255.0
        h, w = images.shape[-2] // p, images.shape[-1] // p
        centres = rgb[:, :, p // 2 :: p, p // 2 :: p][:, :, :h, :w]  # [B, 3, h, w]
        dist = ((centres[:, None] - self._colours.view(1, -1, 3, 1, 1)) ** 2).sum(dim=2)  # [B, C, h, w]
        return F.one_hot(dist.argmin(dim=1), self.embed_dim).permute(0, 3, 1, 2).float()

    def state_dict_for_fingerprint(self) -> dict[str, torch.Tensor]:
        return {"colours": self._colours}


def confusion_metrics(pairs: Sequence[tuple[np.ndarray, np.ndarray]], num_classes: int) -> dict[str, object]:
    """mIoU/aAcc/mAcc (percent) and per-class IoU from a numpy confusion matrix over (pred, gt) pairs; gt 255 is
    ignored; classes absent from both prediction and ground truth are NaN (left out of the means)."""
    conf = np.zeros((num_classes, num_classes), dtype=np.int64)
    for pred, gt in pairs:
        keep = gt != 255
        conf += np.bincount(
            gt[keep].astype(np.int64) * num_classes + pred[keep], minlength=num_classes**2
        ).reshape(num_classes, num_classes)
    tp = np.diag(conf).astype(float)
    gt_area, pred_area = conf.sum(axis=1), conf.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = tp / (gt_area + pred_area - tp)
        acc = tp / gt_area
    return {
        "mIoU": float(np.nanmean(iou) * 100),
        "aAcc": float(tp.sum() / conf.sum() * 100),
        "mAcc": float(np.nanmean(acc) * 100),
        "IoU": iou * 100,
    }
