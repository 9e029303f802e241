"""Result tables with pandas: the paper's main-results layout, an ablation layout, a full layout and the
open-vocabulary segmentation layout (``ovss``: the eight benchmarks of SCLIP / NACLIP's tables).

Every number comes from one result record. Records that would share a cell but differ in protocol get separate
rows that name the protocol; two records for the very same cell are refused, never averaged or picked silently.

Gains over the baseline carry a 95 % interval from a *paired* bootstrap over the records' per-sample outcomes (the
same resampled units for the model and the baseline, :mod:`benchmarks.uncertainty`); aliases of one recipe's
seeds (``NAME-s0``, ``NAME-s1``, ...) form one column, their mean ± std. The numeric frames keep intervals and
stds in auxiliary columns named in ``DataFrame.attrs`` (CSV keeps them as columns); Markdown and LaTeX fold them
into the cells (``mean ± std``, a ``gain 95% CI`` column, bold gains whose interval excludes 0).
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import re
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from benchmarks import uncertainty
from benchmarks.records import ResultRecord, artefacts_dir, protocol_hash, read_record
from benchmarks.registry import Harness
from benchmarks.uncertainty import Outcomes
from silc.errors import UserError

if TYPE_CHECKING:
    import numpy as np

LAYOUTS = ("main", "ablation", "full", "ovss")
# The ovss layout: seg-ade20k's protocols of the ovss8 suite -> their columns, in the order SCLIP / NACLIP print them
# (with a background class, then without), then the mean of the eight.
OVSS_BENCHMARK = "seg-ade20k"
OVSS_METRIC = "mIoU"
OVSS_COLUMNS = {"voc21": "VOC21", "context60": "PC60", "coco-object": "Object", "voc20": "VOC20",
                "context59": "PC59", "coco-stuff": "Stuff", "cityscapes": "City", "ade-336": "ADE"}  # fmt: skip
OVSS_MEAN = "Avg."
FORMATS = ("md", "latex", "csv")
LATEX_STD = ("small", "plain")
# aliases of one recipe's training seeds: NAME-s0, NAME-s1, ... (group 1: the recipe's name)
SEED_PATTERN = r"^(.*)-s(\d+)$"
STD, LOW, HIGH = "_std", "_low", "_high"
SEED_LOW, SEED_HIGH = "_seeds_low", "_seeds_high"


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


@dataclass(frozen=True)
class Model:
    """A table column: one model alias, or the aliases of one recipe's seeds (``members``), shown as one."""

    name: str
    members: tuple[str, ...]

    @property
    def is_group(self) -> bool:
        return len(self.members) > 1

    @property
    def label(self) -> str:
        return f"{self.name} (n={len(self.members)})" if self.is_group else self.name


