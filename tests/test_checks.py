"""Statistical checks on real records with per-sample outcomes (zero-shot, 4 classes: chance 0.25 on 64 images):
at/above chance, paired gains, missing models, suite-file errors, and the signal gate with its exemptions."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from benchmarks.checks import (
    chance_exemptions,
    checks_table,
    distance_se,
    parse_checks,
    run_checks,
    signal_findings,
    signal_table,
)
from benchmarks.registry import harnesses
from benchmarks.table_rows import LoadedRecord, load_results
from silc.errors import UserError
from tests.test_uncertainty_tables import UNITS, write_with_outcomes, zs_arrays

PROTOCOL = {"top_k": [1], "num_classes": 4}  # as the zero-shot harness pins it


def first(correct: int, offset: int = 0) -> np.ndarray:
    """64 images, ``correct`` of them right (from ``offset`` on, wrapping), spread evenly over the classes."""
    return np.roll(np.arange(len(UNITS)) < correct, offset)


@pytest.fixture(autouse=True)
def _registered() -> None:
    harnesses()  # write_with_outcomes reads the registry, filled on first use


@pytest.fixture
def loaded(tmp_path: Path) -> list[LoadedRecord]:
    for model, correct in {"at-chance": first(16), "strong": first(60), "weak": first(24)}.items():
        write_with_outcomes(tmp_path, model, "zeroshot-cls", zs_arrays(correct), protocol=PROTOCOL)
    write_with_outcomes(tmp_path, "twin", "zeroshot-cls", zs_arrays(first(24)), protocol=PROTOCOL)
    for seed, offset in enumerate((0, 20)):
        arrays = zs_arrays(first(16, offset))
        write_with_outcomes(tmp_path, f"distill-s{seed}", "zeroshot-cls", arrays, protocol=PROTOCOL)
    return load_results(tmp_path)


def checks(text: str) -> list:
    return parse_checks(yaml.safe_load(text), "suite.yaml: checks")


def one(loaded: list[LoadedRecord], kind: str, model: str, **extra: str) -> tuple[bool, str]:
    lines = "\n".join(f"  {k}: {v}" for k, v in extra.items())
    body = f"c:\n  finding: f\n  kind: {kind}\n  model: {model}\n  metrics: [zeroshot-cls/acc1]\n{lines}"
    (result,) = run_checks(checks(body), loaded)
    return result.passed, result.details[0]


def test_a_model_at_chance_passes_not_above_chance_and_fails_above_chance(loaded) -> None:
    passed, detail = one(loaded, "not_above_chance", "at-chance")
    assert passed and detail.startswith("zeroshot-cls/acc1: 0.25 vs chance 0.25: +0.0 SE"), detail
    passed, detail = one(loaded, "above_chance", "at-chance", margin_se=5)
    assert not passed and detail.endswith("needs >= 5 SE"), detail


def test_a_model_far_above_chance_fails_not_above_chance_and_passes_above_chance(loaded) -> None:
    passed, detail = one(loaded, "not_above_chance", "strong")
    assert not passed and detail.startswith("zeroshot-cls/acc1: 0.9375 vs chance 0.25"), detail
    assert one(loaded, "above_chance", "strong")[0]


def test_a_seed_group_is_judged_on_its_seed_mean(loaded) -> None:
    passed, detail = one(loaded, "not_above_chance", "distill")
    assert passed and "0.25 vs chance 0.25" in detail
    assert not one(loaded, "above_chance", "distill")[0]


def test_gain_needs_a_paired_interval_clear_of_zero_in_the_stated_direction(loaded) -> None:
    passed, detail = one(loaded, "gain", "strong", baseline="weak", direction="positive")
    assert passed and detail.startswith("zeroshot-cls/acc1: gain +0.5625 over weak, 95% paired CI ["), detail
    assert not one(loaded, "gain", "strong", baseline="weak", direction="negative")[0]
    assert one(loaded, "gain", "weak", baseline="strong", direction="negative")[0]
    passed, detail = one(
        loaded, "gain", "twin", baseline="weak"
    )  # identical outcomes: the interval is [0, 0]
    assert not passed and detail.endswith("gain +0 over weak, 95% paired CI [+0, +0]"), detail


def test_missing_model_metric_or_baseline_fails_with_a_clear_detail(loaded) -> None:
    passed, detail = one(loaded, "above_chance", "nope")
    assert not passed and "no records of model 'nope'; models: at-chance, distill" in detail
    assert "no records of model 'gone'" in one(loaded, "gain", "strong", baseline="gone")[1]
    body = (
        "c: {finding: f, kind: above_chance, model: strong, metrics: [zeroshot-cls/acc5, zeroshot-cls/acc1]}"
    )
    (result,) = run_checks(checks(body), loaded)
    assert (
        not result.passed
        and result.details[0] == "zeroshot-cls/acc5: no zeroshot-cls record with acc5 for 'strong'"
    )
    assert result.details[1].startswith("zeroshot-cls/acc1: 0.9375")
    table = checks_table([result])
    assert table.columns.tolist() == ["check", "finding", "passed", "detail"]
    assert table.loc[0, "detail"] == "; ".join(result.details)


def test_the_brief_example_parses() -> None:
    parsed = checks(
        """
distill-has-no-language-alignment:
  finding: "distillation alone learns no image-text alignment (SiLC paper, Table 5)"
  kind: not_above_chance
  model: distill
  metrics: [zeroshot-cls/acc1, retrieval/image_retrieval_recall@1]
