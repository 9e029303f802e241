"""Result tables with pandas: the paper's main-results layout, an ablation layout and a full layout.

Every number comes from one result record. Records that would share a cell but differ in protocol get separate
rows that name the protocol; two records for the very same cell are refused, never averaged or picked silently.
"""

from __future__ import annotations

import hashlib
import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from benchmarks.records import ResultRecord, protocol_hash, read_record
from benchmarks.registry import Harness
from silc.errors import UserError

LAYOUTS = ("main", "ablation", "full")
FORMATS = ("md", "latex", "csv")


@dataclass(frozen=True)
class LoadedRecord:
    """A record and the file it came from (for error messages)."""

    path: Path
    record: ResultRecord


@dataclass(frozen=True)
class RowKey:
    """What identifies one table row: a metric of a benchmark under one protocol on one dataset."""

    benchmark: str
    protocol_hash: str
    dataset_root: str
    metric: str


def load_results(results_dir: str | Path) -> list[LoadedRecord]:
    """Every result record under ``results_dir``; a missing/empty folder or a corrupt record is a UserError."""
    root = Path(results_dir)
    if not root.is_dir():
        raise UserError(f"{root}: results folder does not exist")
    loaded = [
        LoadedRecord(p, read_record(p)) for p in sorted(root.rglob("*.json")) if not p.name.startswith(".")
    ]
    if not loaded:
        raise UserError(f"{root}: no result records (*.json) found")
    return loaded


def scalar_metrics(metrics: dict[str, Any], prefix: str = "") -> dict[str, float | None]:
    """Flatten nested metric dicts to dotted names; keep numbers and None (undefined), drop lists and text."""
    out: dict[str, float | None] = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(scalar_metrics(value, name + "."))
        elif value is None:
            out[name] = None
        elif isinstance(value, bool):
            continue
        elif isinstance(value, int | float):
            out[name] = float(value)
    return out


def _check_conflicts(loaded: list[LoadedRecord]) -> None:
    """Refuse two records for the same (model, benchmark, protocol): a table would have to pick one."""
    cells: dict[tuple[str, str, str], list[LoadedRecord]] = defaultdict(list)
    for lr in loaded:
        r = lr.record
        cells[(r.model, r.benchmark, protocol_hash(r.protocol))].append(lr)
    for (model, benchmark, _), group in sorted(cells.items()):
        if len(group) > 1:
            paths = ", ".join(str(g.path) for g in group)
            roots = sorted({g.record.dataset_root for g in group})
            why = f"datasets {roots}" if len(roots) > 1 else "the same dataset"
            raise UserError(
                f"conflicting records for model {model!r}, benchmark {benchmark!r}, protocol "
                f"{group[0].record.protocol_name!r} ({why}): {paths}; keep one (or point --results at one run)"
            )


def _protocol_labels(records: list[ResultRecord]) -> dict[tuple[str, str], str]:
    """(benchmark, protocol hash) -> label: '' when a benchmark has one protocol, else its name (+ knobs)."""
    by_bench: dict[str, dict[str, ResultRecord]] = defaultdict(dict)
    for r in records:
        by_bench[r.benchmark][protocol_hash(r.protocol)] = r
    labels = {}
    for bench, variants in by_bench.items():
        for h, r in variants.items():
            if len(variants) == 1:
                labels[(bench, h)] = ""
                continue
            same_name = [v for v in variants.values() if v.protocol_name == r.protocol_name]
            if len(same_name) == 1:
                labels[(bench, h)] = r.protocol_name
                continue
            keys = sorted({k for v in same_name for k in v.protocol})
            differ = [k for k in keys if len({repr(v.protocol.get(k)) for v in same_name}) > 1]
            knobs = ", ".join(f"{k}={_short(r.protocol.get(k))}" for k in differ)
            labels[(bench, h)] = f"{r.protocol_name}: {knobs}"
    return labels


def _short(value: Any, limit: int = 24) -> str:
    """A knob value for a row label: as is when short, else ``#`` + a hash of it (the full value is in the record)."""
    text = str(value)
    return text if len(text) <= limit else "#" + hashlib.sha256(text.encode()).hexdigest()[:8]


def _dataset_labels(records: list[ResultRecord]) -> dict[tuple[str, str], str]:
    """(benchmark, dataset root) -> the folder name, or the full path where two roots share a name."""
    roots: dict[str, set[str]] = defaultdict(set)
    for r in records:
        roots[r.benchmark].add(r.dataset_root)
    labels = {}
    for bench, rs in roots.items():
        names = [Path(x).name for x in rs]
        for root in rs:
            labels[(bench, root)] = root if names.count(Path(root).name) > 1 else Path(root).name
    return labels


