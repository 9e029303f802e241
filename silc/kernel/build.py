"""Instantiate the open_clip model class a config asks for, and load weights files into it."""

from __future__ import annotations

import copy
from pathlib import Path

import open_clip
import torch
from torch import nn

from silc.errors import UserError, first_line, torch_load_failure


def build_model(model_cfg: dict, source: str, *, allow_coca: bool = True) -> nn.Module:
    """The open_clip model for ``model_cfg``, randomly initialised, picked as ``open_clip.create_model`` does:
    ``CustomTextCLIP`` for ``custom_text`` or Hugging Face text towers (``CoCa`` when it also has a
    ``multimodal_cfg`` and ``allow_coca``), else ``CLIP``.

    Hugging Face text towers are built with ``hf_model_pretrained=False``: nothing is ever downloaded (the
    weights loaded next replace them). A config open_clip cannot build raises a one-line UserError naming
    ``source``.
    """
    cfg = copy.deepcopy(model_cfg)
    if not allow_coca and "multimodal_cfg" in cfg:
        raise UserError(f"{source}: CoCa models (multimodal_cfg) are not supported by the SiLC trainer")
    text_cfg = cfg.get("text_cfg")
    is_hf_text = isinstance(text_cfg, dict) and "hf_model_name" in text_cfg
    if is_hf_text:
        text_cfg["hf_model_pretrained"] = False
    custom_text = cfg.pop("custom_text", False) or is_hf_text
    if custom_text:
        model_class = open_clip.CoCa if "multimodal_cfg" in cfg else open_clip.CustomTextCLIP
    else:
        model_class = open_clip.CLIP
    try:
        return model_class(**cfg)
    except Exception as e:  # any failure here comes from the user's config (bad key, value, missing HF files)
        raise UserError(
            f"{source}: cannot build an open_clip model from this config ({first_line(e)})"
        ) from e


def load_weights(model: nn.Module, path: str | Path, where: str | None = None) -> None:
    """Load a weights file (.pt/.bin/.safetensors, or a checkpoint with a ``state_dict``) into ``model`` with
    open_clip's own loader (format conversions included), strictly. Failures raise a one-line UserError that
    names the file (and ``where``, e.g. the config key, when given)."""
    prefix = f"{where}: " if where else ""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"{prefix}{path}: weights file not found")
    try:
        open_clip.load_checkpoint(model, str(path), strict=True, weights_only=True)
    except Exception as e:  # a user's file: corrupt, not weights-only, or another architecture
        try:
            state_dict = open_clip.factory.load_state_dict(str(path), weights_only=True)
        except Exception as read_error:
            raise UserError(
                f"{prefix}{path}: not a readable weights file ({torch_load_failure(read_error)})"
            ) from read_error
        raise UserError(f"{prefix}{path}: {describe_mismatch(model, state_dict) or first_line(e)}") from e


def describe_mismatch(model: nn.Module, state_dict: object) -> str | None:
    """One line saying how ``state_dict`` fails to fit ``model`` (missing/unexpected keys, shapes), or None."""
    if not isinstance(state_dict, dict) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        return "does not hold a state_dict of tensors"
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    shapes = [k for k in expected if k in state_dict and state_dict[k].shape != expected[k].shape]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys (e.g. {missing[0]})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys (e.g. {unexpected[0]})")
    if shapes:
        k = shapes[0]
        problems.append(
            f"{len(shapes)} shape mismatches (e.g. {k}: file {tuple(state_dict[k].shape)}, "
            f"model {tuple(expected[k].shape)})"
        )
    return f"weights do not fit the model config: {'; '.join(problems)}" if problems else None
