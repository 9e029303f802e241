"""``silc-bench regress`` end to end on a two-variant mini suite: update, pass, each kind of failure, the gates
that refuse an update, and ``--force`` recorded in the reference."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from silc_bench.cli import main

MINI_SUITE = """\
name: mini-ablations
world: {preset: tiny, seed: 0}
benchmarks:
  - {benchmark: test-embed, data: imagenet/val/s0000001}
train:
  steps: 3
  seed: 0
  variants:
    cosine: {config: tiny.yaml}
    constant: {config: tiny.yaml, set: [ema.schedule=constant]}
fingerprint:
  steps: 3
  set: [train.log_every=1]
  tolerance: {rtol: {default: 1.0e-5, grad_norm: 1.0e-4}, atol: {default: 1.0e-9}}
  eval_rtol: 1.0e-4
tolerances: {default: 0.001, images: 0}
"""


@pytest.fixture
def mini(tmp_path: Path, monkeypatch) -> tuple[list[str], Path]:
    """The regress command line of the mini suite (tiny model at 32 px on the 64 px tiny world) and its reference."""
    import tests.product_harness  # noqa: F401  (registers test-embed)
    from tests.train_fixtures import tiny_config

    monkeypatch.setenv("SILC_BENCH_WORLD_CACHE", str(tmp_path / "cache"))
    cfg = tiny_config("unused", kind="synthetic")
    cfg["views"].update(global_size=32, local_size=16)
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(cfg))
    (tmp_path / "suite.yaml").write_text(MINI_SUITE)
    ref = tmp_path / "ref"
    args = ["regress", "--suite", str(tmp_path / "suite.yaml"), "--reference", str(ref), "--jobs", "2"]
    return args, ref


def _run(args: list[str], work: Path, capsys, *extra: str) -> tuple[int, str]:
    rc = main([*args, "--work", str(work), *extra])
    captured = capsys.readouterr()
    assert rc != 2, captured.err  # bad input is a bug of the test
    return rc, captured.out


@pytest.mark.slow
def test_update_then_pass_then_each_failure(mini, tmp_path: Path, capsys) -> None:
    args, ref = mini
    rc, out = _run(args, tmp_path / "w0", capsys, "--update")
    assert rc == 0 and "REFERENCE UPDATED" in out
    assert {p.name for p in ref.iterdir()} == {
        "trajectories.json",
        "eval_fingerprints.json",
        "metrics.jsonl",
        "meta.json",
    }
    meta = json.loads((ref / "meta.json").read_text())
    assert meta["fingerprints"]["forced"] is False and meta["metrics"]["acknowledged"] == []

    rc, out = _run(args, tmp_path / "w1", capsys)  # retrained from scratch: the same numbers
    assert rc == 0 and "no regressions" in out
    assert (
        main([*args, "--work", str(tmp_path / "w1"), "--tier", "fingerprints"]) == 0
    )  # resumes: nothing retrained
    assert capsys.readouterr().err.count("3 steps reused from") == 2

    trajs = json.loads((ref / "trajectories.json").read_text())
    trajs["variants"]["constant"]["values"]["loss"][1] *= 1 + 1e-3  # the math of step 2 changed
    trajs["meta"]["seed"] = 7  # and the reference was made with another seed
    (ref / "trajectories.json").write_text(json.dumps(trajs))
    (line, *rest) = [json.loads(x) for x in (ref / "metrics.jsonl").read_text().splitlines()]
    line["metrics"]["cosine"] += 0.01
    (ref / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in (line, *rest)))
    prints = json.loads((ref / "eval_fingerprints.json").read_text())
    prints["cosine"]["image/proj0"] += 0.1
    (ref / "eval_fingerprints.json").write_text(json.dumps(prints))
    rc, out = _run(args, tmp_path / "w2", capsys)
    assert rc == 1
    assert "FAILED [fingerprints] trajectories outside tolerance" in out and "| constant " in out
    assert "FAILED [fingerprints] the fingerprint runs' settings differ from the reference's" in out
    assert "FAILED [fingerprints] evaluation fingerprint of cosine moved" in out and "image/proj0" in out
    assert "FAILED [metrics] metrics outside tolerance" in out


@pytest.mark.slow
def test_a_knob_that_does_nothing_refuses_the_update(mini, tmp_path: Path, capsys) -> None:
    args, ref = mini
    suite = tmp_path / "suite.yaml"
    suite.write_text(suite.read_text().replace("set: [ema.schedule=constant]", "set: [ema.schedule=cosine]"))
    rc, out = _run(args, tmp_path / "w0", capsys, "--update", "--tier", "fingerprints")
    assert rc == 1 and "REFERENCE NOT WRITTEN" in out
    assert "indistinguishable" in out and "| cosine " in out and "| constant " in out
    assert not ref.exists()

    rc, out = _run(args, tmp_path / "w1", capsys, "--update", "--tier", "fingerprints", "--force")
    assert rc == 0 and "FORCED past 1 failing gate item(s)" in out
    meta = json.loads((ref / "meta.json").read_text())
    assert meta["fingerprints"]["forced"] is True
    assert meta["fingerprints"]["acknowledged"] == ["indistinguishable: constant / cosine"]

    rc, out = _run(args, tmp_path / "w2", capsys, "--tier", "fingerprints")  # known, so not a failure again
    assert rc == 0 and "KNOWN [fingerprints] acknowledged by the forced reference" in out

    meta["fingerprints"]["acknowledged"] = [
        "indistinguishable: other / pair"
    ]  # a gate item nobody acknowledged
    (ref / "meta.json").write_text(json.dumps(meta))
    rc, out = _run(args, tmp_path / "w3", capsys, "--tier", "fingerprints")
    assert rc == 1 and "FAILED [fingerprints] knob sensitivity" in out and "now hold" in out


def test_bad_invocations_exit_2(mini, tmp_path: Path, capsys) -> None:
    args, ref = mini
    assert main([*args, "--force"]) == 2
    assert "--force: only meaningful with --update" in capsys.readouterr().err
    assert main([*args, "--tier", "metrics"]) == 2  # no reference yet
    assert "no reference there" in capsys.readouterr().err
    ref.mkdir()
    (ref / "meta.json").write_text("[]")
    assert main(args) == 2  # checked before any training
    assert "meta.json: expected a JSON object" in capsys.readouterr().err
    (ref / "meta.json").write_text("{}")
    assert main([*args, "--tier", "fingerprints"]) == 2
    assert "trajectories.json" in capsys.readouterr().err
    assert not (tmp_path / "cache").exists()  # refused before the world was even generated
    suite = tmp_path / "suite.yaml"
    suite.write_text(suite.read_text().replace("  eval_rtol: 1.0e-4\n", ""))
    assert main([*args, "--update"]) == 2
    assert "fingerprint.eval_rtol: expected a number > 0" in capsys.readouterr().err
