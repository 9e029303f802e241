"""``silc-bench train``: train CLIP / SiLC from a YAML config (single process or under torchrun)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from silc.errors import UserError


def configure(p: argparse.ArgumentParser) -> None:
    """Arguments of ``silc-bench train``."""
    p.description = (
        "Train CLIP or SiLC (contrastive + self-distillation). Runs as one process or under "
        "`torchrun --nproc_per_node N`."
    )
    p.add_argument("--config", help="training config YAML (optional with --resume: the checkpoint's config)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value by dotted key, e.g. --set optim.lr=1e-4 (repeatable)",
    )
    p.add_argument("--out", help="run directory (default: runs/<config name>)")
    p.add_argument(
        "--resume",
        nargs="?",
        const="latest",
        metavar="PATH|latest",
        help="continue from a checkpoint file, a run directory, or `latest` in --out",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from silc.checkpoint import load_checkpoint, resolve_checkpoint
    from silc.config import apply_overrides, config_from_dict, load_config, validate
    from silc.train import train
    from silc_bench.app.train_eval import make_eval_fn

    if args.config is None and args.resume is None:
        raise UserError("train: --config is required (or --resume a run)")
    if args.out:
        out = Path(args.out)
    elif args.config:
        out = Path("runs") / Path(args.config).stem
    else:
        out = Path(args.resume) if Path(args.resume).is_dir() else None
        if out is None:
            raise UserError("train: --out RUN_DIR is required when resuming from a checkpoint file")
    resume = resolve_checkpoint(args.resume, out) if args.resume is not None else None
    if args.config:
        cfg = load_config(args.config, args.overrides)
    else:
        cfg = config_from_dict(
            apply_overrides(to_dict_safe(load_checkpoint(resume)["config"]), args.overrides)
        )
        validate(cfg)
    last = train(cfg, out, resume=resume, eval_fn=make_eval_fn(cfg, out))
    if last and os.environ.get("RANK", "0") == "0":
        terms = ", ".join(
            f"{k}={last[k]:.4f}" for k in ("loss", "loss_contrastive", "loss_distill") if k in last
        )
        print(f"trained to step {last['step']}: {terms}; checkpoints in {out / 'checkpoints'}")
    return 0


def to_dict_safe(data: object) -> dict:
    """The config stored in a checkpoint, as a plain dict."""
    if not isinstance(data, dict):
        raise UserError("checkpoint: its `config` entry is not a mapping")
    return data