local-crops-help-dense:
  finding: local crops help dense tasks
  kind: gain
  model: local-8
  baseline: local-2
  metrics: [seg-ade20k/mIoU]
  direction: positive
"""
    )
    assert [c.name for c in parsed] == ["distill-has-no-language-alignment", "local-crops-help-dense"]
    assert parsed[0].metrics == (("zeroshot-cls", "acc1"), ("retrieval", "image_retrieval_recall@1"))
    assert parsed[1].baseline == "local-2" and parsed[1].direction == "positive"


@pytest.mark.parametrize(
    "body, message",
    [
        ("{finding: f, kind: gain, model: m, baseline: b, metrics: [zeroshot-cls/acc1], colour: red}",
         "suite.yaml: checks.c.colour: unknown key for a gain check"),
        ("{finding: f, kind: above_chance, model: m, metrics: [zeroshot-cls/acc1], baseline: b}",
         "suite.yaml: checks.c.baseline: unknown key for a above_chance check"),
        ("{finding: f, kind: better, model: m, metrics: [zeroshot-cls/acc1]}",
         "suite.yaml: checks.c.kind: 'better' is not one of not_above_chance, above_chance, gain"),
        ("{kind: not_above_chance, model: m, metrics: [zeroshot-cls/acc1]}", "suite.yaml: checks.c.finding: required"),
        ("{finding: f, kind: gain, model: m, metrics: [zeroshot-cls/acc1]}", "suite.yaml: checks.c.baseline: required"),
        ("{finding: f, kind: not_above_chance, model: m, metrics: [acc1]}",
         "suite.yaml: checks.c.metrics[0]: expected benchmark/metric, got 'acc1'"),
        ("{finding: f, kind: not_above_chance, model: m, metrics: [nope/acc1]}",
         "suite.yaml: checks.c.metrics[0]: unknown benchmark 'nope'"),
        ("{finding: f, kind: gain, model: m, baseline: b, metrics: [zeroshot-cls/acc1], direction: up}",
         "suite.yaml: checks.c.direction: 'up' is not one of positive, negative"),
        ("{finding: f, kind: above_chance, model: m, metrics: [zeroshot-cls/acc1], margin_se: -1}",
         "suite.yaml: checks.c.margin_se: expected a number >= 0"),
    ],
)  # fmt: skip
def test_bad_checks_are_user_errors_naming_the_key(body: str, message: str) -> None:
    with pytest.raises(UserError, match="^" + message.replace("[", r"\[").replace("]", r"\]")):
        checks(f"c: {body}")


def test_signal_flags_two_se_above_chance_passes_eight_and_respects_exemptions(tmp_path: Path) -> None:
    for model, correct in {"two-se": 24, "eight-se": 45, "at-chance": 16, "perfect": 64}.items():
        write_with_outcomes(tmp_path, model, "zeroshot-cls", zs_arrays(first(correct)), protocol=PROTOCOL)
    loaded = load_results(tmp_path)
    exempt = {("at-chance", "zeroshot-cls", "acc1")}
    found = {(f.model, f.metric): f for f in signal_findings(loaded, min_se=5.0, exempt=exempt)}
    assert len(found) == 8  # acc1 and mean per-class recall of each record
    two, eight = found[("two-se", "acc1")], found[("eight-se", "acc1")]
    assert 1.5 < two.distance < 2.5 and not two.passed and two.chance == 0.25
    assert 7 < eight.distance < 9 and eight.passed
    assert found[("at-chance", "acc1")].passed and found[("at-chance", "acc1")].exempt
    assert not found[("at-chance", "mean_per_class_recall")].passed  # not exempt: at chance fails
    assert found[("perfect", "acc1")].se == 0 and found[("perfect", "acc1")].passed  # se 0 above chance
    assert signal_table(list(found.values())).columns.tolist() == [
        "model", "benchmark", "protocol", "metric", "value", "chance", "se", "distance", "exempt", "passed",
    ]  # fmt: skip


def test_not_above_chance_checks_exempt_each_seed_of_their_model(loaded) -> None:
    body = "c: {finding: f, kind: not_above_chance, model: distill, metrics: [zeroshot-cls/acc1]}"
    assert chance_exemptions(checks(body), loaded) == {
        ("distill-s0", "zeroshot-cls", "acc1"),
        ("distill-s1", "zeroshot-cls", "acc1"),
    }


def test_distance_in_standard_errors() -> None:
    assert distance_se(0.5, 0.25, 0.05) == pytest.approx(5.0)
    assert distance_se(0.3, 0.25, 0.0) == math.inf and distance_se(0.25, 0.25, 0.0) == 0.0
    assert distance_se(0.2, 0.25, 0.0) == -math.inf
    assert math.isnan(distance_se(0.5, 0.25, None)) and math.isnan(distance_se(None, 0.25, 0.1))


def test_a_model_below_chance_is_not_above_chance(tmp_path: Path) -> None:
    """A biased guesser (e.g. a random text tower that favours a few classes) scores below chance: no skill."""
    write_with_outcomes(tmp_path, "biased", "zeroshot-cls", zs_arrays(first(4)), protocol=PROTOCOL)
    loaded = load_results(tmp_path)
    passed, detail = one(loaded, "not_above_chance", "biased")
    assert passed and detail.startswith("zeroshot-cls/acc1: 0.0625 vs chance 0.25"), detail
    assert not one(loaded, "above_chance", "biased")[0]
