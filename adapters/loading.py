"""Model specs to Encoders: ``[ALIAS=]openclip:<model or config.json>[@<weights>]``, SiLC checkpoints, run dirs.

Nothing is ever downloaded: a pretrained tag fails with a one-line message saying how to pass a local file.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import open_clip
import torch
from torch import nn

from adapters.openclip import (
    OpenClipEncoder,
    build_model,
    check_model_cfg,
    first_line,
    make_tokenizer,
    preprocess_cfg_for,
)
from silc.checkpoint import load_checkpoint
from silc.errors import UserError

OPENCLIP_PREFIX = "openclip:"
SPEC_SYNTAX = "[ALIAS=]openclip:<model name or config.json>[@<weights file>], or [ALIAS=]<SiLC checkpoint .pt or run dir>"
_ALIAS = re.compile(r"^([A-Za-z0-9_][A-Za-z0-9_.\-]*)=(.*)$")
RANDOM_INIT_SEED = 0
_WEIGHT_SUFFIXES = {".bin", ".pt", ".pth", ".safetensors", ".ckpt", ".npz"}


@dataclass(frozen=True)
class ModelSpec:
    """A parsed model spec: ``kind`` is "openclip" (``target`` = model name or config path) or "silc" (a path)."""

    raw: str
    alias: str | None
    kind: str
    target: str
    weights: str | None = None


def parse_spec(spec: str) -> ModelSpec:
    """Split a spec into alias, kind, target and weights; malformed specs raise a one-line UserError."""
    text = spec.strip()
    alias = None
    match = _ALIAS.match(text)
    if match and not Path(text).exists():
        alias, text = match.group(1), match.group(2)
    if not text:
        raise UserError(f"model spec {spec!r}: empty; expected {SPEC_SYNTAX}")
    if text.startswith(OPENCLIP_PREFIX):
        model, sep, weights = text[len(OPENCLIP_PREFIX) :].partition("@")
        if not model or (sep and not weights):
            raise UserError(
                f"model spec {spec!r}: expected openclip:<model name or config.json>[@<weights file>]"
            )
        return ModelSpec(spec, alias, "openclip", model, weights or None)
    scheme = re.match(r"^([A-Za-z][\w+.\-]*):", text)
    if scheme and not Path(text).exists():
        raise UserError(f"model spec {spec!r}: unknown prefix {scheme.group(1)!r}; expected {SPEC_SYNTAX}")
    return ModelSpec(spec, alias, "silc", text)


def load_encoder(spec: str, device: str | torch.device = "cpu") -> OpenClipEncoder:
    """Build the Encoder a spec names, on ``device``, in eval mode (openclip without weights: seeded random init)."""
    parsed = parse_spec(spec)
    load = _load_openclip if parsed.kind == "openclip" else _load_silc
    model, model_cfg, name, tokenizer, preprocess_overlay = load(parsed)
    return OpenClipEncoder(
        model,
        name=parsed.alias or name,
        spec=spec,
        embed_dim=model_cfg["embed_dim"],
        tokenizer=tokenizer,
        preprocess_cfg=preprocess_cfg_for(model, preprocess_overlay),
        device=device,
    )


def read_config_json(path: str | Path) -> tuple[dict, dict | None]:
    """An open_clip model config from a JSON file: plain, or ``{"model_cfg": ..., "preprocess_cfg": ...}``."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"{path}: model config file not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"{path}: not a readable JSON model config ({first_line(e)})") from e
    if isinstance(data, dict) and "model_cfg" in data:
        return check_model_cfg(data["model_cfg"], str(path)), data.get("preprocess_cfg")
    return check_model_cfg(data, str(path)), None


def _load_openclip(spec: ModelSpec):
    target = spec.target
    if target.endswith(".json") or Path(target).expanduser().is_file():
        model_cfg, overlay = read_config_json(target)
        builtin, name = None, Path(target).stem
    else:
        if target.startswith(("hf-hub:", "local-dir:")):
            raise UserError(
                f"{spec.raw}: open_clip hub/dir schemas are not supported; use openclip:<config.json>@<file>"
            )
        builtin = name = target.replace("/", "-")
        model_cfg, overlay = open_clip.get_model_config(builtin), None
        if model_cfg is None:
            raise UserError(
                f"openclip:{target}: unknown open_clip model (a built-in name such as ViT-B-32, or a config .json path)"
            )
    weights = _resolve_weights(spec, builtin, model_cfg)
    source = f"openclip:{target}"
    if weights is None:  # random init, seeded: the same spec names the same weights in every process
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_INIT_SEED)
            model = build_model(model_cfg, source)
    else:
        model = build_model(model_cfg, source)
        _load_weights_file(model, weights)
    return model, model_cfg, name, make_tokenizer(model_cfg, builtin, source), overlay


