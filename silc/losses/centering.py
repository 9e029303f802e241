"""The teacher side shared by the self-distillation losses (DINO's and the masked patch one): centred, sharpened
teacher targets and the EMA centre they subtract, each loss keeping a centre of its own."""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn
from torch.nn import functional as F


class CenteredDistillation(nn.Module):
    """Holds the centre ``c`` (buffer ``center``, [1, K]) and the student temperature τ_s of a DINO-style loss."""

    def __init__(self, out_dim: int, student_temp: float = 0.1, center_momentum: float = 0.9):
        super().__init__()
        self.student_temp = student_temp
        self.center_momentum = center_momentum
        self.register_buffer("center", torch.zeros(1, out_dim))

    def teacher_targets(self, teacher_out: torch.Tensor, teacher_temp: float) -> torch.Tensor:
        """softmax((t − c)/τ_t) over the last dimension of the (detached, float32) teacher outputs."""
        return F.softmax((teacher_out - self.center) / teacher_temp, dim=-1)

    @torch.no_grad()
    def update_center(self, teacher_rows: torch.Tensor) -> None:
        """c ← m·c + (1 − m)·mean of the teacher output rows ``[M, K]`` over the global batch (all ranks)."""
        batch_sum = teacher_rows.sum(dim=0, keepdim=True)
        count = torch.tensor(float(teacher_rows.shape[0]), device=teacher_rows.device)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(batch_sum)
            dist.all_reduce(count)
        self.center.mul_(self.center_momentum).add_(batch_sum / count, alpha=1 - self.center_momentum)
