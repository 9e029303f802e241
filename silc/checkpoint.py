"""SiLC checkpoints: one atomic torch file per save; ``state_dict`` holds only the open_clip CLIP keys."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any

import torch

from silc.errors import UserError, torch_load_failure
from silc.io import atomic_write, crash_point, temporary_prefix

REQUIRED_KEYS = ("state_dict", "model_cfg", "model_name", "step", "config")
LATEST = "latest.pt"


def checkpoint_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / "checkpoints"


def save_checkpoint(run_dir: str | Path, state: dict[str, Any], step: int) -> Path:
    """Write ``checkpoints/step_XXXXXXXX.pt`` atomically, then point ``latest.pt`` at it (hard link, atomic)."""
    folder = checkpoint_dir(run_dir)
    path = folder / f"step_{step:08d}.pt"
    atomic_write(path, lambda f: torch.save(state, f))
    tmp = folder / f"{temporary_prefix(folder / LATEST)}link.tmp"
    tmp.unlink(missing_ok=True)
    try:
        os.link(path, tmp)
    except OSError:  # file systems without hard links get a copy
        atomic_write(tmp, lambda f: f.write(path.read_bytes()))
    crash_point(folder / LATEST)
    os.replace(tmp, folder / LATEST)
    return path


def resolve_checkpoint(spec: str | Path, run_dir: str | Path | None = None) -> Path:
    """``latest`` (in ``run_dir``), a run directory, or a checkpoint file → the checkpoint path."""
    if str(spec) == "latest":
        if run_dir is None:
            raise UserError("--resume latest: needs --out RUN_DIR")
        path = checkpoint_dir(run_dir) / LATEST
    else:
        path = Path(spec)
        if path.is_dir():
            path = checkpoint_dir(path) / LATEST
    if not path.is_file():
        raise UserError(f"{path}: checkpoint not found")
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a SiLC checkpoint with ``weights_only=True``; anything unreadable is a one-line UserError."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: checkpoint not found")
    if not zipfile.is_zipfile(path):  # torch's legacy-pickle fallback fails on garbage in arbitrary ways
        raise UserError(
            f"{path}: not a readable SiLC checkpoint (corrupt or truncated: not a torch zip archive)"
        )
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # a damaged archive member can raise anything from the unpickler
        raise UserError(f"{path}: not a readable SiLC checkpoint ({torch_load_failure(e)})") from None
    if not isinstance(ckpt, dict) or any(k not in ckpt for k in REQUIRED_KEYS):
        missing = [k for k in REQUIRED_KEYS if not isinstance(ckpt, dict) or k not in ckpt]
        raise UserError(f"{path}: not a SiLC checkpoint (missing keys: {', '.join(missing)})")
    return ckpt


def check_architecture(ckpt: dict[str, Any], model_cfg: dict, path: str | Path) -> None:
    """Fail in one line when a checkpoint's open_clip model config differs from the one being trained."""
    if ckpt["model_cfg"] != model_cfg:
        diff = sorted(_diff_keys(ckpt["model_cfg"], model_cfg))
        raise UserError(
            f"{path}: checkpoint is for another architecture ({ckpt.get('model_name')}; differs in "
            f"{', '.join(diff[:4])}{'…' if len(diff) > 4 else ''})"
        )


def _diff_keys(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            out += _diff_keys(a.get(k), b.get(k), f"{prefix}{k}.")
        return out
    return [] if a == b else [prefix.rstrip(".")]
