"""The regression comparison: hand-made records against a reference, inside and outside the tolerances."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.regress import (
    Tolerances,
    compare,
    findings_table,
    read_reference,
    write_reference,
)
from silc.errors import UserError
from tests.test_product_tables import make_record

TOL = Tolerances.from_config({"default": 0.02, "mIoU": 1.5, "seg-ade20k/aAcc": 0.5, "det-ovcoco/*": 4})


def reference_records():
    return [
        make_record("clip", "zeroshot-cls", "default", {"t": 1}, {"acc1": 0.5, "acc5": 0.9, "acc10": None}),
        make_record("silc", "seg-ade20k", "synth", {"c": 64}, {"mIoU": 20.0, "aAcc": 60.0}),
    ]


@pytest.fixture
def reference(tmp_path: Path) -> list[dict]:
    path = write_reference(tmp_path / "ref.jsonl", reference_records())
    return read_reference(path)


def test_tolerance_lookup_order() -> None:
    assert TOL.for_metric("seg-ade20k", "aAcc") == 0.5
    assert TOL.for_metric("other", "aAcc") == 0.02
    assert TOL.for_metric("seg-ade20k", "mIoU") == 1.5
    assert TOL.for_metric("det-ovcoco", "mIoU") == 4.0


def test_identical_records_pass(reference) -> None:
    findings = compare(reference, reference_records(), TOL)
    assert len(findings) == 5 and not any(f.failed for f in findings)
    assert findings_table(findings).empty


def test_changes_within_tolerance_pass(reference) -> None:
    records = reference_records()
    records[0].metrics["acc1"] = 0.5 - 0.02  # exactly at the tolerance
    records[1].metrics["mIoU"] = 21.4
    assert not any(f.failed for f in compare(reference, records, TOL))


def test_worse_metric_fails(reference) -> None:
    records = reference_records()
    records[1].metrics["mIoU"] = 18.4  # 1.6 below, tolerance 1.5
    records[0].metrics["acc5"] = 0.95  # 0.05 above, tolerance 0.02: a change to review
    failed = [f for f in compare(reference, records, TOL) if f.failed]
    assert [(f.model, f.metric, f.status) for f in failed] == [
        ("clip", "acc5", "improved"),
        ("silc", "mIoU", "regressed"),
    ]
    table = findings_table(failed)
    assert table["delta"].tolist() == [0.05, -1.6]


def test_standard_error_tolerance() -> None:
    tol = Tolerances.from_config({"default": 0.02, "z": 4.0})
    assert tol.for_metric("zeroshot-cls", "acc1", 0.003, 0.004) == pytest.approx(4.0 * 0.005)
    assert tol.for_metric("zeroshot-cls", "acc1", None, 0.004) == 0.02  # one side without an SE: absolute


def test_record_or_metric_only_in_the_current_run_fails(reference) -> None:
    records = reference_records()
    records[0].metrics["acc20"] = 0.99  # a metric the reference does not have
    extra = make_record("local-8", "zeroshot-cls", "default", {"t": 1}, {"acc1": 0.4})
    failed = [(f.model, f.metric, f.status) for f in compare(reference, [*records, extra], TOL) if f.failed]
    assert failed == [("clip", "acc20", "missing"), ("local-8", "acc1", "missing")]


def test_missing_and_undefined_fail(reference) -> None:
    records = reference_records()
    records[0].metrics["acc10"] = 0.99  # was undefined in the reference
    del records[1].metrics["aAcc"]
    status = {(f.metric, f.status) for f in compare(reference, records, TOL) if f.failed}
    assert status == {("acc10", "undefined"), ("aAcc", "missing")}
    assert all(f.status == "missing" for f in compare(reference, records[:1], TOL) if f.model == "silc")


def test_changed_protocol_is_missing(reference) -> None:
    records = reference_records()
    records[1].protocol = {"c": 128}
    assert {f.status for f in compare(reference, records, TOL) if f.model == "silc"} == {"missing"}


def test_bad_reference_and_tolerances(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"model": "x"}) + "\n")
    with pytest.raises(UserError, match=r"bad.jsonl:1: a reference line needs keys"):
        read_reference(bad)
    bad.write_text("{not json\n")
    with pytest.raises(UserError, match=r"bad.jsonl:1: not a JSON line"):
        read_reference(bad)
    with pytest.raises(UserError, match="does not exist"):
        read_reference(tmp_path / "none.jsonl")
    with pytest.raises(UserError, match="needs a 'default'"):
        Tolerances.from_config({"mIoU": 1})
    with pytest.raises(UserError, match="tolerances.mIoU: tolerance must be a number >= 0"):
        Tolerances.from_config({"default": 0.1, "mIoU": -1})