def _natural(alias: str) -> list[Any]:
    """Sort key that puts ``x-s2`` before ``x-s10``."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", alias)]


def seed_groups(aliases: list[str] | set[str], pattern: str | None = SEED_PATTERN) -> list[Model]:
    """The table's models: aliases whose whole name matches ``pattern`` (a regex whose first group, or the group
    named ``name``, is the recipe) and share a recipe with another alias form one group; others stay alone.
    ``pattern`` None: no groups."""
    aliases = sorted(set(aliases), key=_natural)
    if pattern is None:
        return [Model(a, (a,)) for a in sorted(aliases)]
    try:
        rx = re.compile(pattern)
    except re.error as e:
        raise UserError(f"--group {pattern!r}: not a regular expression ({e})") from None
    if rx.groups < 1:
        raise UserError(
            f"--group {pattern!r}: needs a capturing group for the recipe name, e.g. {SEED_PATTERN!r}"
        )
    recipes: dict[str, list[str]] = defaultdict(list)
    alone: list[str] = []
    for alias in aliases:
        m = rx.fullmatch(alias)
        name = (m.group("name") if "name" in rx.groupindex else m.group(1)) if m else None
        (recipes[name].append(alias) if name else alone.append(alias))
    models = [Model(a, (a,)) for a in alone]
    for name, members in recipes.items():
        if len(members) == 1:
            models.append(Model(members[0], (members[0],)))
        elif name in alone:
            raise UserError(
                f"alias {name!r} and the seeds {', '.join(members)} share the name {name!r}; rename one or "
                "pass --no-group"
            )
        else:
            models.append(Model(name, tuple(members)))
    return sorted(models, key=lambda m: m.name)


def select_models(
    loaded: list[LoadedRecord], names: list[str] | tuple[str, ...], group: str | None = SEED_PATTERN
) -> list[LoadedRecord]:
    """The records of the models (aliases or seed-group names) in ``names``; a name with no records is a
    UserError listing the models there are."""
    models = seed_groups({lr.record.model for lr in loaded}, group)
    by_name = {m.name: m for m in models} | {a: Model(a, (a,)) for m in models for a in m.members}
    missing = [n for n in names if n not in by_name]
    if missing:
        raise UserError(
            f"--models: no records for {', '.join(missing)}; models: {', '.join(m.name for m in models)}"
        )
    keep = {a for n in names for a in by_name[n].members}
    return [lr for lr in loaded if lr.record.model in keep]


def _models(
    loaded: list[LoadedRecord], baseline: str | None, group: str | None = SEED_PATTERN
) -> tuple[list[Model], Model | None]:
    """(non-baseline models sorted, baseline); an explicit baseline that has no record is a UserError. The
    baseline may name a seed group."""
    models = seed_groups({lr.record.model for lr in loaded}, group)
    if baseline is None:
        return models, None
    by_name = {m.name: m for m in models}
    if baseline not in by_name:
        owner = next((m for m in models if baseline in m.members), None)
        if owner is not None:
            raise UserError(
                f"--baseline {baseline!r} is one seed of {owner.label}; pass --baseline {owner.name} "
                "(or --no-group)"
            )
        raise UserError(
            f"--baseline {baseline!r}: no records for that model; models: {', '.join(m.name for m in models)}"
        )
    return [m for m in models if m.name != baseline], by_name[baseline]


def default_baseline(loaded: list[LoadedRecord], group: str | None = SEED_PATTERN) -> str | None:
    """The baseline when none is named: a model (or seed group) named 'clip' if there is one."""
    names = {m.name for m in seed_groups({lr.record.model for lr in loaded}, group)}
    return "clip" if "clip" in names else None


def _gain(a: float | None, b: float | None) -> float | None:
    """``a - b`` rounded to 12 decimals (so 0.6 - 0.5 reads 0.1), None when either is undefined."""
    return None if a is None or b is None else round(a - b, 12)


def _mean_std(values: list[float | None]) -> tuple[float | None, float | None]:
    """Mean and std (ddof=1) over seeds; a single value is itself (std None); any undefined seed: (None, None)."""
    if not values or any(v is None for v in values):
        return None, None
    if len(values) == 1:
        return values[0], None
    return round(math.fsum(values) / len(values), 12), statistics.stdev(values)


def seed_pairs(model: Model, base: Model) -> list[tuple[str, str]]:
    """``model``'s and ``base``'s seeds paired by what follows the recipe name (``silc-s0`` with ``clip-s0``);
    empty unless both are seed groups of the same seeds."""
    if not (model.is_group and base.is_group):
        return []
    ours = {a.removeprefix(model.name): a for a in model.members}
    theirs = {a.removeprefix(base.name): a for a in base.members}
    return [(ours[k], theirs[k]) for k in sorted(ours, key=_natural)] if ours.keys() == theirs.keys() else []


def _seed_gain_interval(
    pairs: list[tuple[str, str]], values: dict[str, float | None]
) -> tuple[float | None, float | None]:
    diffs = [values.get(a) - values.get(b) for a, b in pairs if None not in (values.get(a), values.get(b))]
    if len(pairs) < 2 or len(diffs) < len(pairs):
        return None, None
    ci = uncertainty.seed_interval(diffs)
    return round(ci["low"], 12), round(ci["high"], 12)


def _significant(low: float | None, high: float | None) -> bool:
    """Whether an interval excludes 0 (an undefined one never does)."""
    return low is not None and high is not None and (low > 0 or high < 0)


def significant_column(gain_column: str) -> str:
    """The CSV column saying whether ``gain_column``'s interval excludes 0: ``significant [model]``."""
    return "significant" + gain_column.removeprefix("gain")


