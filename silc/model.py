"""The SiLC student (an open_clip CLIP plus a DINO head) and its EMA teacher (vision tower + head only)."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from silc.heads import DINOHead, HeadConfig
from silc.kernel import build_model, encode_visual, encode_visual_tokens, load_weights


@dataclass
class ModelConfig:
    """Which open_clip CLIP to train: a built-in name or an open_clip JSON config, optional weights to start from."""

    name: str = "silc-tiny-vit"
    pretrained: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    grad_checkpointing: bool = False
    compile: bool = False


class PatchPredictor(nn.Module):
    """What the masked objective adds to the student: the mask token that replaces masked patch embeddings and the
    patch head (a DINO head of its own over the joint-space patch features)."""

    def __init__(self, width: int, embed_dim: int, head_cfg: HeadConfig):
        super().__init__()
        self.mask_token = nn.Parameter(torch.zeros(width))
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        self.head = DINOHead(embed_dim, head_cfg)


class SiLCModel(nn.Module):
    """The trainable student: ``clip`` (open_clip keys, saved as ``state_dict``), the DINO ``head`` (or None) and,
    for the masked objective, the ``patch`` predictor (or None)."""

    def __init__(self, clip: nn.Module, head: nn.Module | None, patch: PatchPredictor | None = None):
        super().__init__()
        self.clip = clip
        self.head = head
        self.patch = patch

    def forward(
        self,
        global_x: torch.Tensor,
        local_x: torch.Tensor | None = None,
        clean_x: torch.Tensor | None = None,
        text: torch.Tensor | None = None,
        distill: bool = True,
        masked_x: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Image inputs are view-major stacks [V·B, 3, H, W]. Returns image/text features and head outputs;
        ``masked_x`` with ``mask`` ([V·B, h*w] bool) adds ``student_patches``, the patch head's outputs on the view
        with its masked patches replaced by the mask token ([V·B, h*w, K])."""
        out: dict[str, torch.Tensor] = {}
        feats = encode_visual(self.clip.visual, global_x)
        out["global"] = feats
        if clean_x is not None:
            out["clean"] = encode_visual(self.clip.visual, clean_x)
        if text is not None:
            out["text"] = self.clip.encode_text(text)
        if distill and self.head is not None:
            student_in = (
                feats if local_x is None else torch.cat([feats, encode_visual(self.clip.visual, local_x)])
            )
            out["student"] = self.head(student_in)
        if masked_x is not None:
            _, patches = encode_visual_tokens(self.clip.visual, masked_x, mask, self.patch.mask_token)
            out["student_patches"] = self.patch.head(patches)
        return out


class Teacher(nn.Module):
    """EMA copy of the student's vision tower and head; never receives gradients (moves only by ``ema_update``)."""

    def __init__(self, student: SiLCModel):
        super().__init__()
        if student.head is None:
            raise ValueError("a teacher needs a student with a DINO head")
        self.visual = copy.deepcopy(student.clip.visual)
        self.head = copy.deepcopy(student.head)
        self.patch_head = copy.deepcopy(student.patch.head) if student.patch is not None else None
        if hasattr(self.visual, "set_grad_checkpointing"):
            self.visual.set_grad_checkpointing(False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> Teacher:
        """The teacher always stays in eval mode (no patch dropout)."""
        return super().train(False)

    @torch.no_grad()
    def forward(self, global_x: torch.Tensor) -> torch.Tensor:
        return self.head(encode_visual(self.visual, global_x))

    @torch.no_grad()
    def forward_with_patches(self, global_x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(DINO head outputs [V·B, K], patch head outputs [V·B, h*w, K]) of the unmasked views, one forward."""
        pooled, patches = encode_visual_tokens(self.visual, global_x)
        return self.head(pooled), self.patch_head(patches)

    @torch.no_grad()
    def copy_from(self, student: SiLCModel) -> None:
        """Re-initialise from the student (the SigLIP 2 recipe: distillation added late)."""
        for t, s in zip(self._tensors(), _student_tensors(student), strict=True):
            t.copy_(s)

    def paired_parameters(self, student: SiLCModel) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """(teacher parameters, the student's matching ones, detached): the vision tower and the DINO head."""
        params_t = list(self.visual.parameters()) + list(self.head.parameters())
        params_s = list(student.clip.visual.parameters()) + list(student.head.parameters())
        if self.patch_head is not None:
            params_t += list(self.patch_head.parameters())
            params_s += list(student.patch.head.parameters())
        return params_t, [p.detach() for p in params_s]

    @torch.no_grad()
    def ema_update(self, student: SiLCModel, momentum: float) -> None:
        """θ_t ← m·θ_t + (1 − m)·θ_s for parameters; buffers copied."""
        params_t, params_s = self.paired_parameters(student)
        torch._foreach_mul_(params_t, momentum)
        torch._foreach_add_(params_t, params_s, alpha=1.0 - momentum)
        for bt, bs in zip(
            _modules_tensors(self._mirrored()), _modules_tensors(_student_modules(student)), strict=True
        ):
            bt.copy_(bs)

    def _mirrored(self) -> list[nn.Module]:
        return [m for m in (self.visual, self.head, self.patch_head) if m is not None]

    def _tensors(self) -> list[torch.Tensor]:
        return [t for m in self._mirrored() for t in m.state_dict(keep_vars=True).values()]


def _student_modules(student: SiLCModel) -> list[nn.Module]:
    """The student's modules the teacher mirrors, in the teacher's order."""
    patch = [student.patch.head] if student.patch is not None else []
    return [student.clip.visual, student.head, *patch]


def _modules_tensors(modules: list[nn.Module]) -> list[torch.Tensor]:
    return [b for m in modules for b in m.buffers()]


def _student_tensors(student: SiLCModel) -> list[torch.Tensor]:
    return [t for m in _student_modules(student) for t in m.state_dict(keep_vars=True).values()]


def build_student(
    model_cfg: dict, head_cfg: HeadConfig | None, pretrained: str | None = None, masked: bool = False
) -> SiLCModel:
    """Student = open_clip CLIP (optionally from ``pretrained``) + DINO head on the joint-space image embedding
    (+ the patch predictor of the masked objective, built after the head so the head's initialisation is the same
    with and without it)."""
    clip = build_model(model_cfg, "model", allow_coca=False)
    if pretrained:
        load_weights(clip, pretrained, where="model.pretrained")
    head = DINOHead(model_cfg["embed_dim"], head_cfg) if head_cfg is not None else None
    patch = (
        PatchPredictor(clip.visual.conv1.out_channels, model_cfg["embed_dim"], head_cfg) if masked else None
    )
    return SiLCModel(clip, head, patch)
