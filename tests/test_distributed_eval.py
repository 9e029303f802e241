"""Evaluation under torchrun: the ranks share a benchmark's images (benchmarks/sharding.py) and write exactly the
record, per-sample outcomes and artefacts of one process; rank 0 alone decides, writes and prints."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from silc_bench.cli import main

ROOT = Path(__file__).resolve().parents[1]
# Every per-run measurement of time; everything else of a record must be equal.
TIMINGS = ("wall_time_s", "images_per_s")
SUITE = """\
name: two-ranks
benchmarks:
  - {benchmark: zeroshot-cls, data: imagenet, options: {workers: 0, batch_size: 48}}
  - {benchmark: retrieval, data: flickr30k, options: {workers: 0, batch_size: 64}}
  - {benchmark: fewshot, data: imagenet, overrides: {shots: [1, 5]}, options: {workers: 0, batch_size: 32}}
  - {benchmark: seg-ade20k, protocol: synth, data: ADEChallengeData2016, options: {workers: 0, visualize: 3}}
"""


def _sharding_worker(rank: int, init_file: str) -> None:
    """One of two gloo ranks checking the helpers of benchmarks.sharding against each other."""
    import torch.distributed as dist

    from benchmarks import sharding
    from benchmarks.claims import ClaimedElsewhere
    from benchmarks.detection.harness import PROTOCOLS, check_fvlm_run
    from silc.errors import UserError

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        assert sharding.rank_and_world() == (rank, 2) and sharding.is_main() == (rank == 0)
        # consecutive whole blocks in rank order; a rank may get none
        assert sharding.gather_objects(sharding.shard(7, 2)) == [range(0, 4), range(4, 7)]
        assert sharding.gather_objects(sharding.shard(9, 4)) == [range(0, 4), range(4, 9)]
        assert sharding.gather_objects(sharding.shard(3, 4)) == [range(0, 0), range(0, 3)]
        # rows back in order; a part of undecodable images only ([n, 0]) becomes NaN rows of the others' width
        full = torch.arange(21, dtype=torch.float32).view(7, 3)
        mine = sharding.shard(7, 2)
        part = full[mine.start : mine.stop] if rank == 0 else torch.full((3, 0), float("nan"))
        expected = torch.cat([full[:4], torch.full((3, 3), float("nan"))])
        assert torch.equal(sharding.gather_rows(part, 7).isnan(), expected.isnan())
        assert torch.equal(sharding.gather_rows(part, 7).nan_to_num(-1), expected.nan_to_num(-1))
        assert sharding.gather_rows(torch.full((len(mine), 0), float("nan")), 7).shape == (7, 0)
        dense = torch.randn(7, 2, 3, 3, generator=torch.Generator().manual_seed(0))
        assert torch.equal(sharding.gather_rows(dense[mine.start : mine.stop], 7), dense)
        assert sharding.gather_dict({mine.start + 1: f"bad on rank {rank}"}) == {
            1: "bad on rank 0",
            5: "bad on rank 1",
        }
        # a cache hit counts only where every rank has it
        assert sharding.everywhere("hit" if rank == 0 else None) is None
        assert sharding.everywhere("hit") == "hit"
        # rank 0 decides; its value or its error is every rank's
        assert sharding.on_main(lambda: f"rank {rank}") == "rank 0"
        for error in (UserError("data/x.json: expected a list"), ClaimedElsewhere(Path("r.json"), 7)):
            try:
                sharding.on_main(lambda error=error: (_ for _ in ()).throw(error) if rank == 0 else None)
            except type(error) as raised:
                assert str(raised) == str(error)
            else:
                raise AssertionError(f"{type(error).__name__} was not raised on rank {rank}")
        # F-VLM is refused under torchrun, in one line
        try:
            check_fvlm_run(PROTOCOLS["fvlm"], "cpu", trains=True)
        except UserError as refused:
            assert str(refused) == (
                "det-ovcoco fvlm runs in one process, not under torchrun (2 ranks): run it without torchrun (a "
                "multi-GPU recipe trains with mmdet's tools/train.py under torchrun; evaluate its weights with "
                "--det-weights in one process)"
            )
        else:
            raise AssertionError("fvlm was not refused under torchrun")
        # the trainer's evaluation on its rank 0: one process, no collective
        with sharding.alone():
            assert sharding.rank_and_world() == (0, 1) and sharding.shard(7, 2) == range(0, 7)
        # both ranks done before either tears gloo down: a rank that exits first can abort the other's gloo
        # threads ("terminate called without an active exception", SIGABRT; seen 4 times in 18 runs)
        dist.barrier()
    finally:
        dist.destroy_process_group()


def test_shard_gather_and_decisions_across_two_gloo_ranks(tmp_path: Path) -> None:
    torch.multiprocessing.spawn(_sharding_worker, args=(str(tmp_path / "rendezvous"),), nprocs=2)


def test_one_process_is_rank_0_of_1() -> None:
    from benchmarks import sharding

    part = torch.ones(5, 2)
    assert sharding.rank_and_world() == (0, 1) and sharding.shard(5, 2) == range(0, 5)
    assert sharding.gather_rows(part, 5) is part and sharding.gather_dict({3: "x"}) == {3: "x"}
    assert sharding.on_main(lambda: 4) == 4 and sharding.everywhere(None) is None


def torchrun(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """``torchrun --nproc_per_node 2 -m silc_bench ARGS`` on a free port, one CPU thread per rank."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port)]
    return subprocess.run(
        [*cmd, "-m", "silc_bench", *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
        env={**os.environ, **env, "OMP_NUM_THREADS": "1"},
    )


def same_records(one: Path, two: Path) -> list[str]:
    """Check that the results folders ``one`` and ``two`` hold the same records (timings aside; metrics within
    1e-6), per-sample outcomes and artefacts; returns the records' relative paths."""
    files = sorted(p.relative_to(one) for p in one.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(two) for p in two.rglob("*") if p.is_file())
    for rel in files:
        a, b = one / rel, two / rel
        if rel.suffix == ".json":
            ra, rb = (
                json.loads(p.read_text().replace(str(root), "<results>")) for p, root in ((a, one), (b, two))
            )
            for key, value in ra["metrics"].items():
                assert rb["metrics"][key] == pytest.approx(value, abs=1e-6, nan_ok=True), (rel, key)
            for record in (ra, rb):  # clocks: seg's loop timing, the bootstrap's seconds
                record["extra"].pop("timing", None), record["uncertainty"].pop("seconds", None)
            assert {k: v for k, v in ra.items() if k not in TIMINGS} == {
                k: v for k, v in rb.items() if k not in TIMINGS
            }, rel
        elif rel.suffix == ".npz":
            with np.load(a) as za, np.load(b) as zb:
                assert za.files == zb.files
                for key in za.files:
                    assert np.array_equal(za[key], zb[key], equal_nan=za[key].dtype.kind == "f"), (rel, key)
        else:
            assert a.read_bytes() == b.read_bytes(), rel
    return [str(rel) for rel in files if rel.suffix == ".json"]


def cache_entries(cache: Path) -> dict[str, str]:
    """Feature cache file -> the sha256 of its tensor."""
    return {p.name: torch.load(p, weights_only=True)["sha256"] for p in sorted(cache.rglob("*.pt"))}


@pytest.mark.slow
@pytest.mark.mm
def test_run_under_torchrun_writes_the_records_of_one_process(
    synth_root: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    from silc_bench.app.references import reference_specs

    (tmp_path / "suite.yaml").write_text(SUITE)
    args = ["run", "--suite", str(tmp_path / "suite.yaml"), "--data-root", str(synth_root), "--device", "cpu"]
    args += ["--model", reference_specs()[0]]
    monkeypatch.setenv("SILC_BENCH_CACHE", str(tmp_path / "cache-one"))
    assert main([*args, "--results", str(tmp_path / "one")]) == 0
    table = [line for line in capsys.readouterr().out.splitlines() if line.startswith("|")]

    two = torchrun(
        *args, "--results", str(tmp_path / "two"), env={"SILC_BENCH_CACHE": str(tmp_path / "cache-two")}
    )
    assert two.returncode == 0, two.stderr[-3000:]
    assert [
        line for line in two.stdout.splitlines() if line.startswith("|")
    ] == table  # printed once, by rank 0
    records = same_records(tmp_path / "one", tmp_path / "two")
    assert len(records) == 4
    assert len([r for r in (tmp_path / "two").rglob("visualize/*.png")]) == 3
    # rank 0 saved every feature the one process saved, with the same tensors (each rank encoded its batches)
    assert cache_entries(tmp_path / "cache-two") == cache_entries(tmp_path / "cache-one") != {}
    assert "4 record(s)" in two.stderr and "(4 computed here" in two.stderr


@pytest.mark.slow
def test_eval_under_torchrun_with_a_bad_image_writes_the_record_of_one_process(
    synth_root: Path, tmp_path: Path, capsys
) -> None:
    from silc_bench.app.references import reference_specs

    data = tmp_path / "imagenet"
    shutil.copytree(synth_root / "imagenet", data)
    victim = sorted((data / "val").rglob("*.*"))[-1]  # in the last batch: rank 1's share
    victim.write_bytes(victim.read_bytes()[:60])
    args = ["eval", "zeroshot-cls", "--model", reference_specs()[0], "--data", str(data), "--device", "cpu"]
    args += ["--workers", "0", "--no-cache", "--batch-size", "32"]

    assert main([*args, "--results", str(tmp_path / "one")]) == 2  # the bad image stops one process ...
    expected = capsys.readouterr().err.strip().splitlines()[-1]
    assert victim.name in expected and "--skip-bad-images" in expected
    stopped = torchrun(*args, "--results", str(tmp_path / "two"), env={})
    assert stopped.returncode != 0  # ... and both ranks, each with the same line (torchrun reports a failure)
    assert stopped.stderr.count(expected) == 2, stopped.stderr[-3000:]
    assert [p for p in (tmp_path / "two").rglob("*") if p.is_file()] == []  # no record, no claim left

    assert main([*args, "--skip-bad-images", "--results", str(tmp_path / "one")]) == 0
    one_out = capsys.readouterr().out
    two = torchrun(*args, "--skip-bad-images", "--results", str(tmp_path / "two"), env={})
    assert two.returncode == 0, two.stderr[-3000:]
    (record,) = same_records(tmp_path / "one", tmp_path / "two")
    skipped = json.loads((tmp_path / "two" / record).read_text())["skipped_images"]
    assert skipped == [str(victim.relative_to(data))]
    printed = ("acc1:", "acc5:", "mean_per_class_recall:", "record:")
    metrics = [line for line in one_out.splitlines() if line.startswith(printed)]
    assert len(metrics) == 4  # printed once, by rank 0:
    assert [line for line in two.stdout.splitlines() if line.startswith(printed)] == [
        line.replace(str(tmp_path / "one"), str(tmp_path / "two")) for line in metrics
    ]