class PairedGains:
    """Paired-bootstrap intervals of gains from the records' per-sample outcomes.

    ``resamples`` None: as many resamples as the records' own intervals used (their ``uncertainty`` block; the
    fewest where the records of a comparison differ, e.g. AP records made with fewer), with their seed; 0: none. A record without outcomes (an old record, a harness that keeps none, an outcomes file
    not copied with the record) gives no interval. Records of one comparison evaluated on different units are
    refused, naming both.
    """

    def __init__(self, loaded: list[LoadedRecord], resamples: int | None = None) -> None:
        if resamples is not None and (resamples < 0 or resamples == 1):
            raise UserError("--bootstrap must be 0 (no intervals) or >= 2")
        self.resamples = resamples
        self.by_cell = {
            (
                lr.record.model,
                lr.record.benchmark,
                protocol_hash(lr.record.protocol),
                lr.record.dataset_root,
            ): lr
            for lr in loaded
        }
        self._outcomes: dict[Path, Outcomes | None] = {}
        self._cache: dict[tuple, dict[str, np.ndarray] | None] = {}
        self.active = any(self.resamples_for([lr]) > 0 for lr in loaded if self._declares(lr))

    @staticmethod
    def _declares(lr: LoadedRecord) -> bool:
        return bool(lr.record.uncertainty.get("outcomes"))

    def resamples_for(self, lrs: list[LoadedRecord]) -> int:
        if self.resamples is not None:
            return self.resamples
        return min(int(lr.record.uncertainty.get("resamples", uncertainty.DEFAULT_RESAMPLES)) for lr in lrs)

    @staticmethod
    def seed_for(lrs: list[LoadedRecord]) -> int:
        return int(lrs[0].record.uncertainty.get("seed", uncertainty.DEFAULT_SEED))

    def records(self, key: RowKey, model: Model) -> list[LoadedRecord] | None:
        """The records of ``model``'s members in ``key``'s row (None if a member has none)."""
        lrs = [
            self.by_cell.get((a, key.benchmark, key.protocol_hash, key.dataset_root)) for a in model.members
        ]
        return None if any(lr is None for lr in lrs) else lrs

    @staticmethod
    def check_units(lrs: list[LoadedRecord]) -> None:
        """Refuse records that were evaluated on different units (their ``units_sha256`` differ)."""
        first = next((lr for lr in lrs if lr.record.uncertainty.get("units_sha256")), None)
        for lr in lrs:
            a, b = first.record.uncertainty if first else {}, lr.record.uncertainty
            if first and b.get("units_sha256") and b["units_sha256"] != a["units_sha256"]:
                raise UserError(
                    f"cannot pair {first.path} with {lr.path}: evaluated on different units ("
                    f"{a.get('num_units')} vs {b.get('num_units')} {a.get('unit') or 'units'}, units sha256 "
                    f"{a['units_sha256'][:12]} vs {b['units_sha256'][:12]}); compare records of the same dataset"
                )

    def outcomes(self, lr: LoadedRecord) -> Outcomes | None:
        """The record's per-sample outcomes (None when it has none or the file was not kept with it); a file that
        does not match its record is a UserError."""
        if not self._declares(lr):
            return None
        path = artefacts_dir(lr.path) / str(lr.record.uncertainty["outcomes"])
        if path not in self._outcomes:
            self._outcomes[path] = self._load(lr, path) if path.is_file() else None
        return self._outcomes[path]

    @staticmethod
    def _load(lr: LoadedRecord, path: Path) -> Outcomes:
        data = path.read_bytes()
        want = lr.record.uncertainty.get("outcomes_sha256")
        if want and hashlib.sha256(data).hexdigest() != want:
            raise UserError(
                f"{path}: per-sample outcomes do not match their record {lr.path} (sha256 differs)"
            )
        out = Outcomes.load(path, str(lr.record.uncertainty.get("unit", "")))
        if out.units_sha256 != lr.record.uncertainty.get("units_sha256", out.units_sha256):
            raise UserError(f"{path}: per-sample outcomes do not match their record {lr.path} (units differ)")
        return out

    def replicates(self, key: RowKey, models: list[Model]) -> list[dict[str, np.ndarray]] | None:
        """Bootstrap replicates of the headline metrics of each of ``models`` (seeds averaged per resample) in
        ``key``'s row, all on the same resampled units; None where an interval cannot be had."""
        groups = [self.records(key, m) for m in models]
        if any(g is None for g in groups):
            return None
        lrs = [lr for g in groups for lr in g]
        self.check_units(lrs)
        cache_key = (key.benchmark, key.protocol_hash, key.dataset_root, tuple(m.members for m in models))
        if cache_key not in self._cache:
            self._cache[cache_key] = None
            harness = _harness(key.benchmark)
            outcomes = [[self.outcomes(lr) for lr in g] for g in groups]
            resamples = self.resamples_for(lrs) if all(self._declares(lr) for lr in lrs) else 0
            if harness is not None and resamples > 0 and all(o is not None for g in outcomes for o in g):
                with contextlib.suppress(NotImplementedError):  # a harness that keeps no outcomes yet
                    self._cache[cache_key] = uncertainty.paired_replicates(
                        harness.metrics_from_counts, outcomes, resamples, self.seed_for(lrs)
                    )
        return self._cache[cache_key]

    def gain_interval(self, key: RowKey, model: Model, base: Model) -> tuple[float | None, float | None]:
        """(low, high) of the 95 % paired-bootstrap interval of ``model`` − ``base`` on ``key``'s metric."""
        reps = self.replicates(key, [model, base])
        if reps is None or key.metric not in reps[0] or key.metric not in reps[1]:
            return None, None
        ci = uncertainty.interval(reps[0][key.metric] - reps[1][key.metric])
        low, high = ci["low"], ci["high"]
        return (None, None) if low is None or high is None else (round(low, 12), round(high, 12))


