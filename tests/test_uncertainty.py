"""The bootstrap core: resample counts, percentile intervals (parity with scipy), coverage, pairing, and the
records the runner writes with per-sample outcomes beside them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from benchmarks.records import artefacts_dir
from benchmarks.registry import get_harness
from benchmarks.runner import run_harness
from benchmarks.uncertainty import (
    Outcomes,
    bootstrap,
    interval,
    paired_replicates,
    resample_counts,
)
from silc.errors import UserError
from tests.global_fixtures import PrototypeEncoder, write_imagefolder

NAMES = ["apple", "boat", "cat", "drum", "eagle", "fern"]


def mean_of(key: str):
    """metrics_from_counts of a plain mean over units of ``arrays[key]``."""

    def metrics(arrays: dict[str, np.ndarray], counts: np.ndarray) -> dict[str, np.ndarray]:
        w = counts.astype(np.float64)
        return {"mean": w @ arrays[key].astype(np.float64) / w.sum(axis=1)}

    return metrics


def bernoulli(n: int, p: float, seed: int) -> Outcomes:
    hits = np.random.default_rng(seed).random(n) < p
    return Outcomes("image", [f"img{i}" for i in range(n)], {"hit": hits})


def test_resample_counts_are_scipys_draw_as_counts() -> None:
    counts = resample_counts(7, 5, seed=3)
    idx = np.random.default_rng(3).integers(0, 7, (5, 7))  # what scipy.stats.bootstrap draws with this rng
    assert counts.shape == (5, 7) and (counts.sum(axis=1) == 7).all()
    assert np.array_equal(counts, np.stack([np.bincount(row, minlength=7) for row in idx]))


def test_mean_interval_equals_scipy_percentile_bootstrap() -> None:
    outcomes = bernoulli(150, 0.3, seed=1)
    point, ci = bootstrap(mean_of("hit"), outcomes, resamples=1000, seed=7)
    ref = stats.bootstrap(
        (outcomes.arrays["hit"].astype(np.float64),),
        np.mean,
        n_resamples=1000,
        method="percentile",
        rng=np.random.default_rng(7),
    )
    assert point["mean"] == outcomes.arrays["hit"].mean()
    assert ci["mean"]["low"] == ref.confidence_interval.low
    assert ci["mean"]["high"] == ref.confidence_interval.high
    assert ci["mean"]["se"] == pytest.approx(ref.standard_error, rel=1e-12)


def test_percentile_interval_covers_a_known_bernoulli_p_about_95_percent() -> None:
    p, n, trials = 0.3, 200, 1000
    covered = 0
    for t in range(trials):
        _, ci = bootstrap(mean_of("hit"), bernoulli(n, p, seed=10_000 + t), resamples=500, seed=t)
        covered += ci["mean"]["low"] <= p <= ci["mean"]["high"]
    assert 0.93 <= covered / trials <= 0.97, covered / trials


def test_paired_gain_of_perfectly_correlated_models_has_zero_width() -> None:
    a = bernoulli(120, 0.4, seed=2)
    b = Outcomes("image", a.units, {"hit": a.arrays["hit"].copy()})
    ra, rb = paired_replicates(mean_of("hit"), [[a], [b]], resamples=1000, seed=0)
    paired = interval(ra["mean"] - rb["mean"])
    assert paired["low"] == paired["high"] == 0.0 and paired["se"] == 0.0
    # unpaired (independent resamples of each model) the same two models look uncertain
    ua = mean_of("hit")(a.arrays, resample_counts(120, 1000, seed=1))["mean"]
    ub = mean_of("hit")(b.arrays, resample_counts(120, 1000, seed=2))["mean"]
    unpaired = interval(ua - ub)
    assert unpaired["high"] - unpaired["low"] > 0.1


def test_seeds_of_one_recipe_are_averaged_per_resample() -> None:
    s0, s1, base = bernoulli(50, 0.6, 3), bernoulli(50, 0.5, 4), bernoulli(50, 0.2, 5)
    group, single = paired_replicates(mean_of("hit"), [[s0, s1], [base]], resamples=200, seed=0)
    counts = resample_counts(50, 200, seed=0)
    expected = (mean_of("hit")(s0.arrays, counts)["mean"] + mean_of("hit")(s1.arrays, counts)["mean"]) / 2
    assert np.allclose(group["mean"], expected, rtol=0, atol=1e-15)
    assert np.array_equal(single["mean"], mean_of("hit")(base.arrays, counts)["mean"])


def test_pairing_different_units_is_refused_in_one_line() -> None:
    a, b = bernoulli(10, 0.5, 1), bernoulli(11, 0.5, 1)
    with pytest.raises(UserError) as e:
        paired_replicates(mean_of("hit"), [[a], [b]], resamples=10)
    assert "different units" in str(e.value) and "\n" not in str(e.value)


def test_undefined_resamples_are_dropped_and_all_undefined_is_none() -> None:
    assert interval(np.array([np.nan, np.nan])) == {"low": None, "high": None, "se": None}
    kept = interval(np.array([0.0, np.nan, 1.0]))  # the quantiles of [0, 1] (linear, as scipy)
    assert kept["low"] == pytest.approx(0.025) and kept["high"] == pytest.approx(0.975)


def test_outcomes_round_trip_through_npz(tmp_path: Path) -> None:
    o = Outcomes("image", ["a.png", "b.png"], {"hit": np.array([True, False]), "rank": np.array([0, 3])})
    path, sha = o.save(tmp_path)
    back = Outcomes.load(path, "image")
    assert back.units == o.units and back.units_sha256 == o.units_sha256 and len(sha) == 64
    assert all(np.array_equal(back.arrays[k], o.arrays[k]) for k in o.arrays)
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(UserError, match="bad.npz: cannot read per-sample outcomes"):
        Outcomes.load(tmp_path / "bad.npz")


def test_zeroshot_record_carries_intervals_and_its_outcomes(tmp_path: Path) -> None:
    root = write_imagefolder(tmp_path / "ds", NAMES, {"val": 7})
    harness = get_harness("zeroshot-cls")
    protocol = harness.resolve_protocol(None)
    options = {"workers": 0, "cache_dir": str(tmp_path / "cache")}
    record, path, _ = run_harness(harness, PrototypeEncoder(NAMES), root, "default", protocol, tmp_path / "r",
                                  options=options)  # fmt: skip
    outcomes = Outcomes.load(artefacts_dir(path) / "outcomes.npz")
    assert len(outcomes.units) == record.num_samples == 42 and outcomes.units[0].startswith("val/")
    assert record.uncertainty["num_units"] == 42 and record.uncertainty["resamples"] == 1000
    assert record.uncertainty["units_sha256"] == outcomes.units_sha256
    point = harness.metrics_from_counts(outcomes.arrays, np.ones((1, 42), np.int64))
    for key in ("acc1", "acc5", "mean_per_class_recall"):
        assert float(point[key][0]) == record.metrics[key]  # exactly the recorded number
        ci = record.metrics_ci[key]
        assert ci["low"] <= record.metrics[key] <= ci["high"] and ci["se"] > 0
    # by hand: a resample that draws image 0 twice and drops image 1
    counts = np.ones((1, 42), np.int64)
    counts[0, 0], counts[0, 1] = 2, 0
    hits = outcomes.arrays["hits"][:, 0]
    assert harness.metrics_from_counts(outcomes.arrays, counts)["acc1"][0] == (
        (hits.sum() + hits[0] - hits[1]) / 42
    )


def test_bootstrap_zero_keeps_outcomes_but_no_intervals(tmp_path: Path) -> None:
    root = write_imagefolder(tmp_path / "ds", NAMES, {"val": 3})
    harness = get_harness("zeroshot-cls")
    options = {"workers": 0, "cache_dir": str(tmp_path / "cache"), "bootstrap": 0}
    record, path, _ = run_harness(harness, PrototypeEncoder(NAMES), root, "default", harness.resolve_protocol(None),
                                  tmp_path / "r", options=options)  # fmt: skip
    assert record.metrics_ci == {} and record.uncertainty["resamples"] == 0
    assert (artefacts_dir(path) / "outcomes.npz").is_file()
