"""The SiLC student (an open_clip CLIP plus a DINO head) and its EMA teacher (vision tower + head only)."""

from __future__ import annotations

import copy
import difflib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import open_clip
import torch
from open_clip.model import CLIP, CustomTextCLIP
from open_clip.transformer import VisionTransformer
from torch import nn
from torch.nn import functional as F

from silc.errors import UserError
from silc.heads import DINOHead, HeadConfig


@dataclass
class ModelConfig:
    """Which open_clip CLIP to train: a built-in name or an open_clip JSON config, optional weights to start from."""

    name: str = "silc-tiny-vit"
    pretrained: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    grad_checkpointing: bool = False
    compile: bool = False


BUNDLED_CONFIGS = Path(__file__).resolve().parent / "model_configs"


def resolve_model_config(cfg: ModelConfig) -> tuple[str, dict]:
    """(model name, open_clip model-config dict) from a JSON path, a bundled config or an open_clip name."""
    path = Path(cfg.name)
    if path.suffix == ".json":
        if not path.is_file():
            raise UserError(f"model.name: open_clip JSON config {path} not found")
        try:
            model_cfg = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise UserError(f"model.name: {path} is not valid JSON ({e})") from None
        name = path.stem
    elif (BUNDLED_CONFIGS / f"{cfg.name}.json").is_file():
        name, model_cfg = cfg.name, json.loads((BUNDLED_CONFIGS / f"{cfg.name}.json").read_text())
    else:
        name, model_cfg = cfg.name, open_clip.get_model_config(cfg.name)
        if model_cfg is None:
            known = open_clip.list_models() + [p.stem for p in BUNDLED_CONFIGS.glob("*.json")]
            close = difflib.get_close_matches(cfg.name, known, n=1)
            hint = f" (closest: {close[0]})" if close else ""
            raise UserError(f"model.name: unknown open_clip model {cfg.name!r}{hint}")
    model_cfg = model_cfg.get("model_cfg", model_cfg)  # accept open_clip_config.json (HF/local-dir form) too
    if not all(k in model_cfg for k in ("embed_dim", "vision_cfg", "text_cfg")):
        raise UserError(f"model.name: {cfg.name} lacks embed_dim/vision_cfg/text_cfg")
    return name, _deep_merge(model_cfg, cfg.overrides)


