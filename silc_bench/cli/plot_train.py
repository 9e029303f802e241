"""``silc-bench plot-train``: training curves (loss terms, lr, momentum, teacher temperature) from log.jsonl."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from silc.errors import UserError

PANELS = [
    ("losses", ("loss", "loss_contrastive", "loss_distill")),
    ("learning rate", ("lr",)),
    ("EMA momentum", ("momentum",)),
    ("teacher temperature", ("teacher_temp",)),
    ("logit scale", ("logit_scale",)),
    ("throughput (samples/s)", ("samples_per_s",)),
]


def configure(p: argparse.ArgumentParser) -> None:
    """Arguments of ``silc-bench plot-train``."""
    p.add_argument("run", help="run directory (holds log.jsonl)")
    p.add_argument("--out", required=True, help="output image (e.g. curves.png)")
    p.set_defaults(func=run)


def read_log(path: Path) -> list[dict]:
    """The training records of a run's ``log.jsonl`` (evaluation records included), in order."""
    if not path.is_file():
        raise UserError(f"{path}: no training log (expected RUN/log.jsonl)")
    records = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                raise UserError(f"{path}:{i}: not a JSON line") from None
    if not records:
        raise UserError(f"{path}: empty training log")
    return records


def run(args: argparse.Namespace) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from silc.io import atomic_write

    records = read_log(Path(args.run) / "log.jsonl")
    evals = sorted({k for r in records for k in r if k.startswith("eval/")})
    panels = [p for p in PANELS if any(k in r for r in records for k in p[1])]
    if evals:
        panels.append(("evaluation", tuple(evals)))
    cols = 3
    rows = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    for ax, (title, keys) in zip(axes.flat, panels, strict=False):
        for key in keys:
            pts = [(r["step"], r[key]) for r in records if key in r]
            if pts:
                ax.plot(*zip(*pts, strict=True), label=key)
        ax.set_title(title)
        ax.set_xlabel("step")
        if len(keys) > 1:
            ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    fig.tight_layout()
    out = Path(args.out)
    fmt = out.suffix.lstrip(".") or "png"
    atomic_write(out, lambda f: fig.savefig(f, format=fmt, dpi=110))
    plt.close(fig)
    print(f"wrote {out}")
    return 0