def _harness(benchmark: str) -> Harness | None:
    """The registered harness of a record's benchmark (None for one no longer installed)."""
    from benchmarks.registry import harnesses

    return harnesses().get(benchmark)


def _key_metrics(benchmark: str) -> tuple[str, ...]:
    harness = _harness(benchmark)
    return harness.key_metrics if harness else ()


def _bench_rank(benchmark: str) -> tuple[int, str]:
    harness = _harness(benchmark)
    return (harness.table_order if harness else Harness.table_order), benchmark


def _metric_rank(benchmark: str, metric: str) -> tuple[int, str]:
    keys = _key_metrics(benchmark)
    return (keys.index(metric) if metric in keys else len(keys)), metric


def _collect(
    loaded: list[LoadedRecord], key_only: bool
) -> tuple[dict[RowKey, dict[str, float | None]], dict[RowKey, tuple[str, str]]]:
    """Cells by row (model -> value) and each row's (benchmark label, dataset label)."""
    _check_conflicts(loaded)
    records = [lr.record for lr in loaded]
    plabels = _protocol_labels(records)
    dlabels = _dataset_labels(records)
    cells: dict[RowKey, dict[str, float | None]] = defaultdict(dict)
    names: dict[RowKey, tuple[str, str]] = {}
    for r in records:
        h = protocol_hash(r.protocol)
        metrics = scalar_metrics(r.metrics)
        keys = _key_metrics(r.benchmark)
        if key_only and keys and any(k in metrics for k in keys):
            metrics = {k: v for k, v in metrics.items() if k in keys}
        for metric, value in metrics.items():
            row = RowKey(r.benchmark, h, r.dataset_root, metric)
            cells[row][r.model] = value
            plabel = plabels[(r.benchmark, h)]
            names[row] = (
                f"{r.benchmark} ({plabel})" if plabel else r.benchmark,
                dlabels[(r.benchmark, r.dataset_root)],
            )
    return cells, names


def _ordered_rows(rows: list[RowKey], names: dict[RowKey, tuple[str, str]]) -> list[RowKey]:
    return sorted(
        rows,
        key=lambda k: (
            _bench_rank(k.benchmark),
            names[k][0],
            names[k][1],
            _metric_rank(k.benchmark, k.metric),
        ),
    )


def _models(loaded: list[LoadedRecord], baseline: str | None) -> tuple[list[str], str | None]:
    """(non-baseline models sorted, baseline); an explicit baseline that has no record is a UserError."""
    models = sorted({lr.record.model for lr in loaded})
    if baseline is not None and baseline not in models:
        raise UserError(f"--baseline {baseline!r}: no records for that model; models: {', '.join(models)}")
    return [m for m in models if m != baseline], baseline


def default_baseline(loaded: list[LoadedRecord]) -> str | None:
    """The baseline when none is named: a model aliased 'clip' if there is one."""
    return "clip" if any(lr.record.model == "clip" for lr in loaded) else None


def _gain(a: float | None, b: float | None) -> float | None:
    """``a - b`` rounded to 12 decimals (so 0.6 - 0.5 reads 0.1), None when either is undefined."""
    return None if a is None or b is None else round(a - b, 12)


def main_table(loaded: list[LoadedRecord], baseline: str | None) -> pd.DataFrame:
    """The paper's main results: benchmark, dataset, metric, each model, the baseline, and each model's gain."""
    others, baseline = _models(loaded, baseline)
    cells, names = _collect(loaded, key_only=True)
    rows = []
    for key in _ordered_rows(list(cells), names):
        vals = cells[key]
        row: dict[str, Any] = {"benchmark": names[key][0], "dataset": names[key][1], "metric": key.metric}
        for m in others:
            row[m] = vals.get(m)
        if baseline is not None:
            row[f"{baseline} (baseline)"] = vals.get(baseline)
            for m in others:
                row["gain" if len(others) == 1 else f"gain {m}"] = _gain(vals.get(m), vals.get(baseline))
        rows.append(row)
    return pd.DataFrame(rows)


def ablation_table(loaded: list[LoadedRecord], baseline: str | None) -> pd.DataFrame:
    """Configurations (models) as rows, the key metric of every benchmark/protocol as columns."""
    others, baseline = _models(loaded, baseline)
    cells, names = _collect(loaded, key_only=True)
    order = ([baseline] if baseline else []) + others
    columns = {}
    for key in _ordered_rows(list(cells), names):
        columns[f"{names[key][0]} {key.metric}"] = cells[key]
    rows = [{"configuration": m, **{c: vals.get(m) for c, vals in columns.items()}} for m in order]
    return pd.DataFrame(rows)


