"""Two-process gloo DDP gives the same losses and weights as one process on the same global batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from silc.checkpoint import load_checkpoint
from silc.config import config_from_dict
from silc.train import train
from tests.train_fixtures import tiny_config, write_config, write_pairs_csv


def torchrun_train(config: Path, run_dir: Path, nproc: int = 2) -> None:
    """``torchrun --standalone --nproc_per_node N -m silc_bench train`` (the real CLI), one CPU thread per rank."""
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        "-m",
        "silc_bench",
        "train",
        "--config",
        str(config),
        "--out",
        str(run_dir),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.mark.slow
@pytest.mark.parametrize("contrastive", ["clip", "siglip"])
def test_two_process_gloo_matches_one_process(tmp_path, contrastive):
    csv = write_pairs_csv(tmp_path / "data", n=16)
    extra = (
        {
            "model": {
                **tiny_config(csv)["model"],
                "overrides": {**tiny_config(csv)["model"]["overrides"], "init_logit_bias": -10.0},
            }
        }
        if contrastive == "siglip"
        else {}
    )
    cfg = tiny_config(
        csv,
        loss={"objective": "silc", "contrastive": contrastive, "warmup_teacher_temp_steps": 3},
        # The two runs differ only by float round-off in the gradients (batch sums split over ranks, gloo
        # all-reduce). AdamW's step lr·m/(sqrt(v) + eps) changes by at most lr/eps times a gradient change, and
        # parameters whose exact gradient is 0 (the attention key bias: softmax ignores a per-query shift) carry
        # pure round-off; with eps << |round-off| Adam turns it into ±lr steps. eps = lr bounds each step's
        # weight difference by the gradient round-off (~1e-8 here, clipped to norm 1), far below the tolerance.
        optim={"lr": 1e-3, "warmup_steps": 1, "eps": 1e-3},
        train={
            "steps": 3,
            "batch_size": 8,
            "log_every": 1,
            "save_every": 0,
            "progress": False,
            "deterministic": True,
        },
        **extra,
    )
    single, double = tmp_path / "one", tmp_path / "two"
    train(config_from_dict(cfg), single)
    torchrun_train(write_config(tmp_path / "cfg.yaml", cfg), double)

    # Losses first: equal inputs and initial weights give equal step-1 losses, so a mismatch there is a setup
    # difference (data, seeds, code), not round-off.
    logs = [[json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()] for run in (single, double)]
    for r1, r2 in zip(*logs, strict=True):
        for k in ("loss", "loss_contrastive", "loss_distill"):
            assert r2[k] == pytest.approx(r1[k], rel=1e-4, abs=1e-5), (r1["step"], k)
    a = load_checkpoint(single / "checkpoints" / "latest.pt")
    b = load_checkpoint(double / "checkpoints" / "latest.pt")
    assert a["step"] == b["step"] == 3 and a["samples_seen"] == b["samples_seen"] == 24
    assert isinstance(b["data_position"], list) and len(b["data_position"]) == 2
    # Every tensor is checked and all mismatches are reported, worst first: the first key of an open_clip state
    # dict (`positional_embedding`) says nothing about where, or how widely, two runs differ.
    pairs = [
        (f"{key}/{name}", b[key][name], t)
        for key in ("state_dict", "head", "teacher")
        for name, t in a[key].items()
    ]
    pairs.append(("center", b["center"], a["center"]))
    bad = []
    for name, got, want in pairs:
        atol = 1e-6 if name == "center" else 2e-5
        if not torch.allclose(got, want, rtol=1e-4, atol=atol):
            bad.append((float((got - want).abs().max()), name))
    assert not bad, f"{len(bad)} of {len(pairs)} tensors differ; worst: " + ", ".join(
        f"{name} (max |diff| {err:.3g})" for err, name in sorted(bad, reverse=True)[:8]
    )
