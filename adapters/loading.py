"""Model specs to Encoders: ``[ALIAS=]openclip:<model or config.json>[@<weights>]``, SiLC checkpoints, run dirs.

Nothing is ever downloaded: a pretrained tag fails with a one-line message saying how to pass a local file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import open_clip
import torch

from adapters.openclip import OpenClipEncoder
from silc.checkpoint import load_checkpoint
from silc.errors import UserError
from silc.kernel import (
    build_model,
    check_model_cfg,
    describe_mismatch,
    find_model_config,
    load_weights,
    make_tokenizer,
    preprocess_cfg_for,
)

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


def _load_openclip(spec: ModelSpec):
    source = f"openclip:{spec.target}"
    found = find_model_config(spec.target, source)
    model_cfg, builtin, name, overlay = found.model_cfg, found.builtin, found.name, found.preprocess_cfg
    weights = _resolve_weights(spec, builtin, model_cfg)
    if weights is None:  # random init, seeded: the same spec names the same weights in every process
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_INIT_SEED)
            model = build_model(model_cfg, source)
    else:
        model = build_model(model_cfg, source)
        load_weights(model, weights)
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
