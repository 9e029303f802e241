"""Checkpoints: open_clip loads them unchanged, export round-trips, resume is bit-exact, bad inputs fail in
one line through the real CLI."""

from __future__ import annotations

import json

import open_clip
import pytest
import torch
from safetensors.torch import load_file

from silc.checkpoint import load_checkpoint
from silc.config import config_from_dict
from silc.train import train
from silc_bench.cli import main
from tests.train_fixtures import tiny_config, write_config, write_pairs_csv

CONTRACT_KEYS = {
    "state_dict",
    "model_cfg",
    "model_name",
    "teacher",
    "head",
    "center",
    "optimizer",
    "scaler",
    "scheduler",
    "step",
    "epoch",
    "samples_seen",
    "rng",
    "data_position",
    "config",
}


@pytest.fixture(scope="module")
def pairs_csv(tmp_path_factory):
    return write_pairs_csv(tmp_path_factory.mktemp("pairs"), n=16)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, pairs_csv):
    run = tmp_path_factory.mktemp("run")
    train(config_from_dict(tiny_config(pairs_csv)), run)
    return run


def register_config(model_cfg: dict, folder, name: str) -> str:
    """Write ``model_cfg`` as an open_clip JSON config and register it under ``name``."""
    path = folder / f"{name}.json"
    path.write_text(json.dumps(model_cfg))
    open_clip.add_model_config(path)
    return name


def test_checkpoint_layout_and_open_clip_load(trained_run, tmp_path):
    files = sorted(p.name for p in (trained_run / "checkpoints").iterdir())
    assert files == ["latest.pt", "step_00000002.pt", "step_00000004.pt"]
    assert (trained_run / "config.yaml").is_file() and (trained_run / "open_clip_config.json").is_file()
    ckpt = torch.load(trained_run / "checkpoints" / "latest.pt", weights_only=True)
    assert set(ckpt) >= CONTRACT_KEYS and ckpt["step"] == 4 and ckpt["samples_seen"] == 16
    name = register_config(ckpt["model_cfg"], tmp_path, "silc-test-ckpt")
    model, _, preprocess = open_clip.create_model_and_transforms(
        name, pretrained=str(trained_run / "checkpoints" / "latest.pt")
    )
    loaded = model.state_dict()
    assert set(loaded) == set(ckpt["state_dict"])
    for k, v in ckpt["state_dict"].items():
        assert torch.equal(loaded[k], v), k
    # open_clip's local-dir form of the run's config file builds the same architecture.
    local = open_clip.create_model(f"local-dir:{trained_run}", load_weights=False)
    assert {k: v.shape for k, v in local.state_dict().items()} == {k: v.shape for k, v in loaded.items()}


def test_export_round_trip(trained_run, tmp_path, capsys):
    out = tmp_path / "student.safetensors"
    assert main(["export", str(trained_run), "--out", str(out)]) == 0
    ckpt = load_checkpoint(trained_run / "checkpoints" / "latest.pt")
    exported = load_file(out)
    assert set(exported) == set(ckpt["state_dict"])
    assert all(torch.equal(exported[k], v) for k, v in ckpt["state_dict"].items())
    open_clip.add_model_config(out.with_suffix(".json"))
    model, _, _ = open_clip.create_model_and_transforms("student", pretrained=str(out))
    assert all(torch.equal(model.state_dict()[k], v) for k, v in ckpt["state_dict"].items())


def flat_tensors(obj, prefix=""):
    """Every tensor in a nested checkpoint, keyed by its path."""
    if isinstance(obj, torch.Tensor):
        return {prefix: obj}
    out = {}
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.update(flat_tensors(v, f"{prefix}/{k}"))
    elif isinstance(obj, list | tuple):
        for i, v in enumerate(obj):
            out.update(flat_tensors(v, f"{prefix}/{i}"))
    return out


