"""Trainer state probes: teacher–student distance and DINO centre norm are logged, match a float64 hand
computation from the checkpoint, and leave training bit-identical."""

from __future__ import annotations

import json

import pytest
import torch

from silc.checkpoint import load_checkpoint
from silc.config import config_from_dict
from silc.train import Trainer
from tests.train_fixtures import tiny_config, write_pairs_csv

PROBES = ("teacher_student_distance", "center_norm")
VOLATILE = {"samples_per_s", "peak_mem_mb", "time", *PROBES}


@pytest.fixture(scope="module")
def pairs_csv(tmp_path_factory):
    return write_pairs_csv(tmp_path_factory.mktemp("pairs"), n=12)


def make_trainer(run, pairs_csv, **sections) -> Trainer:
    sections.setdefault("train", {"steps": 3, "save_every": 0})
    return Trainer(config_from_dict(tiny_config(pairs_csv, **sections)), run)


def read_log(run) -> list[dict]:
    lines = (run / "log.jsonl").read_text().splitlines()
    return [rec for rec in map(json.loads, lines) if "loss" in rec]


def hand_distance(ckpt: dict, names: list[str]) -> float:
    """sqrt(Σ‖t − s‖²) / sqrt(Σ‖s‖²) in float64 over the teacher's parameters ``names``, from the checkpoint."""
    student = {k: v for k, v in ckpt["state_dict"].items() if k.startswith("visual.")}
    student.update({f"head.{k}": v for k, v in ckpt["head"].items()})
    diff = sum(float((ckpt["teacher"][n].double() - student[n].double()).square().sum()) for n in names)
    norm = sum(float(student[n].double().square().sum()) for n in names)
    return (diff / norm) ** 0.5


def test_probes_leave_training_bit_identical(tmp_path, pairs_csv, monkeypatch):
    with_probes = make_trainer(tmp_path / "a", pairs_csv)
    with_probes.run()
    without = make_trainer(tmp_path / "b", pairs_csv)
    monkeypatch.setattr(without, "probes", dict)
    without.run()
    a, b = read_log(tmp_path / "a"), read_log(tmp_path / "b")
    assert [r["step"] for r in a] == [1, 2, 3] and all(set(PROBES) <= set(r) for r in a)
    assert not any(set(PROBES) & set(r) for r in b)
    for ra, rb in zip(a, b, strict=True):
        assert {k: v for k, v in ra.items() if k not in VOLATILE} == {
            k: v for k, v in rb.items() if k not in VOLATILE
        }
    ca = load_checkpoint(tmp_path / "a" / "checkpoints" / "latest.pt")
    cb = load_checkpoint(tmp_path / "b" / "checkpoints" / "latest.pt")
    for key in ("state_dict", "head", "teacher"):
        assert all(torch.equal(ca[key][k], cb[key][k]) for k in ca[key]), key
    assert torch.equal(ca["center"], cb["center"])
    assert torch.equal(ca["rng"]["torch"], cb["rng"]["torch"])


def test_probes_match_a_float64_hand_computation_from_the_checkpoint(tmp_path, pairs_csv):
    trainer = make_trainer(tmp_path, pairs_csv, train={"steps": 3, "save_every": 1})
    names = [n for n, _ in trainer.teacher.named_parameters()]
    trainer.run()
    for rec in read_log(tmp_path):
        ckpt = load_checkpoint(tmp_path / "checkpoints" / f"step_{rec['step']:08d}.pt")
        assert rec["teacher_student_distance"] > 0
        assert rec["teacher_student_distance"] == pytest.approx(hand_distance(ckpt, names), rel=1e-5)
        assert rec["center_norm"] == pytest.approx(
            float(torch.linalg.norm(ckpt["center"].double())), rel=1e-12
        )
        assert rec["center_norm"] > 0


def test_distance_is_zero_for_a_copied_teacher_and_grows_with_momentum(tmp_path, pairs_csv):
    fresh = make_trainer(tmp_path / "fresh", pairs_csv)
    assert fresh.probes() == {"teacher_student_distance": 0.0, "center_norm": 0.0}
    copying = make_trainer(tmp_path / "copy", pairs_csv, ema={"schedule": "constant", "momentum": 0.0})
    batch = next(iter(copying.loader))
    copying.train_step(batch)
    assert copying.probes()["teacher_student_distance"] == 0.0  # m = 0: teacher = student after EMA
    # Before a late distillation start the teacher stays put while the student moves; at the start it is re-copied.
    late = make_trainer(tmp_path / "late", pairs_csv, loss={"distill_start_step": 2})
    batches = iter(late.loader)
    before = []
    for _ in range(2):
        late.train_step(next(batches))
        before.append(late.probes()["teacher_student_distance"])
    assert 0 < before[0] < before[1]
    late.train_step(next(batches))
    assert 0 < late.probes()["teacher_student_distance"] < before[1]


def test_no_probes_without_a_teacher(tmp_path, pairs_csv):
    trainer = make_trainer(
        tmp_path, pairs_csv, loss={"objective": "clip"}, views={"global_crops": 1, "local_crops": 0}
    )
    trainer.train_step(next(iter(trainer.loader)))
    assert trainer.probes() == {}
