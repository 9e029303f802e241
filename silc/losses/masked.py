"""Masked patch self-distillation (iBOT; the second term SigLIP 2 and TIPS add): at the patches masked in the
student's view, cross-entropy from the teacher's centred, sharpened softmax over its patch outputs of the unmasked
view to the student's log-softmax, with a centre of its own."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from silc.losses.centering import CenteredDistillation


class MaskedPatchLoss(CenteredDistillation):
    """Mean over masked images of (mean over the image's masked patches p of
    −Σ_k softmax((t_p − c)/τ_t)_k · log softmax(s_p/τ_s)_k); 0 when no patch is masked.

    The centre ``c`` is an EMA (momentum ``center_momentum``) of the teacher's patch outputs' mean over every patch
    of every image (all ranks), updated after the loss is computed, as iBOT's patch centre.
    """

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
        targets = self.teacher_targets(teacher_patches, teacher_temp)
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
            self.update_center(teacher_patches.flatten(0, 1))
        return loss