def _put(
    row: dict[str, Any], column: str, model: Model, values: dict[str, float | None], stds: dict[str, str]
) -> float | None:
    """``model``'s value in ``row`` (a group's mean, and its std in ``column + STD``, noted in ``stds``)."""
    mean, std = _mean_std([values.get(a) for a in model.members])
    row[column] = mean
    if model.is_group:
        row[column + STD] = std
        stds[column] = column + STD
    return mean


def main_table(
    loaded: list[LoadedRecord],
    baseline: str | None,
    group: str | None = SEED_PATTERN,
    resamples: int | None = None,
) -> pd.DataFrame:
    """The paper's main results: benchmark, dataset, metric, each model, the baseline, and each model's gain,
    with the gain's paired-bootstrap interval (``gain_low``/``gain_high``) and ``significant`` when any record
    has per-sample outcomes."""
    others, base = _models(loaded, baseline, group)
    cells, names = _collect(loaded, key_only=True)
    pairing = PairedGains(loaded, resamples) if base is not None else None
    with_ci = pairing is not None and pairing.active
    gains = {m.label: "gain" if len(others) == 1 else f"gain {m.label}" for m in others} if base else {}
    rows, stds = [], {}
    for key in _ordered_rows(list(cells), names):
        vals = cells[key]
        row: dict[str, Any] = {"benchmark": names[key][0], "dataset": names[key][1], "metric": key.metric}
        means = {m.label: _put(row, m.label, m, vals, stds) for m in others}
        if base is not None and pairing is not None:
            base_mean = _put(row, f"{base.label} (baseline)", base, vals, stds)
            for m in others:
                g = gains[m.label]
                row[g] = _gain(means[m.label], base_mean)
                ours, theirs = pairing.records(key, m), pairing.records(key, base)
                if ours and theirs:
                    pairing.check_units(ours + theirs)
                pairs = seed_pairs(m, base)
                if pairs:
                    row[g + SEED_LOW], row[g + SEED_HIGH] = _seed_gain_interval(pairs, vals)
                if with_ci:
                    low, high = pairing.gain_interval(key, m, base) if row[g] is not None else (None, None)
                    row[g + LOW], row[g + HIGH] = low, high
                    row[significant_column(g)] = _significant(low, high) and (
                        not pairs or _significant(row[g + SEED_LOW], row[g + SEED_HIGH])
                    )
        rows.append(row)
    df = pd.DataFrame(rows)
    df.attrs["gains"] = gains
    df.attrs["intervals"] = (
        {g: (g + LOW, g + HIGH, significant_column(g)) for g in gains.values()} if with_ci else {}
    )
    df.attrs["seed_intervals"] = {
        gains[m.label]: (gains[m.label] + SEED_LOW, gains[m.label] + SEED_HIGH)
        for m in others
        if base is not None and seed_pairs(m, base)
    }
    df.attrs["std"] = stds
    return df