def full_table(loaded: list[LoadedRecord], baseline: str | None) -> pd.DataFrame:
    """Every metric of every protocol: one row per (benchmark, protocol, dataset, metric), one column per model."""
    others, baseline = _models(loaded, baseline)
    cells, names = _collect(loaded, key_only=False)
    by_hash = {protocol_hash(lr.record.protocol): lr.record for lr in loaded}
    order = others + ([baseline] if baseline else [])
    rows = []
    for key in _ordered_rows(list(cells), names):
        rec = by_hash[key.protocol_hash]
        row: dict[str, Any] = {
            "benchmark": key.benchmark,
            "protocol": rec.protocol_name,
            "protocol_hash": key.protocol_hash,
            "dataset": names[key][1],
            "metric": key.metric,
        }
        row.update({m: cells[key].get(m) for m in order})
        rows.append(row)
    return pd.DataFrame(rows)


def build_table(
    loaded: list[LoadedRecord], layout: str = "main", baseline: str | None = None
) -> pd.DataFrame:
    """The numeric table for ``layout`` (undefined values are None)."""
    builders = {"main": main_table, "ablation": ablation_table, "full": full_table}
    if layout not in builders:
        raise UserError(f"unknown table layout {layout!r}; known: {', '.join(LAYOUTS)}")
    return builders[layout](loaded, baseline)


TEXT_COLUMNS = frozenset({"benchmark", "dataset", "metric", "protocol", "protocol_hash", "configuration"})


def _is_missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _numeric_columns(df: pd.DataFrame) -> list[str]:
    """Columns holding only numbers or undefined values (text columns such as names are left as they are)."""
    return [
        c
        for c in df.columns
        if c not in TEXT_COLUMNS
        and all(_is_missing(v) or (isinstance(v, int | float) and not isinstance(v, bool)) for v in df[c])
    ]


def _decimals(values: list[Any], benchmark: str | None = None) -> int:
    """Four decimals for fractions, two for percentages: the harness's ``metric_scale``; for a benchmark no
    harness declares, guessed (four when every value lies in [-1, 1])."""
    harness = _harness(benchmark) if benchmark else None
    if harness is not None:
        return 4 if harness.metric_scale == "fraction" else 2
    nums = [abs(v) for v in values if not _is_missing(v)]
    return 4 if nums and max(nums) <= 1.0 else 2


def format_numbers(df: pd.DataFrame, layout: str) -> pd.DataFrame:
    """Numbers as text, signed gains, 'n/a' if undefined; the decimals follow the scale of each benchmark's rows
    (each column in the ablation layout), so one benchmark's numbers line up."""
    cols = _numeric_columns(df)
    if layout == "ablation" or "benchmark" not in df.columns:
        by_col = {c: _decimals(list(df[c])) for c in cols}
        decimals = {(i, c): by_col[c] for i in df.index for c in cols}
    else:
        groups = df.groupby("benchmark", sort=False).groups
        by_group = {
            g: _decimals(df.loc[rows, cols].to_numpy().ravel().tolist(), str(g).split(" (")[0])
            for g, rows in groups.items()
        }
        decimals = {(i, c): by_group[df.at[i, "benchmark"]] for i in df.index for c in cols}
    out = df.astype(object).copy()
    for (i, c), d in decimals.items():
        v = df.at[i, c]
        sign = "+" if str(c).startswith("gain") and not _is_missing(v) and v > 0 else ""
        out.at[i, c] = "n/a" if _is_missing(v) else f"{sign}{v:.{d}f}"
    return out


def render(df: pd.DataFrame, fmt: str, layout: str) -> str:
    """The table as Markdown, a LaTeX tabular, or CSV (CSV keeps full precision)."""
    if fmt not in FORMATS:
        raise UserError(f"unknown table format {fmt!r}; known: {', '.join(FORMATS)}")
    if df.empty:
        raise UserError("no metrics to tabulate")
    if fmt == "csv":
        return df.to_csv(index=False)
    text = format_numbers(df, layout)
    numeric = set(_numeric_columns(df))
    align = ["right" if c in numeric else "left" for c in df.columns]
    if fmt == "md":
        return text.to_markdown(index=False, disable_numparse=True, colalign=align) + "\n"
    column_format = "".join("r" if a == "right" else "l" for a in align)
    styler = text.style.hide(axis="index").format(escape="latex").format_index(escape="latex", axis=1)
    return styler.to_latex(hrules=True, column_format=column_format)
