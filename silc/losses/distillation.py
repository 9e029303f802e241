"""DINO self-distillation: cross-entropy from the teacher's centred, sharpened softmax to the student's."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from silc.losses.centering import CenteredDistillation


class DINOLoss(CenteredDistillation):
    """Mean over (teacher view i, student view v ≠ i) of  −Σ_k softmax((t_i − c)/τ_t)_k · log softmax(s_v/τ_s)_k.

    Student views are ordered globals first (view i of the student is the same crop as teacher view i, hence
    skipped), then locals. The centre ``c`` is an EMA (momentum ``center_momentum``) of the teacher outputs'
    batch mean, all-reduced across ranks, updated after the loss is computed.
    """

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
        targets = self.teacher_targets(teacher_out, teacher_temp).chunk(n_teacher_views)
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