def ablation_table(
    loaded: list[LoadedRecord], baseline: str | None, group: str | None = SEED_PATTERN
) -> pd.DataFrame:
    """Configurations (models; a seed group as one row, mean ± std) as rows, the key metric of every
    benchmark/protocol as columns."""
    others, base = _models(loaded, baseline, group)
    cells, names = _collect(loaded, key_only=True)
    order = ([base] if base else []) + others
    any_group = any(m.is_group for m in order)
    columns = {}
    for key in _ordered_rows(list(cells), names):
        columns[f"{names[key][0]} {key.metric}"] = cells[key]
    rows, stds = [], {}
    for m in order:
        row: dict[str, Any] = {"configuration": m.label}
        for c, vals in columns.items():
            _put(row, c, m, vals, stds)
            if any_group:
                row.setdefault(c + STD, None)
        rows.append(row)
    df = pd.DataFrame(rows)
    df.attrs["std"] = stds
    return df


def full_table(
    loaded: list[LoadedRecord], baseline: str | None, group: str | None = SEED_PATTERN
) -> pd.DataFrame:
    """Every metric of every protocol: one row per (benchmark, protocol, dataset, metric), one column per model
    alias (every seed), and after a seed group's seeds its mean ± std."""
    others, base = _models(loaded, baseline, group)
    cells, names = _collect(loaded, key_only=False)
    by_hash = {protocol_hash(lr.record.protocol): lr.record for lr in loaded}
    order = others + ([base] if base else [])
    rows, stds = [], {}
    for key in _ordered_rows(list(cells), names):
        rec = by_hash[key.protocol_hash]
        row: dict[str, Any] = {
            "benchmark": key.benchmark,
            "protocol": rec.protocol_name,
            "protocol_hash": key.protocol_hash,
            "dataset": names[key][1],
            "metric": key.metric,
        }
        for m in order:
            row.update({a: cells[key].get(a) for a in m.members})
            if m.is_group:
                _put(row, m.label, m, cells[key], stds)
        rows.append(row)
    df = pd.DataFrame(rows)
    df.attrs["std"] = stds
    return df


def _ovss_variant(protocol: dict[str, Any], shared: dict[str, Any]) -> str:
    """The knobs of ``shared`` (those the eight ovss protocols agree on: dense mode, templates, PAMR, ...) that a
    record's ``protocol`` sets otherwise, as ``key=value, ...`` ('' for none; a knob it leaves out is the default)."""
    return ", ".join(
        f"{k}={_short(protocol.get(k, v))}" for k, v in shared.items() if protocol.get(k, v) != v
    )


def ovss_table(loaded: list[LoadedRecord], group: str | None = SEED_PATTERN) -> pd.DataFrame:
    """The open-vocabulary segmentation table as SCLIP / NACLIP print it: one row per model (a seed group as one
    row, mean ± std) and variant, the mIoU of each benchmark of ``OVSS_COLUMNS`` and their mean (undefined
    unless a model has all eight). A variant names the knobs shared by the eight protocols that its records set
    otherwise (``dense_mode=sclip``); one dataset's own knobs (sizes, names) do not split rows. Two records for
    one cell are refused; records of other benchmarks and protocols are left out."""
    harness = _harness(OVSS_BENCHMARK)
    if harness is None:
        raise UserError(f"table layout ovss: benchmark {OVSS_BENCHMARK!r} is not installed")
    first, *others = (harness.protocols[name] for name in OVSS_COLUMNS)
    shared = {k: v for k, v in first.items() if all(k in p and p[k] == v for p in others)}
    cells: dict[tuple[str, str], dict[str, LoadedRecord]] = defaultdict(dict)  # (alias, variant) -> column
    for lr in loaded:
        r = lr.record
        if r.benchmark != OVSS_BENCHMARK or r.protocol_name not in OVSS_COLUMNS:
            continue
        variant, column = _ovss_variant(r.protocol, shared), OVSS_COLUMNS[r.protocol_name]
        taken = cells[(r.model, variant)].get(column)
        if taken is not None:
            raise UserError(
                f"conflicting records for model {r.model!r}, {column} (protocol {r.protocol_name!r}"
                f"{', ' + variant if variant else ''}): {taken.path}, {lr.path}; keep one (or point --results at "
                "one run)"
            )
        cells[(r.model, variant)][column] = lr
    if not cells:
        raise UserError(
            f"table layout ovss: no {OVSS_BENCHMARK} records of the protocols {', '.join(OVSS_COLUMNS)} "
            "(run the ovss8 suite)"
        )
    models = seed_groups({alias for alias, _ in cells}, group)
    any_group = any(m.is_group for m in models)
    rows, stds = [], {}
    for model in models:
        for variant in sorted({v for alias, v in cells if alias in model.members}):
            row: dict[str, Any] = {"model": f"{model.label} ({variant})" if variant else model.label}
            values = {a: _ovss_values(cells.get((a, variant), {})) for a in model.members}
            for column in [*OVSS_COLUMNS.values(), OVSS_MEAN]:
                _put(row, column, model, {a: v[column] for a, v in values.items()}, stds)
                if any_group:
                    row.setdefault(column + STD, None)
            rows.append(row)
    df = pd.DataFrame(rows)
    df.attrs["std"] = stds
    df.attrs["benchmark"] = OVSS_BENCHMARK  # the metrics' scale (format_numbers)
    return df


