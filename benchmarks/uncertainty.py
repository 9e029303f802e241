"""How sure a number is: percentile-bootstrap intervals over a benchmark's independent units, and paired gains.

A harness keeps the per-unit outcomes its metrics are a function of (:class:`Outcomes`: one row per image, or
arrays indexed by image) and says how to compute its headline metrics from them for a resample given as
*counts* — how often each unit was drawn (``[B, n_units]`` integers). A count matrix instead of index lists keeps
every metric a weighted sum (vectorised, exact for 0/1 outcomes) and lets a ratio metric such as mIoU re-sum its
intersections and unions over the resampled images. The resample indices are ``numpy.random.default_rng(seed)
.integers(0, n, (B, n))``, the draw ``scipy.stats.bootstrap`` makes, so a mean-type metric's interval equals
scipy's percentile interval for the same seed. A paired gain uses the same counts for both models (possible when
both were evaluated on the same units), so what the two share cancels.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from silc.errors import UserError
from silc.io import atomic_write_bytes

DEFAULT_RESAMPLES = 1000
DEFAULT_SEED = 0
CONFIDENCE = 0.95
METHOD = "percentile bootstrap"
OUTCOMES_FILE = "outcomes.npz"

# counts [B, n_units] -> one array [B] per headline metric
MetricsFromCounts = Callable[[dict[str, np.ndarray], np.ndarray], dict[str, np.ndarray]]


@dataclass
class Outcomes:
    """Per-unit outcomes of one evaluation: ``units`` (ids of the independent units, in order) and arrays."""

    unit: str  # what one unit is, e.g. "image" or "image with its captions"
    units: list[str]
    arrays: dict[str, np.ndarray]

    @property
    def units_sha256(self) -> str:
        """Hash of the ordered unit ids: two evaluations can be paired only if theirs are equal."""
        return hashlib.sha256("\n".join(self.units).encode()).hexdigest()

    def to_bytes(self) -> bytes:
        """The outcomes as a compressed npz (``units`` as a string array next to the arrays)."""
        buf = io.BytesIO()
        np.savez_compressed(buf, __units__=np.asarray(self.units, dtype=str), **self.arrays)
        return buf.getvalue()

    def save(self, folder: Path) -> tuple[Path, str]:
        """Write ``folder/outcomes.npz`` atomically; returns its path and sha256."""
        data = self.to_bytes()
        return atomic_write_bytes(folder / OUTCOMES_FILE, data), hashlib.sha256(data).hexdigest()

    @classmethod
    def load(cls, path: Path, unit: str = "") -> Outcomes:
        """Read outcomes written by :meth:`save`; a missing or unreadable file is a UserError naming it."""
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
        except (OSError, ValueError) as e:
            raise UserError(f"{path}: cannot read per-sample outcomes ({e})") from None
        if "__units__" not in arrays:
            raise UserError(f"{path}: not an outcomes file (no unit ids)")
        return cls(unit, [str(u) for u in arrays.pop("__units__")], arrays)


def resample_counts(n_units: int, resamples: int, seed: int = DEFAULT_SEED) -> np.ndarray:
    """``[resamples, n_units]`` int64: how often each unit is drawn in each resample (with replacement)."""
    if n_units < 1:
        raise ValueError("a bootstrap needs at least one unit")
    idx = np.random.default_rng(seed).integers(0, n_units, (resamples, n_units))
    flat = idx + (np.arange(resamples) * n_units)[:, None]
    return np.bincount(flat.ravel(), minlength=resamples * n_units).reshape(resamples, n_units)


def interval(replicates: np.ndarray, confidence: float = CONFIDENCE) -> dict[str, float | None]:
    """Percentile interval and standard error of bootstrap replicates (NaN replicates, e.g. an undefined
    resample, are dropped; all NaN gives None)."""
    values = replicates[~np.isnan(replicates)]
    if values.size < 2:
        return {"low": None, "high": None, "se": None}
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(values, [alpha, 1.0 - alpha])
    return {"low": float(low), "high": float(high), "se": float(np.std(values, ddof=1))}


def seed_interval(differences: Sequence[float], confidence: float = CONFIDENCE) -> dict[str, float | None]:
    """Student-t interval of the mean of per-seed paired differences (seed i of a recipe minus seed i of the
    baseline; n - 1 degrees of freedom): how far a gain moves with the training seed, which a bootstrap over one
    evaluation set does not see. None for fewer than two seeds."""
    from scipy import stats

    values = np.asarray(differences, dtype=np.float64)
    if values.size < 2:
        return {"low": None, "high": None}
    half = stats.t.ppf(0.5 + confidence / 2.0, values.size - 1) * values.std(ddof=1) / np.sqrt(values.size)
    return {"low": float(values.mean() - half), "high": float(values.mean() + half)}


def bootstrap(
    metrics_from_counts: MetricsFromCounts,
    outcomes: Outcomes,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> tuple[dict[str, float], dict[str, dict[str, float | None]]]:
    """(point estimates, {metric: {low, high, se}}) of a harness's headline metrics over ``outcomes``."""
    n = len(outcomes.units)
    point = {
        k: float(v[0]) for k, v in metrics_from_counts(outcomes.arrays, np.ones((1, n), np.int64)).items()
    }
    replicates = metrics_from_counts(outcomes.arrays, resample_counts(n, resamples, seed))
    return point, {k: interval(np.asarray(v, dtype=np.float64)) for k, v in replicates.items()}


def paired_replicates(
    metrics_from_counts: MetricsFromCounts,
    groups: Sequence[Sequence[Outcomes]],
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> list[dict[str, np.ndarray]]:
    """Replicates ``[B]`` per metric for each group of outcomes (a model; several seeds of one recipe are
    averaged), all on the same resampled units. Groups on different units are refused."""
    first = groups[0][0]
    for group in groups:
        for o in group:
            if o.units_sha256 != first.units_sha256:
                raise UserError(
                    f"cannot pair evaluations on different units ({len(o.units)} vs {len(first.units)} "
                    f"{first.unit or 'units'}, units sha256 {o.units_sha256[:12]} vs {first.units_sha256[:12]})"
                )
    counts = resample_counts(len(first.units), resamples, seed)
    out = []
    for group in groups:
        per_seed = [metrics_from_counts(o.arrays, counts) for o in group]
        out.append(
            {k: np.mean([np.asarray(r[k], np.float64) for r in per_seed], axis=0) for k in per_seed[0]}
        )
    return out


def describe(outcomes: Outcomes, resamples: int, seed: int, seconds: float, sha256: str) -> dict[str, Any]:
    """The record's ``uncertainty`` block: how the intervals were made (not part of the protocol)."""
    return {
        "method": METHOD,
        "confidence": CONFIDENCE,
        "resamples": resamples,
        "seed": seed,
        "unit": outcomes.unit,
        "num_units": len(outcomes.units),
        "units_sha256": outcomes.units_sha256,
        "outcomes": OUTCOMES_FILE,
        "outcomes_sha256": sha256,
        "seconds": round(seconds, 3),
    }
