"""open_clip model configs: find one by name (bundled, open_clip built-in) or JSON file, validate its outline."""

from __future__ import annotations

import copy
import difflib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import open_clip

from silc.errors import UserError, first_line

BUNDLED_CONFIGS = Path(__file__).resolve().parent.parent / "model_configs"
REQUIRED_KEYS = ("embed_dim", "vision_cfg", "text_cfg")


@dataclass(frozen=True)
class FoundConfig:
    """A model config and where it came from.

    ``builtin`` is the open_clip built-in model name when the config is one (``open_clip.get_tokenizer`` and the
    pretrained tags apply to it), else None; ``preprocess_cfg`` is a JSON file's ``preprocess_cfg`` (or None).
    """

    name: str
    model_cfg: dict
    builtin: str | None = None
    preprocess_cfg: dict | None = None


def check_model_cfg(model_cfg: Any, source: str) -> dict:
    """Validate the outline of an open_clip model config (the keys every CLIP config has); returns it."""
    if not isinstance(model_cfg, dict) or not all(k in model_cfg for k in REQUIRED_KEYS):
        raise UserError(
            f"{source}: expected an open_clip model config with embed_dim, vision_cfg and text_cfg"
        )
    return model_cfg


def read_config_json(path: str | Path, where: str | None = None) -> tuple[dict, dict | None]:
    """An open_clip model config from a JSON file: plain, or ``{"model_cfg": ..., "preprocess_cfg": ...}``
    (open_clip's ``open_clip_config.json`` form). Returns ``(model_cfg, preprocess_cfg or None)``."""
    prefix = f"{where}: " if where else ""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"{prefix}{path}: model config file not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"{prefix}{path}: not a readable JSON model config ({first_line(e)})") from e
    if isinstance(data, dict) and "model_cfg" in data:
        return check_model_cfg(data["model_cfg"], f"{prefix}{path}"), data.get("preprocess_cfg")
    return check_model_cfg(data, f"{prefix}{path}"), None


def bundled_names() -> list[str]:
    """The model configs shipped in ``silc/model_configs`` (by name, without ``.json``)."""
    return sorted(p.stem for p in BUNDLED_CONFIGS.glob("*.json"))


def find_model_config(name: str, source: str) -> FoundConfig:
    """The config ``name`` names: a JSON file (any existing file, or a ``.json`` path), a bundled config, or an
    open_clip built-in model (``/`` read as ``-``). Unknown names raise a one-line UserError naming ``source``."""
    path = Path(name).expanduser()
    if path.suffix == ".json" or path.is_file():
        model_cfg, preprocess = read_config_json(path, source)
        return FoundConfig(path.stem, model_cfg, None, preprocess)
    if (BUNDLED_CONFIGS / f"{name}.json").is_file():
        model_cfg = json.loads((BUNDLED_CONFIGS / f"{name}.json").read_text(encoding="utf-8"))
        return FoundConfig(name, check_model_cfg(model_cfg, source))
    if name.startswith(("hf-hub:", "local-dir:")):
        raise UserError(
            f"{source}: open_clip hub/dir schemas are not supported; pass the config .json (and a local weights file)"
        )
    builtin = name.replace("/", "-")
    model_cfg = open_clip.get_model_config(builtin)
    if model_cfg is None:
        close = difflib.get_close_matches(name, open_clip.list_models() + bundled_names(), n=1)
        hint = f" (closest: {close[0]})" if close else ""
        raise UserError(
            f"{source}: unknown open_clip model {name!r}{hint}; expected a built-in name such as ViT-B-32, "
            "a bundled config or a config .json path"
        )
    return FoundConfig(builtin, check_model_cfg(model_cfg, source), builtin)


def deep_merge(base: dict, extra: dict) -> dict:
    """A deep copy of ``base`` with ``extra`` merged in (nested dicts merged key by key, other values replaced)."""
    out = copy.deepcopy(base)
    for k, v in extra.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def resolve_model_config(
    name: str, overrides: dict[str, Any] | None = None, source: str = "model.name"
) -> tuple[str, dict]:
    """``(model name, open_clip model-config dict)`` for ``name`` (see :func:`find_model_config`), with
    ``overrides`` deep-merged in (the trainer's ``model.overrides``)."""
    found = find_model_config(name, source)
    return found.name, deep_merge(found.model_cfg, overrides or {})