def _deep_merge(base: dict, extra: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in extra.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def build_clip(model_cfg: dict) -> nn.Module:
    """Instantiate the open_clip CLIP (or CustomTextCLIP) class for ``model_cfg`` exactly as open_clip does."""
    cfg = copy.deepcopy(model_cfg)
    custom_text = cfg.pop("custom_text", False) or "hf_model_name" in cfg.get("text_cfg", {})
    if "multimodal_cfg" in cfg:
        raise UserError("model.name: CoCa models (multimodal_cfg) are not supported by the SiLC trainer")
    try:
        return (CustomTextCLIP if custom_text else CLIP)(**cfg)
    except TypeError as e:
        raise UserError(f"model: invalid open_clip model config ({e})") from None


def load_pretrained(clip: nn.Module, path: str) -> None:
    """Initialise ``clip`` from an open_clip weights file (.pt/.bin/.safetensors, or a SiLC checkpoint)."""
    if not Path(path).is_file():
        raise UserError(f"model.pretrained: weights file {path} not found")
    try:
        open_clip.load_state_dict(path, weights_only=True)
    except Exception as e:  # torch/safetensors raise many types for files that are not weights
        raise UserError(
            f"model.pretrained: {path} is not a readable weights file ({type(e).__name__})"
        ) from None
    try:
        open_clip.load_checkpoint(clip, path, strict=True, weights_only=True)
    except (RuntimeError, KeyError, ValueError) as e:
        raise UserError(
            f"model.pretrained: {path} does not fit this model ({str(e).splitlines()[0]})"
        ) from None


def make_tokenizer(model_cfg: dict):
    """open_clip's CLIP BPE tokenizer at the model's context length (HF tokenizers come from open_clip too)."""
    text_cfg = model_cfg["text_cfg"]
    ctx = text_cfg.get("context_length", 77)
    if "hf_tokenizer_name" in text_cfg:
        return open_clip.tokenizer.HFTokenizer(text_cfg["hf_tokenizer_name"], context_length=ctx)
    return open_clip.tokenizer.SimpleTokenizer(context_length=ctx)


def encode_visual(visual: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The vision tower's pooled, projected output for any input size (ViT position embeddings interpolated)."""
    if not isinstance(visual, VisionTransformer) or tuple(x.shape[-2:]) == tuple(visual.image_size):
        return visual(x)
    x = visual.conv1(x)
    grid = tuple(x.shape[-2:])
    x = x.flatten(2).transpose(1, 2)
    cls = visual.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
    x = torch.cat([cls, x], dim=1) + _resize_pos_embed(
        visual.positional_embedding, visual.grid_size, grid
    ).to(x.dtype)
    x = visual.ln_pre(visual.patch_dropout(x))
    x = visual.transformer(x)
    pooled, _ = visual._pool(x)
    return pooled @ visual.proj if visual.proj is not None else pooled


def _resize_pos_embed(pos: torch.Tensor, old: tuple[int, int], new: tuple[int, int]) -> torch.Tensor:
    """Bicubic interpolation of the patch position embeddings from grid ``old`` to ``new`` (class token kept)."""
    cls_pos, patch_pos = pos[:1], pos[1:]
    patch_pos = patch_pos.reshape(1, old[0], old[1], -1).permute(0, 3, 1, 2)
    patch_pos = F.interpolate(patch_pos, size=new, mode="bicubic", align_corners=False)
    return torch.cat([cls_pos, patch_pos.permute(0, 2, 3, 1).reshape(new[0] * new[1], -1)], dim=0)


class SiLCModel(nn.Module):
    """The trainable student: ``clip`` (open_clip keys, saved as ``state_dict``) and the DINO ``head`` (or None)."""

    def __init__(self, clip: nn.Module, head: nn.Module | None):
        super().__init__()
        self.clip = clip
        self.head = head

    def forward(
        self,
        global_x: torch.Tensor,
        local_x: torch.Tensor | None = None,
        clean_x: torch.Tensor | None = None,
        text: torch.Tensor | None = None,
        distill: bool = True,
    ) -> dict[str, torch.Tensor]:
        """Image inputs are view-major stacks [V·B, 3, H, W]. Returns image/text features and head outputs."""
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
        return out


class Teacher(nn.Module):
    """EMA copy of the student's vision tower and head; never receives gradients (moves only by ``ema_update``)."""

    def __init__(self, student: SiLCModel):
        super().__init__()
        if student.head is None:
            raise ValueError("a teacher needs a student with a DINO head")
        self.visual = copy.deepcopy(student.clip.visual)
        self.head = copy.deepcopy(student.head)
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
    def copy_from(self, student: SiLCModel) -> None:
        """Re-initialise from the student (the SigLIP 2 recipe: distillation added late)."""
        for t, s in zip(self._tensors(), _student_tensors(student), strict=True):
            t.copy_(s)

    @torch.no_grad()
    def ema_update(self, student: SiLCModel, momentum: float) -> None:
        """θ_t ← m·θ_t + (1 − m)·θ_s for parameters; buffers copied."""
        params_t = list(self.visual.parameters()) + list(self.head.parameters())
        params_s = list(student.clip.visual.parameters()) + list(student.head.parameters())
        torch._foreach_mul_(params_t, momentum)
        torch._foreach_add_(params_t, [p.detach() for p in params_s], alpha=1.0 - momentum)
        for bt, bs in zip(
            list(self.visual.buffers()) + list(self.head.buffers()),
            list(student.clip.visual.buffers()) + list(student.head.buffers()),
            strict=True,
        ):
            bt.copy_(bs)

    def _tensors(self) -> list[torch.Tensor]:
        return list(self.visual.state_dict(keep_vars=True).values()) + list(
            self.head.state_dict(keep_vars=True).values()
        )


def _student_tensors(student: SiLCModel) -> list[torch.Tensor]:
    return list(student.clip.visual.state_dict(keep_vars=True).values()) + list(
        student.head.state_dict(keep_vars=True).values()
    )


def build_student(model_cfg: dict, head_cfg: HeadConfig | None, pretrained: str | None = None) -> SiLCModel:
    """Student = open_clip CLIP (optionally from ``pretrained``) + DINO head on the joint-space image embedding."""
    clip = build_clip(model_cfg)
    if pretrained:
        load_pretrained(clip, pretrained)
    head = DINOHead(model_cfg["embed_dim"], head_cfg) if head_cfg is not None else None
    return SiLCModel(clip, head)
