"""``silc-bench experiment`` end to end on a two-recipe, two-seed mini experiment (train, evaluate, table, skip
what is recorded, resume an interrupted run step-exactly), its spec's bad input, and the seed interval of the
tables."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import yaml

from benchmarks import uncertainty
from benchmarks.experiment_spec import parse_experiment
from benchmarks.suites import load_suite
from silc.errors import UserError
from silc_bench.cli import main

MINI = """\
name: mini-experiment
world: {preset: tiny, seed: 0}
benchmarks:
  - {benchmark: zeroshot-cls, data: imagenet}
experiment:
  steps: 4
  seeds: [0, 1]
  set: [train.save_every=2]
  recipes:
    silc: {config: tiny.yaml}
    clip: {config: tiny.yaml, set: [loss.objective=clip, views.local_crops=0]}
  tables:
    main: {layout: main, baseline: clip, recipes: [silc, clip]}
"""


@pytest.fixture
def mini(tmp_path: Path, monkeypatch) -> Path:
    """The mini experiment's suite file (tiny model at 32 px on the 64 px tiny world, 4 steps per run)."""
    from tests.train_fixtures import tiny_config

    monkeypatch.setenv("SILC_BENCH_WORLD_CACHE", str(tmp_path / "cache"))
    cfg = tiny_config("unused", kind="synthetic")
    cfg["views"].update(global_size=32, local_size=16)
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(cfg))
    (tmp_path / "suite.yaml").write_text(MINI)
    return tmp_path / "suite.yaml"


def _experiment(suite: Path, out: Path, capsys) -> tuple[int, str, str]:
    rc = main(
        ["experiment", "--suite", str(suite), "--runs", str(out / "runs"), "--results", str(out / "results")]
    )
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


@pytest.mark.slow
def test_trains_evaluates_tabulates_and_skips_what_is_recorded(mini: Path, tmp_path: Path, capsys) -> None:
    rc, out, err = _experiment(mini, tmp_path, capsys)
    assert rc == 0, err
    results = tmp_path / "results"
    for alias in ("silc-s0", "silc-s1", "clip-s0", "clip-s1"):
        kept = yaml.safe_load((results / alias / "training.yaml").read_text())
        assert kept["run"] == alias and kept["seed"] == int(alias[-1]) and kept["steps"] == 4
        assert kept["config"]["seed"] == kept["seed"]  # the seed reached the trainer
        assert kept["threads"] == 1 and 0 < kept["train_seconds"] < 300
        assert len(list((results / alias).glob("zeroshot-cls.default.*.json"))) == 1
    # the table file is what `silc-bench table` prints with the command in its first line
    table = (results / "main.md").read_text()
    command, body = table.split("\n", 1)
    assert out.startswith(table)
    args = command.removeprefix("<!-- silc-bench ").removesuffix(" -->").split()
    assert main(args) == 0
    assert body.startswith(capsys.readouterr().out)
    assert "silc (n=2)" in body and "gain seeds 95% CI" in body and "gain 95% CI" in body
    # the seeds differ (their runs are not one run four times)
    weights = [
        torch.load(tmp_path / "runs" / a / "checkpoints" / "step_00000004.pt") for a in ("silc-s0", "silc-s1")
    ]
    assert not torch.equal(*(w["state_dict"]["visual.proj"] for w in weights))

    # the run folders gone (another machine): nothing is trained again, the table is the same
    import shutil

    shutil.rmtree(tmp_path / "runs")
    rc, out, err = _experiment(mini, tmp_path, capsys)
    assert rc == 0 and "4 already evaluated" in err and "training 0" in err
    assert (results / "main.md").read_text() == table
    # a recipe whose config changed is trained and evaluated again; the other one is not
    mini.write_text(MINI.replace("views.local_crops=0]", "views.local_crops=0, optim.lr=2.0e-3]"))
    rc, out, err = _experiment(mini, tmp_path, capsys)
    assert rc == 0 and "2 already evaluated" in err and "training 2" in err


@pytest.mark.slow
def test_an_interrupted_run_resumes_step_exactly(mini: Path, tmp_path: Path, capsys) -> None:
    rc, _, err = _experiment(mini, tmp_path / "a", capsys)
    assert rc == 0, err
    run = tmp_path / "a" / "runs" / "silc-s1"
    final = torch.load(run / "checkpoints" / "step_00000004.pt")
    # as if killed after the step-2 checkpoint: no final checkpoint, no completion record, no records
    (run / "checkpoints" / "step_00000004.pt").unlink()
    (run / "checkpoints" / "latest.pt").unlink()
    (run / "checkpoints" / "latest.pt").hardlink_to(run / "checkpoints" / "step_00000002.pt")
    (run / "command.json").unlink()
    for p in (tmp_path / "a" / "results" / "silc-s1").glob("*"):
        p.unlink() if p.is_file() else None
    rc, _, err = _experiment(mini, tmp_path / "a", capsys)
    assert rc == 0 and "silc-s1: resuming from its last checkpoint" in err and "training 1" in err
    again = torch.load(run / "checkpoints" / "step_00000004.pt")
    for key, value in final["state_dict"].items():
        assert torch.equal(value, again["state_dict"][key]), key
    assert torch.equal(final["center"], again["center"])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("seeds: [0, 1]", "seeds: [0, 0]"),
        ("seeds: [0, 1]", "seeds: []"),
        ("baseline: clip", "baseline: dino"),
        ("recipes: [silc, clip]}", "recipes: [silc, clap]}"),
        ("    silc: {config: tiny.yaml}", "    silc-s3: {config: tiny.yaml}"),
        ("layout: main", "layout: wide"),
        ("steps: 4", "steps: 0"),
    ],
)
def test_bad_experiment_sections_name_the_key(mini: Path, change: str, message: str, capsys) -> None:
    mini.write_text(MINI.replace(change, message))
    with pytest.raises(UserError, match=r"suite.yaml: experiment\."):
        parse_experiment(load_suite(str(mini)))
    rc = main(["experiment", "--suite", str(mini), "--runs", str(mini.parent / "r")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "experiment." in err
    assert not (mini.parent / "r").exists()  # nothing was trained


def test_unknown_table_and_missing_section(mini: Path, capsys) -> None:
    assert main(["experiment", "--suite", str(mini), "--tables", "ablation"]) == 2
    assert "unknown table 'ablation'; this experiment has: main" in capsys.readouterr().err
    assert main(["experiment", "--suite", "ablations"]) == 2
    assert "no 'experiment' section" in capsys.readouterr().err


def test_shipped_paper_synth_experiment_parses() -> None:
    spec = parse_experiment(load_suite("paper_synth"))
    assert spec.seeds == (0, 1, 2) and spec.run.steps == 600
    assert [t.name for t in spec.tables] == ["main", "objectives", "ablation"]
    assert set(spec.tables[0].recipes) | set(spec.tables[1].recipes) == {
        "clip",
        "distill",
        "silc",
        "silc-late",
    }
    assert all(v.config.is_file() for v in spec.recipes.values())


def test_seed_interval_is_the_student_t_interval() -> None:
    ci = uncertainty.seed_interval([1.0, 2.0, 3.0])
    t = 0.95 / math.sqrt(2 * 0.975 * 0.025)  # Student-t 0.975 quantile with 2 degrees of freedom, closed form
    half = t * 1.0 / math.sqrt(3)  # t x sd (1) / sqrt(n)
    assert ci["low"] == pytest.approx(2 - half, abs=1e-12) and ci["high"] == pytest.approx(
        2 + half, abs=1e-12
    )
    assert uncertainty.seed_interval([0.5]) == {"low": None, "high": None}
