"""Trajectory fingerprints: log reading, tolerance parsing, comparison with a reference, indistinguishable
variants and an exact file round trip."""

from __future__ import annotations

import json
import math

import pytest

from benchmarks.trajectories import (
    QUANTITIES,
    Trajectory,
    TrajectoryTolerance,
    compare_trajectories,
    indistinguishable_pairs,
    max_deviation_table,
    read_trajectories,
    read_trajectory,
    trajectory_table,
    write_trajectories,
)
from silc.errors import UserError

TOL = TrajectoryTolerance.from_config(
    {"rtol": {"default": 1e-5, "grad_norm": 1e-4}, "atol": {"default": 1e-8}}
)
STEPS = 10


def make_traj(seed: float = 0.0, quantities: tuple[str, ...] = QUANTITIES) -> Trajectory:
    """Smooth, irrational-looking values (full-precision floats) for steps 1..STEPS."""
    steps = tuple(range(1, STEPS + 1))
    return Trajectory(
        steps,
        {
            q: tuple(math.exp(-s / 7) * (i + 1) + math.pi * seed + 0.1 for s in steps)
            for i, q in enumerate(quantities)
        },
    )


def perturb(traj: Trajectory, quantity: str, step: int, rel: float) -> Trajectory:
    values = dict(traj.values)
    values[quantity] = tuple(
        v * (1 + rel) if s == step else v for s, v in zip(traj.steps, values[quantity], strict=True)
    )
    return Trajectory(traj.steps, values)


def finding(findings, variant, quantity):
    (f,) = [f for f in findings if (f.variant, f.quantity) == (variant, quantity)]
    return f


def test_identical_trajectories_pass():
    ref = {
        "silc": make_traj(),
        "clip": make_traj(1, ("loss", "loss_contrastive", "grad_norm", "logit_scale")),
    }
    findings = compare_trajectories(ref, dict(ref), TOL)
    assert len(findings) == len(QUANTITIES) + 4 and all(f.status == "ok" for f in findings)
    assert all(f.max_rel_deviation == 0.0 and f.first_step is None for f in findings)
    assert trajectory_table(findings).empty


def test_perturbation_is_reported_moved_at_its_step():
    ref = {"silc": make_traj()}
    cur = {"silc": perturb(make_traj(), "grad_norm", 5, 1e-3)}
    findings = compare_trajectories(ref, cur, TOL)
    f = finding(findings, "silc", "grad_norm")
    assert (f.status, f.first_step, f.max_step) == ("moved", 5, 5)
    assert f.max_rel_deviation == pytest.approx(1e-3, rel=1e-6)
    assert [g.quantity for g in findings if g.failed] == ["grad_norm"]
    table = trajectory_table(findings)
    assert table.to_dict("records") == [
        {
            "variant": "silc",
            "quantity": "grad_norm",
            "first_step": 5,
            "max_rel_deviation": f.max_rel_deviation,
            "at_step": 5,
            "status": "moved",
            "detail": "",
        }
    ]


def test_small_noise_passes_and_the_tolerance_is_per_quantity():
    cur = make_traj()
    for q in QUANTITIES:
        for s in (2, 7):
            cur = perturb(cur, q, s, 1e-7 if s == 2 else -1e-7)
    assert not any(f.failed for f in compare_trajectories({"v": make_traj()}, {"v": cur}, TOL))
    # 5e-5 is inside grad_norm's 1e-4 but outside the default 1e-5.
    moved = perturb(perturb(make_traj(), "grad_norm", 3, 5e-5), "loss", 4, 5e-5)
    failed = {
        f.quantity: f.first_step
        for f in compare_trajectories({"v": make_traj()}, {"v": moved}, TOL)
        if f.failed
    }
    assert failed == {"loss": 4}


