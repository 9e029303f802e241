"""Readers on fixtures in the exact public layouts, including the traps users hit (through the CLI)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES, OPENAI_IMAGENET_TEMPLATES
from PIL import Image

import silc_bench.cli
from benchmarks.readers import read_class_meta, read_classification, read_karpathy
from silc.errors import UserError
from tests.conftest import TINY_MODEL_CONFIG
from tests.global_fixtures import write_imagefolder, write_karpathy, write_wds

NAMES = ["apple", "boat", "cat", "drum", "eagle", "fern"]


@pytest.fixture
def cli(monkeypatch, tmp_path):
    """``silc-bench`` with the feature cache in tmp."""
    monkeypatch.setenv("SILC_BENCH_CACHE", str(tmp_path / "cache"))

    def run(*args: str) -> int:
        return silc_bench.cli.main(list(args))

    return run


def _one_line_error(capsys, *needles: str) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("silc-bench: error:") and "\n" not in err, err
    for n in needles:
        assert n in err, err
    return err


def _eval(cli, bench: str, data: Path, *extra: str) -> int:
    return cli(
        "eval",
        bench,
        "--model",
        f"t=openclip:{TINY_MODEL_CONFIG}",
        "--data",
        str(data),
        "--device",
        "cpu",
        "--workers",
        "0",
        "--results",
        str(data.parent / "results"),
        *extra,
    )


def test_imagenet_wnid_layout_uses_open_clip_metadata(tmp_path):
    wnids = [f"n{1440764 + i:08d}" for i in range(1000)]
    val = tmp_path / "imagenet" / "val"
    img = Image.new("RGB", (4, 4))
    for w in reversed(wnids):  # creation order must not matter: classes are sorted by wnid
        (val / w).mkdir(parents=True)
        img.save(val / w / "ILSVRC2012_val_00000001.JPEG")
    data = read_classification(tmp_path / "imagenet", "val")
    assert data.meta.layout == "imagenet"
    assert data.meta.classnames == list(IMAGENET_CLASSNAMES)
    assert data.meta.templates == [t("{c}") for t in OPENAI_IMAGENET_TEMPLATES]
    assert len(data.meta.templates) == 80
    assert data.labels == list(range(1000))
    assert Path(data.refs[0].path).parent.name == wnids[0]


def test_wnid_subset_without_classnames_is_an_error(tmp_path):
    for w in ("n01440764", "n01443537"):
        (tmp_path / "val" / w).mkdir(parents=True)
        Image.new("RGB", (4, 4)).save(tmp_path / "val" / w / "a.JPEG")
    with pytest.raises(UserError, match="classnames.txt"):
        read_class_meta(tmp_path, "val")


def test_imagefolder_classnames_templates_and_braces(tmp_path):
    root = write_imagefolder(tmp_path / "ds", NAMES, {"val": 2}, templates=("a photo of a {}.", "a {c}."))
    data = read_classification(root, "val")
    assert data.meta.classnames == NAMES and data.meta.templates == ["a photo of a {c}.", "a {c}."]
    assert data.meta.templates_source == "templates.txt"
    assert len(data.refs) == 12 and data.labels == sorted(data.labels)
    openai = read_class_meta(root, "val", templates="openai")
    assert (
        len(openai.templates) == 80
        and openai.pinned()["templates_sha256"] != data.meta.pinned()["templates_sha256"]
    )


def test_webdataset_layout_matches_clip_benchmark_reader(tmp_path):
    from clip_benchmark.datasets.builder import build_dataset

    root = write_wds(tmp_path / "wds", "test", NAMES, 3)
    data = read_classification(root, "test")
    assert data.meta.layout == "webdataset" and data.meta.classnames == NAMES
    assert data.meta.templates == ["a photo of a {c}.", "itap of a {c}."]
    ds = build_dataset("wds/x", root=str(root), transform=None, split="test")
    ref = list(ds)
    assert [int(y) for _, y in ref] == data.labels
    assert [im.tobytes() for im, _ in ref] == [r.open().tobytes() for r in data.refs]


def test_karpathy_splits_filepath_and_captions(tmp_path):
    ann = write_karpathy(tmp_path / "f", NAMES, {"train": 3, "val": 2, "test": 4})
    data = read_karpathy(ann.parent, "test")
    obj = json.loads(ann.read_text())
    test = [e for e in obj["images"] if e["split"] == "test"]
    assert [Path(r.path).name for r in data.refs] == [e["filename"] for e in test]
    assert data.captions == [[s["raw"] for s in e["sentences"]] for e in test]
    # COCO style: images under ROOT/<filepath>/<filename>
    coco = tmp_path / "coco"
    (coco / "val2014").mkdir(parents=True)
    Image.new("RGB", (4, 4)).save(coco / "val2014" / "COCO_val2014_000000000042.jpg")
    entry = {
        "filepath": "val2014",
        "filename": "COCO_val2014_000000000042.jpg",
        "split": "test",
        "sentences": [{"raw": "a cat."}, {"raw": "a dog."}],
    }
    (coco / "dataset_coco.json").write_text(json.dumps({"images": [entry], "dataset": "coco"}))
    assert read_karpathy(coco, "test").refs[0].path.endswith("val2014/COCO_val2014_000000000042.jpg")


def test_trap_wrong_split(cli, capsys, tmp_path):
    root = write_imagefolder(tmp_path / "ds", NAMES, {"train": 1})
    assert _eval(cli, "zeroshot-cls", root) == 2
    _one_line_error(capsys, str(root / "val"), "found folders: train", "--split")
    ann = write_karpathy(tmp_path / "f", NAMES, {"train": 2, "val": 1})
    assert _eval(cli, "retrieval", ann.parent) == 2
    _one_line_error(capsys, str(ann), "no images with split 'test'", "train, val")


def test_trap_images_missing_on_disk(cli, capsys, tmp_path):
    ann = write_karpathy(tmp_path / "f", NAMES, {"test": 5})
    for name in ("1001.jpg", "1003.jpg"):
        (ann.parent / "images" / name).unlink()
    assert _eval(cli, "retrieval", ann.parent) == 2
    _one_line_error(capsys, str(ann), "2 of 5 'test' images missing on disk", "1001.jpg")


def test_trap_empty_folder(cli, capsys, tmp_path):
    (tmp_path / "empty").mkdir()
    assert _eval(cli, "zeroshot-cls", tmp_path / "empty") == 2
    _one_line_error(capsys, str(tmp_path / "empty"), "empty folder")
    (tmp_path / "e2" / "val" / "cat").mkdir(parents=True)
    with pytest.raises(UserError, match="class folder has no images"):
        read_classification(tmp_path / "e2", "val")


def test_trap_classnames_count_mismatch(cli, capsys, tmp_path):
    root = write_imagefolder(tmp_path / "ds", NAMES, {"val": 1})
    (root / "classnames.txt").write_text("apple\nboat\n")
    assert _eval(cli, "zeroshot-cls", root) == 2
    _one_line_error(capsys, str(root / "classnames.txt"), "2 class names but 6 class folders")
    wds = write_wds(tmp_path / "wds", "test", NAMES, 1)
    (wds / "classnames.txt").write_text("apple\nboat\n")
    with pytest.raises(UserError, match="2 class names but .* has label"):
        read_classification(wds, "test")


def test_trap_json_missing_keys(cli, capsys, tmp_path):
    d = tmp_path / "f"
    d.mkdir()
    ann = d / "dataset_flickr30k.json"
    ann.write_text(json.dumps({"annotations": []}))
    assert _eval(cli, "retrieval", d) == 2
    _one_line_error(capsys, str(ann), "missing key 'images'")
    ann.write_text(json.dumps({"images": [{"filename": "a.jpg", "split": "test"}]}))
    assert _eval(cli, "retrieval", d) == 2
    _one_line_error(capsys, str(ann), "images[0] is missing key 'sentences'")
    ann.write_text(
        json.dumps({"images": [{"filename": "a.jpg", "split": "test", "sentences": [{"tokens": []}]}]})
    )
    with pytest.raises(UserError, match=r"sentences\[0\] is missing key 'raw'"):
        read_karpathy(d, "test")
