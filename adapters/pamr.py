"""PAMR, pixel-adaptive mask refinement (Araslanov & Roth, CVPR 2020), of dense logits guided by the image.

As NACLIP's and TCL's released code apply it to zero-shot segmentation (their ``pamr.py``, from the authors'
1-stage-wseg; NACLIP: 10 iterations, dilations (8, 16), on the logits upsampled to the image's original size with
the normalised image resized there, before the softmax and argmax). For an image x ``[K, H, W]`` and logits m
``[C, H, W]`` of the same size, and dilations D:

- neighbours of a pixel p: for each d in D, the 8 pixels at offsets (dy, dx) in {-d, 0, d}^2 other than (0, 0),
  coordinates clamped to the image (replicate padding): 8 |D| in all, p itself never among them;
- ``std_k(p)``: the standard deviation (unbiased: n - 1) of channel k over the 9 |D| pixels of the 3 x 3 dilated
  windows around p, every d together (p counted once per dilation);
- affinities ``a(p, n) = softmax over the neighbours n of -mean_k(|x_k(p) - x_k(n)| / (1e-8 + 0.1 std_k(p)))``;
- ``iterations`` times, every channel: ``m(p) <- sum over the neighbours n of a(p, n) m(n)``.

The affinities depend on the image only and each step is a convex combination per channel, so the refinement is
linear in the logits: scaling them (a logit scale) before or after gives the same refined logits.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from silc.errors import UserError

NACLIP_ITERATIONS = 10
NACLIP_DILATIONS = (8, 16)


def check_pamr(iterations: int, dilations: Sequence[int]) -> tuple[int, tuple[int, ...]]:
    """``(iterations, dilations)`` when they are usable (a positive integer; a non-empty list of positive
    integers); a one-line UserError naming the knob otherwise."""
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
        raise UserError(f"pamr_iterations: expected a positive integer, got {iterations!r}")
    if (
        isinstance(dilations, str | bytes)
        or not isinstance(dilations, Sequence)
        or not dilations
        or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in dilations)
    ):
        raise UserError(f"pamr_dilations: expected a non-empty list of positive integers, got {dilations!r}")
    return iterations, tuple(dilations)


def _offsets(dilations: Sequence[int], centre: bool) -> list[tuple[int, int]]:
    """The (dy, dx) of the 3 x 3 dilated windows, each d in turn; without ``centre``, (0, 0) left out."""
    steps = (-1, 0, 1)
    return [
        (dy * d, dx * d) for d in dilations for dy in steps for dx in steps if centre or (dy, dx) != (0, 0)
    ]


def _shifted(padded: torch.Tensor, pad: int, size: tuple[int, int], offset: tuple[int, int]) -> torch.Tensor:
    """The view of a ``pad``-replicate-padded ``[..., H, W]`` tensor holding, at p, the pixel at p + offset."""
    (h, w), (dy, dx) = size, offset
    return padded[..., pad + dy : pad + dy + h, pad + dx : pad + dx + w]


def affinities(image: torch.Tensor, dilations: Sequence[int]) -> torch.Tensor:
    """``[8 |D|, H, W]``: the affinities a(p, n) of each pixel to its neighbours (the module docstring's)."""
    pad, size = max(dilations), tuple(image.shape[-2:])
    padded = F.pad(image, (pad,) * 4, mode="replicate")
    windows = torch.stack([_shifted(padded, pad, size, o) for o in _offsets(dilations, centre=True)])
    std = windows.std(dim=0)  # [K, H, W]
    neighbours = torch.stack([_shifted(padded, pad, size, o) for o in _offsets(dilations, centre=False)])
    return torch.softmax(-((image - neighbours).abs() / (1e-8 + 0.1 * std)).mean(dim=1), dim=0)


def pamr(
    image: torch.Tensor, logits: torch.Tensor, iterations: int, dilations: Sequence[int]
) -> torch.Tensor:
    """``[C, H, W]`` logits refined by PAMR guided by ``image`` ``[K, H, W]`` (same H x W), in their dtype."""
    iterations, dilations = check_pamr(iterations, dilations)
    if image.shape[-2:] != logits.shape[-2:]:
        raise ValueError(f"pamr: image {tuple(image.shape)} and logits {tuple(logits.shape)} differ in size")
    weights = affinities(image.to(logits.dtype), dilations)
    pad, size, offsets = max(dilations), tuple(logits.shape[-2:]), _offsets(dilations, centre=False)
    for _ in range(iterations):
        padded = F.pad(logits, (pad,) * 4, mode="replicate")
        refined = torch.zeros_like(logits)
        for weight, offset in zip(weights, offsets, strict=True):
            refined.addcmul_(weight, _shifted(padded, pad, size, offset))
        logits = refined
    return logits