def test_missing_variant_quantity_or_step_fails():
    ref = {"a": make_traj(), "b": make_traj(1)}
    no_variant = compare_trajectories(ref, {"a": make_traj()}, TOL)
    assert {(f.variant, f.status) for f in no_variant if f.failed} == {("b", "missing")}
    extra_variant = compare_trajectories({"a": make_traj()}, ref, TOL)
    assert {(f.variant, f.status, f.detail) for f in extra_variant if f.failed} == {
        ("b", "missing", "variant not in reference")
    }
    fewer = {"a": make_traj(quantities=QUANTITIES[:-1]), "b": make_traj(1)}
    failed = [f for f in compare_trajectories(ref, fewer, TOL) if f.failed]
    assert [(f.variant, f.quantity, f.status) for f in failed] == [("a", "center_norm", "missing")]
    short = make_traj()
    short = Trajectory(short.steps[:6] + short.steps[7:], {q: v[:6] + v[7:] for q, v in short.values.items()})
    failed = [f for f in compare_trajectories({"a": make_traj()}, {"a": short}, TOL) if f.failed]
    assert len(failed) == len(QUANTITIES)
    assert all(
        f.status == "missing" and f.first_step == 7 and f.detail == "step 7 not in current run"
        for f in failed
    )


def test_not_logged_steps_match_only_not_logged_steps():
    base = make_traj()
    late = dict(base.values, loss_distill=(math.nan,) * 3 + base.values["loss_distill"][3:])
    late_traj = Trajectory(base.steps, late)
    assert not any(f.failed for f in compare_trajectories({"v": late_traj}, {"v": late_traj}, TOL))
    f = finding(compare_trajectories({"v": late_traj}, {"v": base}, TOL), "v", "loss_distill")
    assert (f.status, f.first_step, f.max_rel_deviation) == ("moved", 1, math.inf)


def test_indistinguishable_pairs():
    clip = make_traj(quantities=("loss", "loss_contrastive", "grad_norm", "logit_scale"))
    trajs = {"silc": make_traj(), "noop-knob": make_traj(), "other": make_traj(2), "clip": clip}
    assert indistinguishable_pairs(trajs, TOL) == [("noop-knob", "silc")]
    trajs["noop-knob"] = perturb(make_traj(), "center_norm", STEPS, 1e-3)
    assert indistinguishable_pairs(trajs, TOL) == []
    # A quantity logged by only one variant is a difference even when the shared ones agree.
    assert indistinguishable_pairs({"a": make_traj(), "b": make_traj(quantities=QUANTITIES[:-1])}, TOL) == []


def test_max_deviation_table():
    ref = {"a": make_traj(), "b": make_traj(1)}
    cur = {"a": perturb(make_traj(), "loss", 3, 2e-6), "b": perturb(make_traj(1), "loss", 8, -5e-6)}
    table = max_deviation_table(ref, cur).set_index("quantity")
    assert list(table.index) == list(QUANTITIES)
    assert table.loc["loss", "max_rel_deviation"] == pytest.approx(5e-6, rel=1e-6)
    assert (table.loc["loss", "variant"], table.loc["loss", "at_step"]) == ("b", 8)
    assert table.loc["grad_norm", "max_rel_deviation"] == 0.0


def test_round_trip_is_exact(tmp_path):
    base = make_traj()
    late = Trajectory(
        base.steps, dict(base.values, loss_distill=(math.nan,) + base.values["loss_distill"][1:])
    )
    trajs = {"silc": late, "tiny": Trajectory((1, 2), {"loss": (0.1 + 0.2, 5e-324)})}
    meta = {"steps": STEPS, "torch": "2.x"}
    path = write_trajectories(tmp_path / "ref" / "trajectories.json", trajs, meta)
    got, got_meta = read_trajectories(path)
    assert got_meta == meta and set(got) == set(trajs)
    for name, t in trajs.items():
        assert got[name].steps == t.steps and set(got[name].values) == set(t.values)
        for q, vals in t.values.items():
            assert [v.hex() for v in got[name].values[q]] == [v.hex() for v in vals]
    text = path.read_text()
    assert "NaN" not in text and json.loads(text)["variants"]["silc"]["values"]["loss_distill"][0] is None


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "does not exist"),
        ("{not json", "not a JSON file"),
        ('{"variants": {}}', "'meta' and 'variants'"),
        (
            '{"meta": {}, "variants": {"a": {"steps": [1], "values": {"loss": [1, 2]}}}}',
            "variants.a.values.loss",
        ),
        ('{"meta": {}, "variants": {"a": {"steps": [1], "values": {"lss": [1]}}}}', "variants.a.values.lss"),
        ('{"meta": {}, "variants": {"a": {"steps": [1], "values": {"loss": ["x"]}}}}', "numbers or null"),
    ],
)
def test_bad_trajectory_file_is_a_user_error(tmp_path, content, message):
    path = tmp_path / "traj.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(UserError, match=message) as err:
        read_trajectories(path)
    assert str(path) in str(err.value)