def test_resume_is_bit_exact(tmp_path, pairs_csv):
    cfg = tiny_config(pairs_csv, train={"steps": 5, "save_every": 2})
    straight, split = tmp_path / "straight", tmp_path / "split"
    train(config_from_dict(cfg), straight)
    interrupted = tiny_config(pairs_csv, train={"steps": 5, "save_every": 2, "stop_at": 2})
    train(config_from_dict(interrupted), split)
    cfg_path = write_config(tmp_path / "cfg.yaml", cfg)
    assert main(["train", "--config", str(cfg_path), "--out", str(split), "--resume", "latest"]) == 0
    a = load_checkpoint(straight / "checkpoints" / "latest.pt")
    b = load_checkpoint(split / "checkpoints" / "latest.pt")
    assert a["step"] == b["step"] == 5
    assert a["data_position"] == b["data_position"] and a["samples_seen"] == b["samples_seen"]
    assert a["scheduler"] == b["scheduler"]
    ta, tb = (
        flat_tensors({k: a[k] for k in ("state_dict", "teacher", "head", "center", "optimizer")}),
        flat_tensors({k: b[k] for k in ("state_dict", "teacher", "head", "center", "optimizer")}),
    )
    assert set(ta) == set(tb) and len(ta) > 50
    different = [k for k in ta if not torch.equal(ta[k], tb[k])]
    assert not different, different[:5]
    log = [json.loads(line) for line in (split / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4, 5]


def test_cli_errors_are_one_line(tmp_path, pairs_csv, trained_run, capsys):
    def run_cli(*argv):
        code = main(list(argv))
        err = capsys.readouterr().err.strip()
        assert code == 2 and len(err.splitlines()) == 1, err
        return err

    cfg = write_config(tmp_path / "ok.yaml", tiny_config(pairs_csv))
    err = run_cli("train", "--config", str(cfg), "--set", "optim.lrr=0.1", "--out", str(tmp_path / "r"))
    assert "optim.lrr" in err and "optim.lr" in err.split("mean")[-1]
    err = run_cli(
        "train", "--config", str(write_config(tmp_path / "bad.yaml", {**tiny_config(pairs_csv), "trian": {}}))
    )
    assert "trian" in err and "train" in err.split("mean")[-1]
    err = run_cli("train", "--config", str(cfg), "--set", "train.steps=many", "--out", str(tmp_path / "r"))
    assert "train.steps" in err
    missing = write_config(tmp_path / "missing.yaml", tiny_config(tmp_path / "nope.csv"))
    assert "nope.csv" in run_cli("train", "--config", str(missing), "--out", str(tmp_path / "r"))
    nocap = tmp_path / "nocap.csv"
    nocap.write_text(pairs_csv.read_text().replace("caption", "text"))
    (tmp_path / "img").symlink_to(pairs_csv.parent / "img")
    err = run_cli(
        "train",
        "--config",
        str(write_config(tmp_path / "nocap.yaml", tiny_config(nocap))),
        "--out",
        str(tmp_path / "r"),
    )
    assert "caption" in err
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint at all")
    assert "corrupt.pt" in run_cli(
        "train", "--config", str(cfg), "--out", str(tmp_path / "r"), "--resume", str(corrupt)
    )
    assert "corrupt.pt" in run_cli("export", str(corrupt), "--out", str(tmp_path / "x.safetensors"))
    err = run_cli(
        "train",
        "--config",
        str(cfg),
        "--set",
        "model.overrides.vision_cfg.layers=3",
        "--out",
        str(tmp_path / "r"),
        "--resume",
        str(trained_run / "checkpoints" / "latest.pt"),
    )
    assert "another architecture" in err and "vision_cfg.layers" in err
    other = tiny_config(pairs_csv, model={"name": "silc-tiny-vit", "pretrained": str(corrupt)})
    assert "corrupt.pt" in run_cli(
        "train", "--config", str(write_config(tmp_path / "pre.yaml", other)), "--out", str(tmp_path / "r")
    )


def test_cli_end_to_end_on_synthetic_world(synth_root, tmp_path, capsys):
    cfg = tiny_config(synth_root, kind="synthetic", train={"steps": 3, "save_every": 0, "log_every": 1})
    run = tmp_path / "run"
    assert main(["train", "--config", str(write_config(tmp_path / "c.yaml", cfg)), "--out", str(run)]) == 0
    assert "trained to step 3" in capsys.readouterr().out
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3] and all(r["data_skipped"] == 0 for r in log)
    assert all(k in log[-1] for k in ("loss_contrastive", "loss_distill", "lr", "momentum", "teacher_temp"))
    assert main(["plot-train", str(run), "--out", str(tmp_path / "curves.png")]) == 0
    assert (tmp_path / "curves.png").stat().st_size > 1000
    assert main(["export", str(run), "--out", str(tmp_path / "w.safetensors")]) == 0
    assert set(load_file(tmp_path / "w.safetensors")) == set(
        load_checkpoint(run / "checkpoints/latest.pt")["state_dict"]
    )


def test_export_casts_floating_weights_with_dtype(trained_run, tmp_path):
    out = tmp_path / "student-fp16.safetensors"
    assert main(["export", str(trained_run), "--out", str(out), "--dtype", "fp16"]) == 0
    state = load_checkpoint(trained_run / "checkpoints" / "latest.pt")["state_dict"]
    exported = load_file(out)
    for k, v in state.items():
        want = v.half() if v.is_floating_point() else v
        assert exported[k].dtype == want.dtype and torch.equal(exported[k], want), k