def _ovss_values(records: dict[str, LoadedRecord]) -> dict[str, float | None]:
    """One model's (one alias, one variant) mIoU per ovss column, and their mean (None unless all eight are
    defined)."""
    values = {
        c: records[c].record.metrics.get(OVSS_METRIC) if c in records else None for c in OVSS_COLUMNS.values()
    }
    defined = [v for v in values.values() if v is not None]
    mean = round(math.fsum(defined) / len(defined), 12) if len(defined) == len(values) else None
    return {**values, OVSS_MEAN: mean}


def build_table(
    loaded: list[LoadedRecord],
    layout: str = "main",
    baseline: str | None = None,
    group: str | None = SEED_PATTERN,
    resamples: int | None = None,
) -> pd.DataFrame:
    """The numeric table for ``layout`` (undefined values are None). ``group``: the seed-alias pattern (None: no
    groups); ``resamples``: bootstrap resamples for the gains' intervals (None: as the records', 0: none)."""
    if layout not in LAYOUTS:
        raise UserError(f"unknown table layout {layout!r}; known: {', '.join(LAYOUTS)}")
    if layout == "main":
        return main_table(loaded, baseline, group, resamples)
    if layout == "ablation":
        return ablation_table(loaded, baseline, group)
    if layout == "ovss":
        return ovss_table(loaded, group)
    return full_table(loaded, baseline, group)


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
    (each column in the ablation layout, a std column as its mean's), so one benchmark's numbers line up."""
    cols = _numeric_columns(df)
    if layout == "ablation" or "benchmark" not in df.columns:
        by_col = {c: _decimals(list(df[c]), df.attrs.get("benchmark")) for c in cols}  # ovss: one benchmark's
        for c, s in df.attrs.get("std", {}).items():
            if c in by_col and s in by_col:
                by_col[s] = by_col[c]
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


def latex_escape(text: str) -> str:
    """``text`` safe in LaTeX (pandas' ``escape="latex"`` rules: & % $ # _ { } ~ ^ \\)."""
    mark = "\x00"
    return (
        text.replace("\\", mark)
        .replace(mark + " ", mark + "\\space ")
        .replace("&", "\\&")
        .replace("%", "\\%")
        .replace("$", "\\$")
        .replace("#", "\\#")
        .replace("_", "\\_")
        .replace("{", "\\{")
        .replace("}", "\\}")
        .replace("~ ", "~\\space ")
        .replace("~", "\\textasciitilde ")
        .replace("^ ", "^\\space ")
        .replace("^", "\\textasciicircum ")
        .replace(mark, "\\textbackslash ")
    )


def ci_column(gain_column: str) -> str:
    """The Markdown/LaTeX column holding ``gain_column``'s interval: ``gain [model] 95% CI``."""
    return f"{gain_column} {round(uncertainty.CONFIDENCE * 100)}% CI"


def seed_ci_column(gain_column: str) -> str:
    """The Markdown/LaTeX column holding the seed interval of ``gain_column``: ``gain [model] seeds 95% CI``."""
    return f"{gain_column} seeds {round(uncertainty.CONFIDENCE * 100)}% CI"


def _fold(df: pd.DataFrame, text: pd.DataFrame, fmt: str, latex_std: str) -> tuple[pd.DataFrame, set[str]]:
    """Fold the auxiliary columns into the text: ``mean ± std`` cells, a ``gain 95% CI`` column after each gain,
    the gains whose interval excludes 0 in bold. Returns the text and its right-aligned columns."""
    right = set(_numeric_columns(df))
    if fmt == "latex":
        text = text.map(lambda v: latex_escape(v) if isinstance(v, str) else v)
        bold = "\\textbf{{{}}}".format
        pm = "{{\\scriptsize $\\pm${}}}".format if latex_std == "small" else " $\\pm$ {}".format
    else:
        bold = "**{}**".format
        pm = " ± {}".format
    drop: set[str] = set()
    for column, std in df.attrs.get("std", {}).items():
        text[column] = [
            v if v == "n/a" or s == "n/a" else f"{v}{pm(s)}"
            for v, s in zip(text[column], text[std], strict=True)
        ]
        drop.add(std)
    order = [c for c in text.columns]
    for gain, (low, high, sig) in df.attrs.get("intervals", {}).items():
        ci = ci_column(gain)
        text[ci] = [
            "n/a" if "n/a" in (a, b) else f"[{a}, {b}]" for a, b in zip(text[low], text[high], strict=True)
        ]
        text[gain] = [bold(v) if bool(s) else v for v, s in zip(text[gain], df[sig], strict=True)]
        order.insert(order.index(gain) + 1, ci)
        right.add(ci)
        drop.update((low, high, sig))
    for gain, (low, high) in df.attrs.get("seed_intervals", {}).items():
        ci = seed_ci_column(gain)
        text[ci] = [
            "n/a" if "n/a" in (a, b) else f"[{a}, {b}]" for a, b in zip(text[low], text[high], strict=True)
        ]
        after = ci_column(gain) if ci_column(gain) in order else gain
        order.insert(order.index(after) + 1, ci)
        right.add(ci)
        drop.update((low, high))
    return text[[c for c in order if c not in drop]], right


def caption(df: pd.DataFrame) -> str:
    """What a main table's interval columns mean (empty when it has none), one line each."""
    lines = []
    if df.attrs.get("intervals"):
        lines.append(
            "gain 95% CI: paired percentile bootstrap over the evaluation's images (retrieval: images with their "
            "captions), same resamples for both models; **bold**: the interval excludes 0"
        )
    if df.attrs.get("seed_intervals"):
        lines.append(
            "gain seeds 95% CI: Student-t interval over the per-seed paired gains (seed i minus the baseline's "
            "seed i: the training-seed spread; the bootstrap averages the seeds per resample); **bold** then needs "
            "both intervals to exclude 0"
        )
    return "".join(f"{line}\n" for line in lines)


def render(df: pd.DataFrame, fmt: str, layout: str, latex_std: str = "small") -> str:
    r"""The table as Markdown, a LaTeX tabular, or CSV (CSV keeps full precision and the auxiliary columns:
    ``<model>_std``, ``gain_low``, ``gain_high``, ``significant``). ``latex_std``: ``small`` prints a seed group's
    ``mean{\scriptsize $\pm$std}`` as papers do, ``plain`` ``mean $\pm$ std``."""
    if fmt not in FORMATS:
        raise UserError(f"unknown table format {fmt!r}; known: {', '.join(FORMATS)}")
    if latex_std not in LATEX_STD:
        raise UserError(f"unknown --latex-std {latex_std!r}; known: {', '.join(LATEX_STD)}")
    if df.empty:
        raise UserError("no metrics to tabulate")
    if fmt == "csv":
        return df.to_csv(index=False)
    text, right = _fold(df, format_numbers(df, layout), fmt, latex_std)
    align = ["right" if c in right else "left" for c in text.columns]
    if fmt == "md":
        return text.to_markdown(index=False, disable_numparse=True, colalign=align) + "\n"
    column_format = "".join("r" if a == "right" else "l" for a in align)
    styler = text.style.hide(axis="index").format_index(escape="latex", axis=1)
    return styler.to_latex(hrules=True, column_format=column_format)
