"""Evaluation during training: metrics next to the losses, records per step, training itself unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import tests.product_harness  # noqa: F401  (registers test-embed)
from benchmarks.records import read_records
from silc_bench.cli import main
from tests.train_fixtures import tiny_config, write_config, write_pairs_csv

SUITE = "name: watch\nbenchmarks:\n  - {benchmark: test-embed, data: shapes}\n"


@pytest.fixture
def setup(tmp_path: Path) -> dict:
    csv = write_pairs_csv(tmp_path / "pairs")
    rng = np.random.default_rng(0)
    (tmp_path / "evaldata" / "shapes").mkdir(parents=True)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(
            tmp_path / "evaldata" / "shapes" / f"{i}.png"
        )
    (tmp_path / "watch.yaml").write_text(SUITE)
    return {"csv": csv, "tmp": tmp_path}


def train(setup, name: str, **sections) -> Path:
    cfg = tiny_config(setup["csv"], **sections)
    config = write_config(setup["tmp"] / f"{name}.yaml", cfg)
    out = setup["tmp"] / "runs" / name
    assert main(["train", "--config", str(config), "--out", str(out)]) == 0
    return out


def test_eval_metrics_logged_and_training_unchanged(setup, capsys) -> None:
    watched = train(
        setup,
        "watched",
        train={"eval_every": 2},
        eval={
            "suite": str(setup["tmp"] / "watch.yaml"),
            "weights": "both",
            "data_root": str(setup["tmp"] / "evaldata"),
        },
    )
    plain = train(setup, "plain")
    log = [json.loads(x) for x in (watched / "log.jsonl").read_text().splitlines()]
    evals = [r for r in log if any(k.startswith("eval/") for k in r)]
    assert [r["step"] for r in evals] == [2, 4]
    assert {k for k in evals[0] if k.startswith("eval/")} == {
        "eval/student/test-embed/cosine",
        "eval/student/test-embed/images",
        "eval/teacher/test-embed/cosine",
        "eval/teacher/test-embed/images",
    }
    assert evals[0]["eval/student/test-embed/cosine"] != evals[1]["eval/student/test-embed/cosine"]
    # evaluation consumed no training randomness: the weights equal those of a run without it
    a = torch.load(watched / "checkpoints" / "latest.pt", weights_only=True)["state_dict"]
    b = torch.load(plain / "checkpoints" / "latest.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    # the step-4 student record equals evaluating the final checkpoint afterwards
    records = {r.model: r for r in read_records(watched / "eval" / "step_00000004")}
    assert set(records) == {"student", "teacher"}
    results = setup["tmp"] / "after"
    args = ["run", "--suite", str(setup["tmp"] / "watch.yaml"), "--data-root", str(setup["tmp"] / "evaldata")]
    assert main([*args, "--model", f"final={watched}", "--results", str(results)]) == 0
    (after,) = read_records(results)
    assert after.metrics == records["student"].metrics
    assert after.fingerprint == records["student"].fingerprint


def test_teacher_eval_without_teacher_is_an_error(setup, capsys) -> None:
    cfg = tiny_config(
        setup["csv"], loss={"objective": "clip"}, train={"eval_every": 2}, eval={"weights": "teacher"}
    )
    config = write_config(setup["tmp"] / "c.yaml", cfg)
    assert main(["train", "--config", str(config), "--out", str(setup["tmp"] / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert (
        err == "silc-bench: error: eval.weights: 'teacher' needs a teacher (loss.objective distill or silc)"
    )
