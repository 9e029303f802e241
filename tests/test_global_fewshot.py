"""Few-shot linear probe: nested seeded shot sampling, the C sweep, mean/std over seeds, non-trivial accuracy."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.fewshot import sample_shots
from benchmarks.registry import get_harness
from tests.global_fixtures import PrototypeEncoder, write_imagefolder

NAMES = ["apple", "boat", "cat", "drum", "eagle", "fern"]


def test_sample_shots_per_class_nested_and_seeded():
    labels = [i % 4 for i in range(40)]
    a = sample_shots(labels, 4, 5, seed=0)
    assert [len(c) for c in a] == [5, 5, 5, 5]
    assert all(labels[i] == c for c, idx in enumerate(a) for i in idx)
    assert a == sample_shots(labels, 4, 5, seed=0) and a != sample_shots(labels, 4, 5, seed=1)
    assert [idx[:2] for idx in a] == sample_shots(labels, 4, 2, seed=0)  # fewer shots: a prefix (nested)
    assert all(len(set(idx)) == 5 for idx in a)


def test_linear_probe_on_prototype_features(tmp_path):
    root = write_imagefolder(tmp_path / "ds", NAMES, {"train": 6, "val": 5})
    harness = get_harness("fewshot")
    protocol = harness.resolve_protocol(None, {"shots": [1, 4], "seeds": [0, 1, 2]})
    options = harness.parse_options({"cache_dir": tmp_path / "c", "workers": 0})
    ev = harness.evaluate(PrototypeEncoder(NAMES), root, protocol, options, tmp_path / "artefacts")
    runs = ev.extra["runs"]
    assert len(runs) == 6 and ev.num_samples == 30 and ev.extra["num_train_images_encoded"] <= 6 * 4 * 1 * 3
    for k in (1, 4):
        accs = [r["acc1"] for r in runs if r["k"] == k]
        assert ev.metrics[f"acc1_{k}shot_mean"] == pytest.approx(np.mean(accs))
        assert ev.metrics[f"acc1_{k}shot_std"] == pytest.approx(np.std(accs, ddof=1))
    assert all(r["C"] == protocol["one_shot_c"] and r["cv_accuracy"] == {} for r in runs if r["k"] == 1)
    assert all(r["C"] in protocol["c_grid"] and len(r["cv_accuracy"]) == 5 for r in runs if r["k"] == 4)
    assert ev.metrics["acc1_4shot_mean"] > 0.5  # chance is 1/6
