"""Plots of result records (matplotlib, Agg): gains over the baseline per benchmark with their paired-bootstrap
95 % intervals, and per-class IoU deltas (with per-class paired intervals where the segmentation harness offers
``per_class_from_counts``, an optional harness capability)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from benchmarks import uncertainty
from benchmarks.records import ResultRecord, protocol_hash
from benchmarks.table_gains import PairedGains
from benchmarks.table_main import main_table
from benchmarks.table_models import SEED_PATTERN
from benchmarks.table_rows import LoadedRecord
from silc.errors import UserError
from silc.io import atomic_write

NOT_SIGNIFICANT = 0.4  # opacity of a bar whose interval includes 0


def _save(fig: Figure, path: Path) -> Path:
    """Write ``fig`` as a PNG atomically (Figure renders through the Agg canvas; no pyplot global state)."""
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=120, bbox_inches="tight"))
    return path


def plot_gains(
    loaded: list[LoadedRecord],
    baseline: str,
    out: Path,
    group: str | None = SEED_PATTERN,
    resamples: int | None = None,
) -> Path:
    """One panel per benchmark: each model's (or seed group's) gain over ``baseline`` on every key metric, with
    error bars from the paired-bootstrap 95 % interval (and, for seed groups, the wider t-interval over the seeds'
    paired gains); a bar whose intervals exclude 0 is edged and starred, one whose interval includes 0 pale, one
    without interval (no per-sample outcomes) plain."""
    df = main_table(loaded, baseline, group, resamples)
    gains: dict[str, str] = df.attrs["gains"]
    intervals: dict[str, tuple[str, str, str]] = df.attrs["intervals"]
    seed_intervals: dict[str, tuple[str, str]] = df.attrs.get("seed_intervals", {})
    if not gains:
        raise UserError(f"no model besides the baseline {baseline!r} to compare")
    benches = list(dict.fromkeys(df["benchmark"]))
    fig = Figure(figsize=(8, 2.4 * len(benches)))
    axes = fig.subplots(len(benches), 1, squeeze=False)
    width = min(0.8 / len(gains), 0.35)
    colours = [f"C{j % 10}" for j in range(len(gains))]
    for ax, bench in zip(axes[:, 0], benches, strict=True):
        sub = df[df["benchmark"] == bench]
        x = np.arange(len(sub))
        for j, (model, col) in enumerate(gains.items()):
            g = sub[col].astype(float).to_numpy()
            pos = x + (j - (len(gains) - 1) / 2) * width
            if col in intervals:
                low_col, high_col, sig_col = intervals[col]
                low, high = sub[low_col].astype(float).to_numpy(), sub[high_col].astype(float).to_numpy()
                sig = sub[sig_col].astype(bool).to_numpy()
            else:
                low = high = np.full(len(sub), np.nan)
                sig = np.zeros(len(sub), bool)
            bars = ax.bar(pos, np.nan_to_num(g), width, label=model, color=colours[j])
            has = ~np.isnan(low) & ~np.isnan(high) & ~np.isnan(g)
            for b, s, h in zip(bars, sig, has, strict=True):
                if s:
                    b.set_edgecolor("black")
                    b.set_linewidth(1.0)
                elif h:  # an interval that includes 0; a bar without interval stays as it is
                    b.set_alpha(NOT_SIGNIFICANT)
            if col in seed_intervals:  # the seed interval, wide and grey, behind the bootstrap's
                s_low, s_high = (sub[c].astype(float).to_numpy() for c in seed_intervals[col])
                s_has = ~np.isnan(s_low) & ~np.isnan(s_high) & ~np.isnan(g)
                if s_has.any():
                    yerr = np.vstack([g[s_has] - s_low[s_has], s_high[s_has] - g[s_has]])
                    ax.errorbar(
                        pos[s_has], g[s_has], yerr=yerr, fmt="none", ecolor="grey", elinewidth=3.0, alpha=0.6,
                        capsize=4,
                    )  # fmt: skip
            if has.any():
                yerr = np.vstack([g[has] - low[has], high[has] - g[has]])
                ax.errorbar(
                    pos[has], g[has], yerr=yerr, fmt="none", ecolor="black", elinewidth=0.8, capsize=2
                )
            for k, (b, v) in enumerate(zip(bars, g, strict=True)):
                label = "n/a" if np.isnan(v) else f"{v:+.3g}" + ("*" if sig[k] else "")
                top = high[k] if has[k] and v >= 0 else (low[k] if has[k] else v)
                ax.annotate(
                    label,
                    (b.get_x() + b.get_width() / 2, np.nan_to_num(top)),
                    ha="center",
                    fontsize=7,
                    va="bottom" if np.nan_to_num(v) >= 0 else "top",
                )
        ax.axhline(0, color="black", linewidth=0.8)
        ax.tick_params(axis="y", labelsize=7)
        ax.set_xticks(
            x, [f"{m}\n({d})" for m, d in zip(sub["metric"], sub["dataset"], strict=True)], fontsize=7
        )
        ax.set_title(bench, fontsize=9)
        ax.set_ylabel(f"gain vs {baseline}", fontsize=8)
    axes[0, 0].legend(fontsize=7)
    if intervals:
        seeds = (
            "; wide grey bars: 95 % t-interval over the seeds' paired gains (* needs both to exclude 0)"
            if seed_intervals
            else ""
        )
        fig.suptitle(
            "error bars: paired-bootstrap 95 % interval; edged and *: it excludes 0; pale: it includes 0; "
            f"no error bar: no per-sample outcomes{seeds}",
            fontsize=8,
            wrap=True,
        )
    fig.tight_layout()
    return _save(fig, out)


def class_delta_intervals(
    model: LoadedRecord, base: LoadedRecord, pairing: PairedGains, names: list[str]
) -> dict[str, tuple[float, float]] | None:
    """Per class, the paired-bootstrap 95 % interval of IoU(model) − IoU(base) (same resampled images), from the
    harness's optional ``per_class_from_counts(arrays, counts) -> [B, C]`` (percent, classes in the order of
    ``arrays["classes"]``); None when the harness lacks it or either record has no outcomes."""
    from benchmarks.registry import harnesses

    harness = harnesses().get(model.record.benchmark)
    if harness is None or not hasattr(harness, "per_class_from_counts"):
        return None
    pairing.check_units([model, base])
    a, b = pairing.outcomes(model), pairing.outcomes(base)
    resamples = pairing.resamples_for([model, base])
    if a is None or b is None or resamples <= 0:
        return None
    counts = uncertainty.resample_counts(len(a.units), resamples, pairing.seed_for([model, base]))
    delta = np.asarray(harness.per_class_from_counts(a.arrays, counts), np.float64) - np.asarray(
        harness.per_class_from_counts(b.arrays, counts), np.float64
    )
    classes = [str(c) for c in a.arrays["classes"]] if "classes" in a.arrays else names
    if len(classes) != delta.shape[1]:
        return None
    out = {}
    for j, name in enumerate(classes):
        ci = uncertainty.interval(delta[:, j])
        if ci["low"] is not None and ci["high"] is not None:
            out[name] = (float(ci["low"]), float(ci["high"]))
    return out


def plot_class_iou_deltas(
    model: ResultRecord,
    base: ResultRecord,
    out: Path,
    intervals: dict[str, tuple[float, float]] | None = None,
) -> Path:
    """Per-class IoU of ``model`` minus ``base`` (same segmentation protocol), sorted, one bar per class; with
    ``intervals`` ({class: (low, high)}) error bars, and classes whose interval excludes 0 solid and edged."""
    a, b = model.extra["per_class_iou"], base.extra["per_class_iou"]
    names = [n for n in a if n in b and a[n] is not None and b[n] is not None]
    if not names:
        raise UserError(f"{model.model} vs {base.model}: no class has an IoU in both segmentation records")
    deltas = sorted(((float(a[n]) - float(b[n]), n) for n in names), reverse=True)
    fig = Figure(figsize=(7, 0.6 + 0.22 * len(deltas)))
    ax = fig.subplots()
    values = [d for d, _ in deltas]
    colours = ["tab:green" if d >= 0 else "tab:red" for d in values]
    bars = ax.barh(range(len(deltas)), values, color=colours)
    significant = 0
    if intervals:
        lo = np.array([intervals.get(n, (np.nan, np.nan))[0] for _, n in deltas])
        hi = np.array([intervals.get(n, (np.nan, np.nan))[1] for _, n in deltas])
        v = np.asarray(values)
        has = ~np.isnan(lo) & ~np.isnan(hi)
        y = np.arange(len(deltas))
        xerr = np.vstack([np.clip(v[has] - lo[has], 0, None), np.clip(hi[has] - v[has], 0, None)])
        ax.errorbar(v[has], y[has], xerr=xerr, fmt="none", ecolor="black", elinewidth=0.8, capsize=2)
        for k, bar in enumerate(bars):
            sig = bool(has[k]) and (lo[k] > 0 or hi[k] < 0)
            significant += sig
            if sig:
                bar.set_edgecolor("black")
            elif has[k]:
                bar.set_alpha(NOT_SIGNIFICANT)
    ax.set_yticks(range(len(deltas)), [n for _, n in deltas], fontsize=7)
    ax.invert_yaxis()
    ax.axvline(0, color="black", linewidth=0.8)
    ax.tick_params(axis="x", labelsize=7)
    ax.set_xlabel(f"IoU {model.model} - IoU {base.model}", fontsize=8)
    title = f"{model.benchmark} ({model.protocol_name}): per-class IoU delta, mean {np.mean(values):+.2f}"
    if intervals:
        title += (
            f"\npaired-bootstrap 95 % intervals; {significant} of {len(deltas)} classes exclude 0 "
            "(edged; pale: includes 0)"
        )
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return _save(fig, out)


def plot_all(
    loaded: list[LoadedRecord],
    baseline: str | None,
    out_dir: Path,
    group: str | None = SEED_PATTERN,
    resamples: int | None = None,
) -> list[Path]:
    """Every plot the records allow: gains over the baseline, and per-class IoU deltas per segmentation protocol
    (each model alias against a baseline that is one alias, not a seed group)."""
    if baseline is None:
        raise UserError("no baseline: pass --baseline ALIAS (no model is aliased 'clip')")
    written = [plot_gains(loaded, baseline, out_dir / "gains.png", group, resamples)]
    pairing = PairedGains(loaded, resamples)
    seg = [lr for lr in loaded if "per_class_iou" in lr.record.extra]
    bases = {protocol_hash(lr.record.protocol): lr for lr in seg if lr.record.model == baseline}
    for lr in seg:
        r, h = lr.record, protocol_hash(lr.record.protocol)
        if r.model != baseline and h in bases:
            base = bases[h]
            names = list(r.extra["per_class_iou"])
            intervals = class_delta_intervals(lr, base, pairing, names) if pairing.active else None
            name = f"seg-classes-{r.model}-{r.protocol_name}-{h}.png"
            written.append(plot_class_iou_deltas(r, base.record, out_dir / name, intervals))
    return written