def _resolve_weights(spec: ModelSpec, builtin: str | None, model_cfg: dict) -> Path | None:
    """The local weights file of an openclip spec; pretrained tags and missing files raise one-line UserErrors."""
    weights = spec.weights
    if weights is None:
        return None
    path = Path(weights).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        raise UserError(
            f"{weights}: is a directory; pass the weights file in it (e.g. open_clip_pytorch_model.bin)"
        )
    tag_cfg = open_clip.get_pretrained_cfg(builtin, weights) if builtin else {}
    if tag_cfg:
        model_hint = builtin
        if tag_cfg.get("quick_gelu") and not model_cfg.get("quick_gelu"):
            model_hint = (
                f"{builtin}-quickgelu" if f"{builtin}-quickgelu" in open_clip.list_models() else builtin
            )
        hub = tag_cfg.get("hf_hub", "").rstrip("/")
        where = f"the Hugging Face repo {hub}" if hub else tag_cfg.get("url", "its release page")
        raise UserError(
            f"openclip:{spec.target}@{weights}: pretrained tag {weights!r} needs a download, which is not possible "
            f"here; fetch the weights from {where} elsewhere and pass the local file: "
            f"openclip:{model_hint}@/path/to/open_clip_pytorch_model.bin"
        )
    if "/" in weights or path.suffix in _WEIGHT_SUFFIXES:
        raise UserError(f"{weights}: weights file not found")
    tags = open_clip.list_pretrained_tags_by_model(builtin) if builtin else []
    known = f" (pretrained tags of {builtin}: {', '.join(tags)})" if tags else ""
    raise UserError(
        f"openclip:{spec.target}@{weights}: {weights!r} is neither a weights file nor a pretrained tag{known}"
    )


def _load_weights_file(model: nn.Module, path: Path) -> None:
    """Load a weights file with open_clip's own loader (format conversions included); failures name the file."""
    try:
        open_clip.load_checkpoint(model, str(path), strict=True, weights_only=True)
    except Exception as e:  # a user's file: corrupt, not weights-only, or another architecture
        try:
            state_dict = open_clip.factory.load_state_dict(str(path), weights_only=True)
        except Exception as read_error:
            raise UserError(f"{path}: not a readable weights file ({first_line(read_error)})") from read_error
        raise UserError(f"{path}: {describe_mismatch(model, state_dict) or first_line(e)}") from e


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


def _load_silc(spec: ModelSpec):
    path = Path(spec.target).expanduser()
    if path.is_dir():
        checkpoint = path / "checkpoints" / "latest.pt"
        if not checkpoint.is_file():
            raise UserError(f"{path}: not a SiLC run directory (no checkpoints/latest.pt)")
        name = path.resolve().name
    elif path.is_file():
        if path.suffix == ".json":
            raise UserError(
                f"{path}: a model config needs the openclip: prefix (openclip:{path}[@<weights>])"
            )
        if path.suffix in {".safetensors", ".bin"}:
            raise UserError(f"{path}: plain weights need their model config (openclip:<config.json>@{path})")
        checkpoint = path
        run = path.resolve().parent
        name = f"{run.parent.name}-{path.stem}" if run.name == "checkpoints" else path.stem
    else:
        raise UserError(f"{spec.target}: no such file or directory; expected {SPEC_SYNTAX}")
    ckpt = load_checkpoint(checkpoint)
    model_cfg = check_model_cfg(ckpt["model_cfg"], f"{checkpoint}: model_cfg")
    model = build_model(model_cfg, str(checkpoint))
    problem = describe_mismatch(model, ckpt["state_dict"])
    if problem:
        raise UserError(f"{checkpoint}: {problem}")
    model.load_state_dict(ckpt["state_dict"], strict=True)
    return model, model_cfg, name, make_tokenizer(model_cfg, None, str(checkpoint)), None
