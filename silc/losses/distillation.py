"""DINO self-distillation: cross-entropy from the teacher's centred, sharpened softmax to the student's."""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn
from torch.nn import functional as F


class DINOLoss(nn.Module):
    """Mean over (teacher view i, student view v ≠ i) of  −Σ_k softmax((t_i − c)/τ_t)_k · log softmax(s_v/τ_s)_k.

    Student views are ordered globals first (view i of the student is the same crop as teacher view i, hence
    skipped), then locals. The centre ``c`` is an EMA (momentum ``center_momentum``) of the teacher outputs'
    batch mean, all-reduced across ranks, updated after the loss is computed.
    """

    def __init__(self, out_dim: int, student_temp: float = 0.1, center_momentum: float = 0.9):
        super().__init__()
        self.student_temp = student_temp
        self.center_momentum = center_momentum
        self.register_buffer("center", torch.zeros(1, out_dim))

    def forward(
        self,
        student_out: torch.Tensor,
        teacher_out: torch.Tensor,
        n_student_views: int,
        n_teacher_views: int,
        teacher_temp: float,
        update_center: bool = True,
    ) -> torch.Tensor:
        """``student_out``: [S·B, K] view-major; ``teacher_out``: [G·B, K] view-major (no gradient needed)."""
        student = (student_out.float() / self.student_temp).chunk(n_student_views)
        teacher_out = teacher_out.detach().float()
        targets = F.softmax((teacher_out - self.center) / teacher_temp, dim=-1).chunk(n_teacher_views)
        total = student_out.new_zeros((), dtype=torch.float32)
        pairs = 0
        for i, q in enumerate(targets):
            for v, s in enumerate(student):
                if v == i:
                    continue
                total = total + torch.sum(-q * F.log_softmax(s, dim=-1), dim=-1).mean()
                pairs += 1
        if pairs == 0:
            raise ValueError("DINO loss needs at least one (teacher view, other student view) pair")
        if update_center:
            self.update_center(teacher_out)
        return total / pairs

    @torch.no_grad()
    def update_center(self, teacher_out: torch.Tensor) -> None:
        """c ← m·c + (1 − m)·mean of the teacher outputs over the global batch (all ranks)."""
        batch_sum = teacher_out.sum(dim=0, keepdim=True)
        count = torch.tensor(float(teacher_out.shape[0]), device=teacher_out.device)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(batch_sum)
            dist.all_reduce(count)
        self.center.mul_(self.center_momentum).add_(batch_sum / count, alpha=1 - self.center_momentum)
