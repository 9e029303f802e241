"""Image–text contrastive term: open_clip's ``ClipLoss`` (softmax InfoNCE) or ``SigLipLoss`` (sigmoid)."""

from __future__ import annotations

import torch
from open_clip.loss import ClipLoss, SigLipLoss
from torch import nn


class ContrastiveLoss(nn.Module):
    """Mean of open_clip's loss over the image views, each paired with the same captions.

    ClipLoss runs with ``local_loss=True, gather_with_grad=True`` so that, under DDP's gradient averaging, the
    update equals the single-process one on the global batch; SigLipLoss exchanges text features across ranks.
    """

    def __init__(self, kind: str, rank: int = 0, world_size: int = 1):
        super().__init__()
        self.kind = kind
        if kind == "clip":
            self.loss = ClipLoss(
                local_loss=True, gather_with_grad=True, cache_labels=True, rank=rank, world_size=world_size
            )
        elif kind == "siglip":
            self.loss = SigLipLoss(rank=rank, world_size=world_size)
        else:
            raise ValueError(f"unknown contrastive loss {kind!r}")

    def forward(
        self,
        image_views: list[torch.Tensor],
        text_features: torch.Tensor,
        logit_scale: torch.Tensor,
        logit_bias: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``image_views``: L2-normalised [B, D] features per view; ``logit_scale`` already exponentiated."""
        total = text_features.new_zeros((), dtype=torch.float32)
        for img in image_views:
            total = total + self.loss(img, text_features, logit_scale, logit_bias)
        return total / len(image_views)
