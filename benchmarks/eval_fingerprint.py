"""Eval-path fingerprint: a few scalars of an encoder's image, text and dense features on the synthetic world, so a
regression catches changes on the evaluation side (eval transform, prompts, dense modes) in seconds.

Every fingerprinted tensor T (flattened to n float64 entries) gives ``<name>/rms`` = ||T|| / sqrt(n) and
``<name>/proj<k>`` = <T, u_k> for ``PROJECTIONS`` fixed unit random directions u_k (a seeded generator). Tensors:

- ``pixels``: the first ``images`` val images of ``imagenet/`` through ``encoder.preprocess`` (the harness's path);
- ``image``: their features, extracted as the zero-shot harness does (``benchmarks.features.encode_images``, fp32);
- ``text``: the prompts of the first ``CLASSES`` class names (the harness's class names and templates), encoded;
- ``dense/<mode>``: ``encode_dense`` of the first two ADE validation images, resized to 1.5 x 1.25 of the native
  grid (so position embeddings are interpolated, on a non-square grid), for every mode in ``dense_modes``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from adapters.encoder import Encoder
from benchmarks.features import EncodeSettings, encode_images, encode_texts
from benchmarks.readers.classification import read_classification
from benchmarks.readers.images import ImageRef
from silc.errors import UserError
from silc.kernel.classifier import class_prompts

PROJECTIONS = 4  # random directions per tensor
DIRECTION_SEED = 0
CLASSES = 4  # class names whose prompts are encoded
DENSE_IMAGES = 2
_SETTINGS = EncodeSettings(precision="fp32", batch_size=64, workers=0, cache=None)
_FINDING_COLUMNS = ["key", "reference", "current", "deviation", "status"]


@dataclass(frozen=True)
class EvalFinding:
    """One compared fingerprint scalar; ``status`` is ok, moved or missing (absent on one side)."""

    key: str
    reference: float | None
    current: float | None
    deviation: float | None
    status: str

    @property
    def failed(self) -> bool:
        return self.status != "ok"


def eval_fingerprint(encoder: Encoder, world_root: Path, images: int = 8) -> dict[str, float]:
    """The fingerprint scalars of ``encoder`` on the synthetic world at ``world_root`` (see the module docstring)."""
    if images < 1:
        raise UserError(f"images: expected at least 1 image to fingerprint, got {images}")
    root = Path(world_root)
    data = read_classification(root / "imagenet", "val")
    refs = data.refs[:images]
    out = _summarise("pixels", _pixels(encoder, refs, root / "imagenet" / "val"))
    out |= _summarise("image", encode_images(encoder, refs, root / "imagenet", _SETTINGS).tensor)
    prompts = class_prompts(data.meta.classnames[:CLASSES], data.meta.template_set())
    out |= _summarise("text", encode_texts(encoder, prompts, _SETTINGS).tensor)
    if encoder.dense_modes:
        x = _dense_inputs(encoder, root / "ADEChallengeData2016" / "images" / "validation")
        for mode in encoder.dense_modes:
            out |= _summarise(f"dense/{mode}", encoder.encode_dense(x, mode))
    return out


def compare_eval_fingerprints(
    reference: dict[str, float], current: dict[str, float], rtol: float
) -> list[EvalFinding]:
    """Every key of either side compared; a key on one side only is ``missing``, a deviation over ``rtol`` ``moved``.

    The deviation of ``<name>/<scalar>`` is |current - reference| / reference ``<name>/rms``. For a projection on a
    random unit direction this estimates the relative L2 change ||dT|| / ||T|| of the tensor, and it bounds it for
    the rms, so ``rtol`` reads as "relative change of the features" (kernel noise between machines is ~1e-6).
    """
    findings = []
    for key in sorted(reference.keys() | current.keys()):
        ref, cur = reference.get(key), current.get(key)
        if ref is None or cur is None:
            findings.append(EvalFinding(key, ref, cur, None, "missing"))
            continue
        deviation = _deviation(ref, cur, reference.get(key.rsplit("/", 1)[0] + "/rms", math.nan))
        findings.append(EvalFinding(key, ref, cur, deviation, "ok" if deviation <= rtol else "moved"))
    return findings


def fingerprint_table(findings: list[EvalFinding]) -> pd.DataFrame:
    """The failed findings as a table (key, reference, current, deviation, status)."""
    rows = [[f.key, f.reference, f.current, f.deviation, f.status] for f in findings if f.failed]
    return pd.DataFrame(rows, columns=_FINDING_COLUMNS)


def _deviation(ref: float, cur: float, scale: float) -> float:
    """|cur - ref| / scale: 0 for equal values, inf without a positive scale, NaN (fails) for NaN inputs."""
    if ref == cur:
        return 0.0
    return abs(cur - ref) / scale if scale > 0 else math.inf


def _summarise(name: str, tensor: torch.Tensor) -> dict[str, float]:
    """``name/rms`` and ``name/proj<k>`` of a tensor, in float64 on the CPU."""
    flat = tensor.detach().to("cpu", torch.float64).reshape(-1)
    generator = torch.Generator().manual_seed(DIRECTION_SEED)
    directions = torch.randn(PROJECTIONS, flat.numel(), generator=generator, dtype=torch.float64)
    directions /= directions.norm(dim=1, keepdim=True)
    out = {f"{name}/rms": float(flat.norm() / math.sqrt(flat.numel()))}
    out |= {f"{name}/proj{k}": float(p) for k, p in enumerate((directions @ flat).tolist())}
    return out


def _pixels(encoder: Encoder, refs: list[ImageRef], folder: Path) -> torch.Tensor:
    """``refs`` through the eval transform; a UserError when none needs resizing (the resize would go unchecked)."""
    opened = [ref.open() for ref in refs]
    if all(min(im.size) == encoder.image_size for im in opened):
        raise UserError(
            f"{folder}: images are {opened[0].width}x{opened[0].height} px, the eval size of {encoder.name}; "
            "the eval fingerprint needs images that the eval transform resizes (e.g. the 'small' world preset)"
        )
    return torch.stack([encoder.preprocess(im) for im in opened])


def _dense_inputs(encoder: Encoder, folder: Path) -> torch.Tensor:
    """The first ADE validation images, resized bicubically to a non-native grid and normalised as the encoder's."""
    files = sorted(folder.glob("*.jpg"))[:DENSE_IMAGES]
    if len(files) < DENSE_IMAGES:
        raise UserError(f"{folder}: needs at least {DENSE_IMAGES} .jpg images for the eval fingerprint")
    assert encoder.patch_size is not None  # dense modes imply patches
    grid = encoder.image_size // encoder.patch_size
    height, width = encoder.patch_size * (grid * 3 // 2), encoder.patch_size * (grid * 5 // 4)
    batch = []
    for path in files:
        with Image.open(path) as im:
            pixels = np.asarray(im.convert("RGB").resize((width, height), Image.Resampling.BICUBIC))
        batch.append(torch.from_numpy(pixels.copy()).permute(2, 0, 1).float() / 255)
    mean, std = (torch.tensor(v).view(3, 1, 1) for v in (encoder.mean, encoder.std))
    return (torch.stack(batch) - mean) / std
