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
    """``torchrun --standalone --nproc_per_node N -m silc train`` (the real CLI), one CPU thread per rank."""
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        "-m",
        "silc",
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
        # Adam divides by sqrt(v) + eps: with eps 1e-6, parameters whose true gradient is 0 (the attention key
        # bias) turn float round-off into lr-sized steps; a larger eps keeps the comparison well-conditioned.
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

    a = load_checkpoint(single / "checkpoints" / "latest.pt")
    b = load_checkpoint(double / "checkpoints" / "latest.pt")
    assert a["step"] == b["step"] == 3 and a["samples_seen"] == b["samples_seen"] == 24
    assert isinstance(b["data_position"], list) and len(b["data_position"]) == 2
    for key in ("state_dict", "head", "teacher"):
        for name, t in a[key].items():
            torch.testing.assert_close(
                b[key][name], t, rtol=1e-4, atol=2e-5, msg=lambda m, k=f"{key}/{name}": f"{k}: {m}"
            )
    torch.testing.assert_close(b["center"], a["center"], rtol=1e-4, atol=1e-6)
    logs = [[json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()] for run in (single, double)]
    for r1, r2 in zip(*logs, strict=True):
        for k in ("loss", "loss_contrastive", "loss_distill"):
            assert r2[k] == pytest.approx(r1[k], rel=1e-4, abs=1e-5), (r1["step"], k)
