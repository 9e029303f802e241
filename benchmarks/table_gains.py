"""A model's gain over the baseline and its intervals: the gain itself (:func:`rounded_gain`), the 95 % interval of
a paired bootstrap over the records' per-sample outcomes (:class:`PairedGains`: the same resampled units for the
model and the baseline, :mod:`benchmarks.uncertainty`), the Student-t interval over paired training seeds
(:func:`seed_gain_interval`) and whether an interval excludes 0 (:func:`significant`).

The main layout (``benchmarks/table_main.py``), the plots and the checks judge gains through these.
"""

from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

from benchmarks import uncertainty
from benchmarks.records import artefacts_dir, protocol_hash
from benchmarks.table_models import Model
from benchmarks.table_rows import LoadedRecord, RowKey, harness_of
from benchmarks.uncertainty import Outcomes
from silc.errors import UserError

if TYPE_CHECKING:
    import numpy as np


def rounded_gain(a: float | None, b: float | None) -> float | None:
    """``a - b`` rounded to 12 decimals (so 0.6 - 0.5 reads 0.1), None when either is undefined."""
    return None if a is None or b is None else round(a - b, 12)


def seed_gain_interval(
    pairs: list[tuple[str, str]], values: dict[str, float | None]
) -> tuple[float | None, float | None]:
    """(low, high) of the Student-t interval over the per-seed paired gains (``pairs``:
    :func:`benchmarks.table_models.seed_pairs`, the seeds' ``values``); (None, None) for fewer than two pairs or
    a seed without a value."""
    diffs = [values.get(a) - values.get(b) for a, b in pairs if None not in (values.get(a), values.get(b))]
    if len(pairs) < 2 or len(diffs) < len(pairs):
        return None, None
    ci = uncertainty.seed_interval(diffs)
    return round(ci["low"], 12), round(ci["high"], 12)


def significant(low: float | None, high: float | None) -> bool:
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
            harness = harness_of(key.benchmark)
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
