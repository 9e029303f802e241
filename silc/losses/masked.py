"""Masked patch self-distillation (iBOT; the second term SigLIP 2 and TIPS add): at the patches masked in the
student's view, cross-entropy from the teacher's centred, sharpened softmax over its patch outputs of the unmasked
view to the student's log-softmax, with a centre of its own."""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn
from torch.nn import functional as F


class MaskedPatchLoss(nn.Module):
    """Mean over masked images of (mean over the image's masked patches p of
    −Σ_k softmax((t_p − c)/τ_t)_k · log softmax(s_p/τ_s)_k); 0 when no patch is masked.

    The centre ``c`` is an EMA (momentum ``center_momentum``) of the teacher's patch outputs' mean over every patch
    of every image (all ranks), updated after the loss is computed, as iBOT's patch centre.
    """

    def __init__(self, out_dim: int, student_temp: float = 0.1, center_momentum: float = 0.9):
        super().__init__()
        self.student_temp = student_temp
        self.center_momentum = center_momentum
        self.register_buffer("center", torch.zeros(1, out_dim))

    def forward(
        self,
        student_patches: torch.Tensor,
        teacher_patches: torch.Tensor,
        mask: torch.Tensor,
        teacher_temp: float,
        update_center: bool = True,
    ) -> torch.Tensor:
        """``student_patches``/``teacher_patches``: [B, N, K]; ``mask``: [B, N] bool (True: masked for the student)."""
        teacher_patches = teacher_patches.detach().float()
        targets = F.softmax((teacher_patches - self.center) / teacher_temp, dim=-1)
        log_probs = F.log_softmax(student_patches.float() / self.student_temp, dim=-1)
        per_patch = torch.sum(-targets * log_probs, dim=-1)  # [B, N]
        weights = mask.float()
        counts = weights.sum(dim=1)
        has = counts > 0
        if has.any():
            per_image = (per_patch * weights).sum(dim=1)[has] / counts[has]
            loss = per_image.mean()
        else:
            loss = per_patch.sum() * 0.0  # keeps the graph (and DDP's gradient hooks) without a signal
        if update_center:
            self.update_center(teacher_patches)
        return loss

    @torch.no_grad()
    def update_center(self, teacher_patches: torch.Tensor) -> None:
        """c ← m·c + (1 − m)·mean of the teacher's patch outputs over all patches of the global batch."""
        flat = teacher_patches.flatten(0, 1)
        batch_sum = flat.sum(dim=0, keepdim=True)
        count = torch.tensor(float(flat.shape[0]), device=flat.device)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(batch_sum)
            dist.all_reduce(count)
        self.center.mul_(self.center_momentum).add_(batch_sum / count, alpha=1 - self.center_momentum)
