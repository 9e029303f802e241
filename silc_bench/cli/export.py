"""``silc-bench export``: a run's student weights as safetensors plus the open_clip JSON model config."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from silc.errors import UserError

DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}  # --dtype -> torch dtype name


def configure(p: argparse.ArgumentParser) -> None:
    """Arguments of ``silc-bench export``."""
    p.description = (
        "Write the student's open_clip state_dict to FILE.safetensors and its open_clip model "
        "config to FILE.json; `open_clip.add_model_config('FILE.json')` then "
        "`open_clip.create_model_and_transforms('FILE', pretrained='FILE.safetensors')` loads it."
    )
    p.add_argument("run", help="run directory or checkpoint file")
    p.add_argument("--out", required=True, help="output FILE.safetensors")
    p.add_argument(
        "--dtype",
        choices=sorted(DTYPES),
        help="cast floating-point weights (e.g. fp16 to halve the file); default: as trained",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch
    from safetensors.torch import save

    from silc.checkpoint import load_checkpoint, resolve_checkpoint
    from silc.io import atomic_write, atomic_write_text

    out = Path(args.out)
    if out.suffix != ".safetensors":
        raise UserError(f"--out {out}: expected a .safetensors file name")
    path = resolve_checkpoint(args.run)
    ckpt = load_checkpoint(path)
    dtype = getattr(torch, DTYPES[args.dtype]) if args.dtype else None
    tensors = {
        k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).contiguous()
        for k, v in ckpt["state_dict"].items()
    }
    meta = {"model_name": str(ckpt["model_name"]), "step": str(ckpt["step"]), "source": str(path)}
    atomic_write(out, lambda f: f.write(save(tensors, metadata=meta)))
    config_path = out.with_suffix(".json")
    atomic_write_text(config_path, json.dumps(ckpt["model_cfg"], indent=2) + "\n")
    print(f"wrote {out} ({len(tensors)} tensors, step {ckpt['step']}) and {config_path}")
    return 0
