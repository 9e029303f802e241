"""AdamW with weight decay only on weight matrices (not on norms, biases, logit scale/bias, head scale)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from silc.heads import LAST_LAYER_SCALE


@dataclass
class OptimConfig:
    """Optimiser and learning-rate schedule (lr warm-up + cosine to ``min_lr``), gradient clipping."""

    lr: float = 5.0e-4
    min_lr: float = 0.0
    weight_decay: float = 0.2
    beta1: float = 0.9
    beta2: float = 0.98
    eps: float = 1.0e-6
    warmup_steps: int = 100
    grad_clip: float | None = 1.0
    freeze_last_layer_steps: int = 0
    # One fused AdamW kernel over all parameters (on CPU the per-tensor loop took ~15 % of a tiny-ViT CLIP step,
    # the fused kernel ~2 %; silc_bench/perf/train_step.py). Rounding differs from the loop, so runs trained
    # with ``fused: false`` (the bundled synth references) are reproduced bit-exactly only with it off.
    fused: bool = True


def is_no_decay(name: str, param: torch.Tensor) -> bool:
    """Norm weights, biases, 1-d tensors, ``logit_scale``/``logit_bias`` and the head's weight-norm scale."""
    return (
        param.ndim < 2  # norm scales/shifts, biases, class token, scalar logit scale/bias
        or name.endswith(".bias")
        or "logit_scale" in name
        or "logit_bias" in name
        or name.endswith(LAST_LAYER_SCALE)
    )


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two groups, decay and no-decay, over the trainable parameters in a fixed (named) order."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if is_no_decay(name, p) else decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.AdamW:
    """AdamW over ``param_groups``; lr is set every step by the schedule."""
    return torch.optim.AdamW(
        param_groups(model, cfg.weight_decay),
        lr=cfg.lr,
        betas=(cfg.beta1, cfg.beta2),
        eps=cfg.eps,
        fused=cfg.fused or None,
    )
