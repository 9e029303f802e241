"""Block masks over a ViT's patch grid for masked self-distillation (BEiT / iBOT / DINOv2 block masking).

A mask is built by placing random rectangles of patches (area at least ``min_patches``, aspect ratio log-uniform in
``aspect``) until the target count is reached or no rectangle adds a patch within 10 tries; rectangles may
overlap, and a rectangle that would overshoot the target is not placed. A fraction ``sample_prob`` of a batch's
images gets a mask; their targets are spread over ``ratio`` (image i of n masked draws its ratio uniformly from
the i-th of n equal sub-ranges, as DINOv2's collate does), the others stay unmasked. All draws come from one
``torch.Generator``, so a step's masks follow from the step's seed (resume stays step-exact).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from silc.errors import UserError

PLACEMENT_TRIES = 10


@dataclass
class MaskConfig:
    """Masking of the student's global view for the masked objective (iBOT/DINOv2 defaults)."""

    ratio: tuple[float, float] = (0.1, 0.5)  # fraction of an image's patches masked, spread over the batch
    sample_prob: float = 0.5  # fraction of the batch's images that are masked
    aspect: tuple[float, float] = (0.3, 1 / 0.3)  # aspect-ratio range of each rectangle (log-uniform)
    min_patches: int = 4  # smallest rectangle area

    def check(self) -> None:
        """A UserError naming the key for values a mask cannot be built from."""
        low, high = self.ratio
        if not 0.0 < low <= high < 1.0:
            raise UserError(f"mask.ratio: expected 0 < low <= high < 1, got {list(self.ratio)}")
        if not 0.0 < self.sample_prob <= 1.0:
            raise UserError(f"mask.sample_prob: expected a value in (0, 1], got {self.sample_prob}")
        if not 0.0 < self.aspect[0] <= self.aspect[1]:
            raise UserError(f"mask.aspect: expected 0 < low <= high, got {list(self.aspect)}")
        if self.min_patches < 1:
            raise UserError(f"mask.min_patches: expected an integer >= 1, got {self.min_patches}")


def _uniform(gen: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=gen, dtype=torch.float64))


def _randint(gen: torch.Generator, low: int, high: int) -> int:
    """An integer in [low, high] (inclusive)."""
    return int(torch.randint(low, high + 1, (), generator=gen))


def block_mask(grid: tuple[int, int], target: int, cfg: MaskConfig, gen: torch.Generator) -> torch.Tensor:
    """``[h, w]`` bool mask with at most ``target`` patches set, in rectangles (see the module docstring)."""
    h, w = grid
    mask = torch.zeros(h, w, dtype=torch.bool)
    count = 0
    log_aspect = (math.log(cfg.aspect[0]), math.log(cfg.aspect[1]))
    while count < target:
        room = target - count
        added = 0
        for _ in range(PLACEMENT_TRIES):
            area = _uniform(gen, cfg.min_patches, max(room, cfg.min_patches))
            aspect = math.exp(_uniform(gen, *log_aspect))
            rh, rw = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
            if 0 < rh < h and 0 < rw < w:
                top, left = _randint(gen, 0, h - rh), _randint(gen, 0, w - rw)
                block = mask[top : top + rh, left : left + rw]
                new = rh * rw - int(block.sum())
                if 0 < new <= room:
                    block.fill_(True)
                    added = new
            if added:
                break
        if not added:
            break
        count += added
    return mask


def batch_masks(batch: int, grid: tuple[int, int], cfg: MaskConfig, gen: torch.Generator) -> torch.Tensor:
    """``[batch, h*w]`` bool: a block mask for ``round(batch * sample_prob)`` randomly chosen images (targets spread
    over ``cfg.ratio``), none for the others."""
    n = grid[0] * grid[1]
    masked = round(batch * cfg.sample_prob)
    masks = torch.zeros(batch, n, dtype=torch.bool)
    if masked == 0:
        return masks
    who = torch.randperm(batch, generator=gen)[:masked]
    edges = torch.linspace(cfg.ratio[0], cfg.ratio[1], masked + 1, dtype=torch.float64).tolist()
    for i, image in enumerate(who.tolist()):
        target = round(n * _uniform(gen, edges[i], edges[i + 1]))
        masks[image] = block_mask(grid, target, cfg, gen).flatten()
    return masks
