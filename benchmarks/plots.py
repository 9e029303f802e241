"""Plots of result records (matplotlib, Agg): gains over the baseline per benchmark, per-class IoU deltas."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from benchmarks.records import ResultRecord, protocol_hash
from benchmarks.tables import LoadedRecord, main_table
from silc.errors import UserError
from silc.io import atomic_write


def _save(fig: Figure, path: Path) -> Path:
    """Write ``fig`` as a PNG atomically (Figure renders through the Agg canvas; no pyplot global state)."""
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=120, bbox_inches="tight"))
    return path


def plot_gains(loaded: list[LoadedRecord], baseline: str, out: Path) -> Path:
    """One panel per benchmark: each model's gain over ``baseline`` on every key metric."""
    df = main_table(loaded, baseline)
    models = [
        c for c in df.columns if c not in ("benchmark", "dataset", "metric") and not c.startswith("gain")
    ]
    models = [m for m in models if m != f"{baseline} (baseline)"]
    if not models:
        raise UserError(f"no model besides the baseline {baseline!r} to compare")
    benches = list(dict.fromkeys(df["benchmark"]))
    fig = Figure(figsize=(8, 2.4 * len(benches)))
    axes = fig.subplots(len(benches), 1, squeeze=False)
    width = min(0.8 / len(models), 0.35)
    for ax, bench in zip(axes[:, 0], benches, strict=True):
        sub = df[df["benchmark"] == bench]
        x = np.arange(len(sub))
        for j, m in enumerate(models):
            col = "gain" if len(models) == 1 else f"gain {m}"
            gains = sub[col].astype(float).to_numpy()
            bars = ax.bar(x + (j - (len(models) - 1) / 2) * width, np.nan_to_num(gains), width, label=m)
            for b, g in zip(bars, gains, strict=True):
                label = "n/a" if np.isnan(g) else f"{g:+.3g}"
                ax.annotate(
                    label,
                    (b.get_x() + b.get_width() / 2, b.get_height()),
                    ha="center",
                    fontsize=7,
                    va="bottom" if b.get_height() >= 0 else "top",
                )
        ax.axhline(0, color="black", linewidth=0.8)
        ax.tick_params(axis="y", labelsize=7)
        ax.set_xticks(
            x, [f"{m}\n({d})" for m, d in zip(sub["metric"], sub["dataset"], strict=True)], fontsize=7
        )
        ax.set_title(bench, fontsize=9)
        ax.set_ylabel(f"gain vs {baseline}", fontsize=8)
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, out)


def plot_class_iou_deltas(model: ResultRecord, base: ResultRecord, out: Path) -> Path:
    """Per-class IoU of ``model`` minus ``base`` (same segmentation protocol), sorted, one bar per class."""
    a, b = model.extra["per_class_iou"], base.extra["per_class_iou"]
    names = [n for n in a if n in b and a[n] is not None and b[n] is not None]
    if not names:
        raise UserError(f"{model.model} vs {base.model}: no class has an IoU in both segmentation records")
    deltas = sorted(((float(a[n]) - float(b[n]), n) for n in names), reverse=True)
    fig = Figure(figsize=(7, 0.6 + 0.22 * len(deltas)))
    ax = fig.subplots()
    values = [d for d, _ in deltas]
    colours = ["tab:green" if d >= 0 else "tab:red" for d in values]
    ax.barh(range(len(deltas)), values, color=colours)
    ax.set_yticks(range(len(deltas)), [n for _, n in deltas], fontsize=7)
    ax.invert_yaxis()
    ax.axvline(0, color="black", linewidth=0.8)
    ax.tick_params(axis="x", labelsize=7)
    ax.set_xlabel(f"IoU {model.model} - IoU {base.model}", fontsize=8)
    ax.set_title(
        f"{model.benchmark} ({model.protocol_name}): per-class IoU delta, mean {np.mean(values):+.2f}",
        fontsize=9,
    )
    fig.tight_layout()
    return _save(fig, out)


def plot_all(loaded: list[LoadedRecord], baseline: str | None, out_dir: Path) -> list[Path]:
    """Every plot the records allow: gains over the baseline, and per-class IoU deltas per segmentation protocol."""
    if baseline is None:
        raise UserError("no baseline: pass --baseline ALIAS (no model is aliased 'clip')")
    written = [plot_gains(loaded, baseline, out_dir / "gains.png")]
    seg = [lr.record for lr in loaded if "per_class_iou" in lr.record.extra]
    bases = {protocol_hash(r.protocol): r for r in seg if r.model == baseline}
    for r in seg:
        h = protocol_hash(r.protocol)
        if r.model != baseline and h in bases:
            name = f"seg-classes-{r.model}-{r.protocol_name}-{h}.png"
            written.append(plot_class_iou_deltas(r, bases[h], out_dir / name))
    return written
