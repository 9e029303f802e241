"""Result records into table rows: the records under a results folder (:func:`load_results`), their metrics as
flat numbers (:func:`scalar_metrics`), and every row's cells keyed by (benchmark, protocol, dataset, metric) with
the row's labels and order (:func:`collect_rows`, :func:`ordered_rows`). Two records for one cell are refused
here, never averaged or picked silently.

Shared by every table layout (``benchmarks/table_main.py``, ``benchmarks/table_ovss.py``), the plots, the checks
and the regression; a benchmark's registered harness (:func:`harness_of`) says its key metrics, row order and
scale.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.records import ResultRecord, protocol_hash, read_record
from benchmarks.registry import Harness
from silc.errors import UserError


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
            knobs = ", ".join(f"{k}={short_value(r.protocol.get(k))}" for k in differ)
            labels[(bench, h)] = f"{r.protocol_name}: {knobs}"
    return labels


def short_value(value: Any, limit: int = 24) -> str:
    """A knob value for a row label: as is when short, else ``#`` + a hash of it (the full value is in the record)."""
    text = str(value)
    return text if len(text) <= limit else "#" + hashlib.sha256(text.encode()).hexdigest()[:8]


def _dataset_labels(records: list[ResultRecord]) -> dict[tuple[str, str], str]:
    """(benchmark, dataset root) -> the row's dataset label: the public dataset's name where the records verified
    the dataset their suite entry claimed ("ImageNet-1k"), the folder name marked "(nonstandard)" where they ran
    on other data under --allow-nonstandard, else the folder name (records that disagree: their labels joined);
    where two roots would share a label, it names the full path."""
    own: dict[tuple[str, str], set[str]] = defaultdict(set)
    for r in records:
        own[(r.benchmark, r.dataset_root)].add(r.dataset_identity.get("label") or Path(r.dataset_root).name)
    joined = {key: " / ".join(sorted(labels)) for key, labels in own.items()}
    taken = Counter((bench, label) for (bench, _), label in joined.items())
    labels = {}
    for (bench, root), label in joined.items():
        if taken[(bench, label)] > 1:
            label = root if label == Path(root).name else f"{label} ({root})"
        labels[(bench, root)] = label
    return labels


def _skipped_marks(records: list[ResultRecord]) -> dict[tuple[str, str, str], str]:
    """(benchmark, protocol hash, dataset root) -> the mark a row's dataset label gains where its records left
    undecodable images out (--skip-bad-images): " (3 images skipped)", or per model where they differ."""
    skipped: dict[tuple[str, str, str], dict[str, int]] = defaultdict(dict)
    for r in records:
        skipped[(r.benchmark, protocol_hash(r.protocol), r.dataset_root)][r.model] = len(r.skipped_images)
    marks = {}
    for key, per_model in skipped.items():
        counts = set(per_model.values())
        if counts == {0}:
            continue
        if len(counts) == 1:
            n = counts.pop()
            marks[key] = f" ({n} image{'s' if n != 1 else ''} skipped)"
        else:
            marks[key] = f" (images skipped: {', '.join(f'{m} {n}' for m, n in sorted(per_model.items()))})"
    return marks


def harness_of(benchmark: str) -> Harness | None:
    """The registered harness of a record's benchmark (None for one no longer installed)."""
    from benchmarks.registry import harnesses

    return harnesses().get(benchmark)


def _key_metrics(benchmark: str) -> tuple[str, ...]:
    harness = harness_of(benchmark)
    return harness.key_metrics if harness else ()


def _bench_rank(benchmark: str) -> tuple[int, str]:
    harness = harness_of(benchmark)
    return (harness.table_order if harness else Harness.table_order), benchmark


def _metric_rank(benchmark: str, metric: str) -> tuple[int, str]:
    keys = _key_metrics(benchmark)
    return (keys.index(metric) if metric in keys else len(keys)), metric


def collect_rows(
    loaded: list[LoadedRecord], key_only: bool
) -> tuple[dict[RowKey, dict[str, float | None]], dict[RowKey, tuple[str, str]]]:
    """Cells by row (model -> value) and each row's (benchmark label, dataset label)."""
    _check_conflicts(loaded)
    records = [lr.record for lr in loaded]
    plabels = _protocol_labels(records)
    dlabels = _dataset_labels(records)
    skipped = _skipped_marks(records)
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
                dlabels[(r.benchmark, r.dataset_root)] + skipped.get((r.benchmark, h, r.dataset_root), ""),
            )
    return cells, names


def ordered_rows(rows: list[RowKey], names: dict[RowKey, tuple[str, str]]) -> list[RowKey]:
    """``rows`` in table order: by their harness's ``table_order`` and benchmark, the row's benchmark and dataset
    labels, then the harness's key metrics first (in its order) and the other metrics by name."""
    return sorted(
        rows,
        key=lambda k: (
            _bench_rank(k.benchmark),
            names[k][0],
            names[k][1],
            _metric_rank(k.benchmark, k.metric),
        ),
    )
