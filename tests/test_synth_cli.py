"""`silc-bench data synth / preview`: determinism, speed, replacing an old world, the preview, bad input."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from silc.data.synth import PRESETS, generate_world
from silc.data.synth.preview import BASE_COLOUR, NOVEL_COLOUR
from silc.data.synth.writers import Preset
from silc_bench.cli import main

MICRO = Preset(
    image_size=32,
    pretrain=10,
    shard_size=4,
    imagenet_per_class=(1, 1),
    flickr=(1, 1, 2),
    ade=(2, 2),
    coco=(3, 3),
)


@pytest.fixture
def micro(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setitem(PRESETS, "micro", MICRO)
    return "micro"


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_tiny_is_byte_identical_for_the_same_seed_and_fast(synth_root: Path, tmp_path: Path):
    cpu = time.process_time()
    summary = generate_world(tmp_path / "again", seed=0, preset="tiny")
    cpu = time.process_time() - cpu
    assert cpu < 20, f"tiny preset took {cpu:.1f} s of CPU"  # the bound (tests share 2 cores)
    ours, reference = _files(tmp_path / "again"), _files(synth_root)
    assert list(ours) == list(reference) and ours == reference
    assert summary["files"] == len(ours) and summary["counts"]["pretrain"] == 1200
    assert not list((tmp_path / "again").glob(".synth-staging-*"))


def test_seed_and_image_size_change_the_world(micro: str, tmp_path: Path):
    generate_world(tmp_path / "a", seed=1, preset=micro)
    generate_world(tmp_path / "b", seed=2, preset=micro, image_size=48)
    a, b = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert a.keys() == b.keys()
    images = [k for k in a if k.endswith((".png", ".jpg"))]
    assert all(a[k] != b[k] for k in images)
    assert Image.open(tmp_path / "b" / images[0]).size == (48, 48)
    assert json.loads(a["world.json"])["seed"] == 1 and json.loads(b["world.json"])["image_size"] == 48


def test_regenerating_replaces_the_old_world(micro: str, tmp_path: Path):
    stale = tmp_path / "w" / "pretrain" / "images" / "stale.png"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"old")
    (tmp_path / "w" / "notes.txt").write_text("mine")
    generate_world(tmp_path / "w", seed=0, preset=micro)
    assert not stale.exists() and (tmp_path / "w" / "notes.txt").read_text() == "mine"
    assert len(list((tmp_path / "w" / "pretrain" / "images").iterdir())) == MICRO.pretrain


def test_cli_synth_prints_a_summary(micro: str, tmp_path: Path, capsys: pytest.CaptureFixture):
    assert main(["data", "synth", "--out", str(tmp_path / "w"), "--preset", micro, "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert "seed 3" in out and "files" in out
    assert {"pretrain", "imagenet/val", "flickr30k/test", "coco/val2017"} <= {
        line.split()[0] for line in out.splitlines()[1:]
    }


def test_cli_preview_draws_every_dataset(synth_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture):
    out = tmp_path / "grid.png"
    assert main(["data", "preview", str(synth_root), "--out", str(out)]) == 0
    grid = np.asarray(Image.open(out).convert("RGB"))
    assert grid.shape[0] > 1500 and grid.shape[1] > 1000  # upsampled: text and shapes are legible
    for colour in (BASE_COLOUR, NOVEL_COLOUR):  # boxes of base and novel categories
        assert (grid == colour).all(axis=-1).sum() > 100
    assert str(out) in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["synth", "--out", "{tmp}/w", "--preset", "huge"], "preset 'huge'"),
        (["synth", "--out", "{tmp}/w", "--image-size", "7"], "image size 7"),
        (["synth", "--out", "{tmp}/w", "--image-size", "big"], "--image-size 'big'"),
        (["synth", "--out", "{tmp}/w", "--seed", "-1"], "seed -1"),
        (["synth", "--out", "{tmp}/file.txt/w"], "cannot write"),
        (["preview", "{tmp}/missing", "--out", "{tmp}/g.png"], "no such folder"),
        (["preview", "{tmp}", "--out", "{tmp}/g.png"], "no dataset found"),
        (["preview", "{tmp}/bad", "--out", "{tmp}/g.png"], "cannot read the retrieval data"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: list[str], message: str, tmp_path: Path, capsys):
    (tmp_path / "file.txt").write_text("x")
    (tmp_path / "bad" / "flickr30k").mkdir(parents=True)
    (tmp_path / "bad" / "flickr30k" / "dataset_flickr30k.json").write_text("{")
    assert main(["data", *(a.format(tmp=tmp_path) for a in args)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("silc-bench: error: ") and message in err
    assert not (tmp_path / "w").exists()