def write_log(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_read_trajectory_from_a_training_log(tmp_path):
    records = [
        {"step": s, "epoch": 0, "loss": 1.0 / s, "grad_norm": 0.5 + s, "logit_scale": 14.2, "lr": 1e-3}
        for s in range(1, 5)
    ]
    records[2]["loss_distill"] = 0.25  # logged from step 3 on only (late distillation start)
    records[3]["loss_distill"] = 0.125
    records.insert(2, {"step": 2, "eval/zeroshot/top1": 0.5, "loss": 9.0})
    records.append({"step": 4, "note": "no quantities"})
    records.append(
        {"step": 2, "loss": 0.75, "grad_norm": 2.5, "logit_scale": 14.2}
    )  # resumed: later line wins
    traj = read_trajectory(write_log(tmp_path / "log.jsonl", records), 4)
    assert traj.steps == (1, 2, 3, 4)
    assert list(traj.values) == ["loss", "loss_distill", "grad_norm", "logit_scale"]
    assert traj.values["loss"] == (1.0, 0.75, 1 / 3, 0.25)
    assert traj.values["loss_distill"][2:] == (0.25, 0.125) and all(
        map(math.isnan, traj.values["loss_distill"][:2])
    )
    assert read_trajectory(tmp_path / "log.jsonl", 2).steps == (1, 2)


def test_read_trajectory_needs_every_step(tmp_path):
    log = write_log(tmp_path / "log.jsonl", [{"step": s, "loss": 1.0} for s in (1, 2, 4, 6)])
    with pytest.raises(UserError, match=r"log\.jsonl: no training record for step 3 \(.*log_every: 1\)"):
        read_trajectory(log, 6)
    with pytest.raises(UserError, match="does not exist"):
        read_trajectory(tmp_path / "nope.jsonl", 1)
    (tmp_path / "bad.jsonl").write_text('{"step": 1, "loss": 1.0}\n{oops\n')
    with pytest.raises(UserError, match=r"bad\.jsonl:2: not a JSON line"):
        read_trajectory(tmp_path / "bad.jsonl", 1)
    write_log(tmp_path / "str.jsonl", [{"step": 1, "loss": "high"}])
    with pytest.raises(UserError, match=r"str\.jsonl:1: loss must be a number"):
        read_trajectory(tmp_path / "str.jsonl", 1)


@pytest.mark.parametrize(
    ("obj", "where"),
    [
        ([1e-5], "suite.trajectory_tolerances: expected a mapping"),
        ({"rtl": {}}, "suite.trajectory_tolerances: expected a mapping"),
        ({"rtol": 1e-5}, "suite.trajectory_tolerances.rtol: expected a mapping"),
        ({"rtol": {"default": -1}}, "suite.trajectory_tolerances.rtol.default: tolerance must be"),
        ({"atol": {"loss": "x"}}, "suite.trajectory_tolerances.atol.loss: tolerance must be"),
        ({"rtol": {"default": float("nan")}}, "suite.trajectory_tolerances.rtol.default: tolerance must be"),
        ({"rtol": {"grad_nrm": 1e-4}}, "suite.trajectory_tolerances.rtol.grad_nrm: unknown quantity"),
    ],
)
def test_bad_tolerances_are_user_errors(obj, where):
    with pytest.raises(UserError, match=f"^{where}"):
        TrajectoryTolerance.from_config(obj, "suite.trajectory_tolerances")


def test_tolerance_lookup_and_isclose_semantics():
    assert TOL.bounds("grad_norm") == (1e-4, 1e-8) and TOL.bounds("loss") == (1e-5, 1e-8)
    assert TrajectoryTolerance.from_config({}).bounds("loss") == (0.0, 0.0)
    assert TOL.close("loss", (100.0, 0.0), (100.001, 1e-8)).tolist() == [True, True]
    assert TOL.close("loss", (100.0, 0.0), (100.0011, 2e-8)).tolist() == [False, False]
