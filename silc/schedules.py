"""Step-indexed schedules (pure functions of the step, so resuming needs only the step count)."""

from __future__ import annotations

import math


def lr_at(step: int, base_lr: float, warmup_steps: int, total_steps: int, min_lr: float = 0.0) -> float:
    """Linear warm-up to ``base_lr`` ((step+1)/warmup, as open_clip), then cosine decay to ``min_lr``."""
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    span = max(total_steps - warmup_steps, 1)
    progress = min((step - warmup_steps) / span, 1.0)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (base_lr - min_lr)


def momentum_at(step: int, schedule: str, base: float, final: float, total_steps: int) -> float:
    """EMA momentum: ``constant`` = base; ``cosine`` = final − (final − base)·(1 + cos(π·step/total))/2 (DINO)."""
    if schedule == "constant":
        return base
    if schedule == "cosine":
        progress = min(step / max(total_steps, 1), 1.0)
        return final - (final - base) * (1.0 + math.cos(math.pi * progress)) / 2.0
    raise ValueError(f"unknown momentum schedule {schedule!r}")


def teacher_temp_at(step: int, start: float, end: float, warmup_steps: int) -> float:
    """Teacher temperature: linear from ``start`` at step 0 to ``end`` at ``warmup_steps``, then constant."""
    if warmup_steps <= 0 or step >= warmup_steps:
        return end
    return start + (end - start) * step / warmup_steps
