"""A file whose pickle would run code (create a marker file) is refused by every loader, and the code never runs:
checkpoints (train resume, encoder specs), open_clip weights (``model.pretrained``, ``openclip:CFG@FILE``), feature
cache entries, per-sample outcomes and F-VLM detector weights."""

from __future__ import annotations

import os
import pickle
import shlex
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks.uncertainty import Outcomes
from silc.errors import UserError
from silc_bench.app.references import reference_specs
from silc_bench.cli import main
from tests.conftest import TINY_MODEL_CONFIG
from tests.train_fixtures import tiny_config, write_config, write_pairs_csv

REFUSED = "holds Python objects other than tensors and containers; refused by weights_only loading"


class OpenForWriting:
    """Unpickling this object creates ``marker`` (``open(marker, "w")``)."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


class Shell(OpenForWriting):
    """Unpickling this object runs ``touch marker`` in a shell."""

    def __reduce__(self):
        return os.system, (f"touch {shlex.quote(self.marker)}",)


FORMATS = ("torch-zip", "torch-legacy", "pickle")


def write_payload(path: Path, payload: object, fmt: str = "torch-zip") -> Path:
    """A checkpoint-shaped dict (every key a loader checks) whose ``state_dict`` holds ``payload``."""
    obj = {"state_dict": {"weight": payload}, "model_cfg": {}, "model_name": "x", "step": 0, "config": {}}
    if fmt == "pickle":
        path.write_bytes(pickle.dumps(obj, protocol=2))
    else:
        torch.save(obj, path, _use_new_zipfile_serialization=fmt == "torch-zip")
    return path


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    return tmp_path / "payload-ran"


def error_line(capsys) -> str:
    """The one error line the CLI printed (the last stderr line)."""
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith("silc-bench: error: ")
    return line.removeprefix("silc-bench: error: ")


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("kind", [OpenForWriting, Shell])
def test_the_payloads_run_when_loaded_unsafely(tmp_path: Path, marker: Path, fmt: str, kind) -> None:
    """Control: without weights_only the payload does create the marker (so the tests below can fail)."""
    path = write_payload(tmp_path / "payload.pt", kind(marker), fmt)
    if fmt == "pickle":
        pickle.loads(path.read_bytes())
    else:
        torch.load(path, weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("kind", [OpenForWriting, Shell])
def test_encoder_specs_refuse_the_payload(tmp_path: Path, marker: Path, capsys, fmt: str, kind) -> None:
    path = write_payload(tmp_path / "payload.pt", kind(marker), fmt)
    assert main(["info", str(path)]) == 2  # a SiLC checkpoint
    reason = REFUSED if fmt == "torch-zip" else "corrupt or truncated: not a torch zip archive"
    assert error_line(capsys) == f"{path}: not a readable SiLC checkpoint ({reason})"
    assert main(["info", f"openclip:{TINY_MODEL_CONFIG}@{path}"]) == 2  # open_clip weights
    assert error_line(capsys) == f"{path}: not a readable weights file ({REFUSED})"
    assert not marker.exists()


def test_eval_model_refuses_the_payload(synth_root: Path, tmp_path: Path, marker: Path, capsys) -> None:
    path = write_payload(tmp_path / "payload.pt", OpenForWriting(marker))
    argv = ["eval", "zeroshot-cls", "--data", str(synth_root / "imagenet"), "--results", str(tmp_path / "r")]
    assert main([*argv, "--model", f"m={path}"]) == 2
    assert error_line(capsys) == f"{path}: not a readable SiLC checkpoint ({REFUSED})"
    assert main([*argv, "--model", f"m=openclip:{TINY_MODEL_CONFIG}@{path}"]) == 2
    assert error_line(capsys) == f"{path}: not a readable weights file ({REFUSED})"
    assert not marker.exists() and not (tmp_path / "r").exists()


@pytest.fixture(scope="module")
def pairs_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_pairs_csv(tmp_path_factory.mktemp("pairs"), n=8)


def test_train_resume_refuses_the_payload(pairs_csv: Path, tmp_path: Path, marker: Path, capsys) -> None:
    path = write_payload(tmp_path / "payload.pt", Shell(marker))
    cfg = write_config(tmp_path / "cfg.yaml", tiny_config(pairs_csv))
    run = str(tmp_path / "run")
    assert main(["train", "--config", str(cfg), "--out", run, "--resume", str(path)]) == 2
    assert error_line(capsys) == f"{path}: not a readable SiLC checkpoint ({REFUSED})"
    assert main(["train", "--out", run, "--resume", str(path)]) == 2  # the config from the checkpoint
    assert error_line(capsys) == f"{path}: not a readable SiLC checkpoint ({REFUSED})"
    assert not marker.exists()


@pytest.mark.parametrize("fmt", FORMATS)
def test_model_pretrained_refuses_the_payload(
    pairs_csv: Path, tmp_path: Path, marker: Path, capsys, fmt
) -> None:
    path = write_payload(tmp_path / "payload.pt", OpenForWriting(marker), fmt)
    model = {"name": "silc-tiny-vit", "pretrained": str(path)}
    cfg = write_config(tmp_path / "cfg.yaml", tiny_config(pairs_csv, model=model))
    assert main(["train", "--config", str(cfg), "--out", str(tmp_path / "run")]) == 2
    assert error_line(capsys) == f"model.pretrained: {path}: not a readable weights file ({REFUSED})"
    assert not marker.exists()


def test_feature_cache_entry_with_a_payload_is_recomputed(
    synth_root: Path, tmp_path: Path, marker: Path, caplog
) -> None:
    cache = tmp_path / "cache"
    argv = ["eval", "zeroshot-cls", "--model", reference_specs()[0], "--data", str(synth_root / "imagenet"),
            "--results", str(tmp_path / "r"), "--cache-dir", str(cache), "--workers", "0"]  # fmt: skip
    assert main(argv) == 0
    entries = sorted(cache.rglob("*.pt"))
    originals = {p: torch.load(p, weights_only=True) for p in entries}
    for path, entry in originals.items():
        torch.save({**entry, "tensor": OpenForWriting(marker)}, path)
    assert main([*argv, "--rerun"]) == 0
    assert not marker.exists()
    warned = [r.getMessage() for r in caplog.records if "feature cache entry" in r.getMessage()]
    assert len(warned) == len(entries) and all("is corrupt" in w and "recomputing" in w for w in warned)
    for path, entry in originals.items():  # recomputed and stored again
        assert torch.equal(torch.load(path, weights_only=True)["tensor"], entry["tensor"])


def test_outcomes_file_with_a_payload_is_refused(tmp_path: Path, marker: Path) -> None:
    path = tmp_path / "outcomes.npz"
    np.savez(path, __units__=np.asarray(["a"]), correct=np.asarray([OpenForWriting(marker)], dtype=object))
    with pytest.raises(UserError) as err:
        Outcomes.load(path)
    assert str(err.value) == (
        f"{path}: cannot read per-sample outcomes (Object arrays cannot be loaded when allow_pickle=False)"
    )
    assert not marker.exists()


@pytest.mark.mm
def test_detector_weights_refuse_the_payload(tmp_path: Path, marker: Path) -> None:
    from adapters.mmdet import load_detector_weights

    path = write_payload(tmp_path / "fvlm_detector.pt", OpenForWriting(marker))
    with pytest.raises(UserError) as err:
        load_detector_weights(torch.nn.Linear(1, 1), path)
    assert str(err.value) == f"{path}: not a plain detector state dict (UnpicklingError)"
    assert not marker.exists()
