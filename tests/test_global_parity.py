"""Parity with clip_benchmark: the same encoder, transform and images through clip_benchmark's own readers and
``evaluate`` functions give the same acc1/acc5/mean-per-class-recall and recall@k (within 1e-6).

The reference side reads the data with clip_benchmark's ``build_dataset`` (its ImageFolder path, its webdataset
reader, its Flickr reader on an annotation file written here from the raw Karpathy JSON), never with our readers;
the class names do not sort in folder order, so a class-order or caption-assignment bug shows (each reader's test
also shows that such a bug makes the parity check fail)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from clip_benchmark.datasets.builder import build_dataset, image_captions_collate_fn
from clip_benchmark.metrics import zeroshot_classification, zeroshot_retrieval
from torch.utils.data import DataLoader

from adapters.clip_benchmark import wrap_encoder
from benchmarks.metrics import retrieval_recall
from benchmarks.registry import get_harness
from tests.global_fixtures import TEMPLATES, PrototypeEncoder, write_imagefolder, write_karpathy, write_wds

# Class index order, sorted name order and sorted folder order all differ.
NAMES = ["zebra", "apple", "harp", "cat", "fern", "boat", "grape", "drum"]
FOLDERS = ["s003", "s007", "s001", "s005", "s008", "s002", "s006", "s004"]
CB_IMAGEFOLDER = "imagenet1k-unverified"  # clip_benchmark's ImageFolder dataset: ROOT/val/<class>/<image>
TOL = 1e-6


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SILC_BENCH_CACHE", str(tmp_path / "cache"))


def _ours(benchmark: str, encoder, root: Path, **overrides):
    harness = get_harness(benchmark)
    protocol = harness.resolve_protocol(None, overrides)
    options = harness.parse_options({"batch_size": 7, "workers": 0})
    return harness.evaluate(encoder, root, protocol, options, root / "artefacts")


def _cb_classification(encoder, loader, classnames, templates) -> dict:
    model, _, tokenizer = wrap_encoder(encoder)
    return zeroshot_classification.evaluate(model, loader, tokenizer, classnames, templates, "cpu", amp=False)


def _assert_cls_equal(ours: dict, ref: dict) -> None:
    assert abs(ours["acc1"] - ref["acc1"]) <= TOL
    assert abs(ours["mean_per_class_recall"] - ref["mean_per_class_recall"]) <= TOL
    if math.isnan(ref["acc5"]):
        assert ours["acc5"] is None
    else:
        assert abs(ours["acc5"] - ref["acc5"]) <= TOL


def _imagefolder_reference(
    encoder, root: Path, classnames: list[str], templates: list[str], tmp: Path
) -> dict:
    """clip_benchmark's own ImageFolder reader (``build_dataset`` of ``imagenet1k-unverified``: ``ROOT/val``,
    torchvision's sorted folder order) with the class names and templates in the JSON files its CLI takes
    (``--custom_classname_file``, ``--custom_template_file``); ``classnames`` in sorted folder order."""
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "cb_classnames.json").write_text(json.dumps({CB_IMAGEFOLDER: classnames}))
    (tmp / "cb_templates.json").write_text(json.dumps({CB_IMAGEFOLDER: templates}))
    ds = build_dataset(
        CB_IMAGEFOLDER,
        root=str(root),
        transform=encoder.preprocess,
        split="test",
        custom_classname_file=str(tmp / "cb_classnames.json"),
        custom_template_file=str(tmp / "cb_templates.json"),
    )
    loader = DataLoader(ds, batch_size=5, shuffle=False, num_workers=0)
    return _cb_classification(encoder, loader, ds.classes, ds.templates)


def _by_folder(names: list[str], folders: list[str] | None = None) -> list[str]:
    """The class names in sorted folder order, from the fixture's own folder -> name assignment."""
    folders = folders or [f"class{i:03d}" for i in range(len(names))]  # write_imagefolder's default folders
    return [name for _, name in sorted(zip(folders, names, strict=True))]


def test_zeroshot_imagefolder_parity_nontrivial(tmp_path):
    root = write_imagefolder(tmp_path / "ds", NAMES, {"val": 6}, folder_names=FOLDERS)
    enc = PrototypeEncoder(NAMES)
    ours = _ours("zeroshot-cls", enc, root).metrics
    ref = _imagefolder_reference(enc, root, _by_folder(NAMES, FOLDERS), list(TEMPLATES), tmp_path / "cb")
    _assert_cls_equal(ours, ref)
    assert 0.4 < ours["acc1"] < 1.0 and ours["acc5"] > ours["acc1"]  # far from chance (1/8), not saturated
    # a class-order bug (names taken in sorted order instead of folder order) fails the parity check
    (root / "classnames.txt").write_text("".join(f"{n}\n" for n in sorted(NAMES)))
    with pytest.raises(AssertionError):
        _assert_cls_equal(_ours("zeroshot-cls", enc, root).metrics, ref)


def test_zeroshot_webdataset_parity_with_clip_benchmark_reader(tmp_path):
    root = write_wds(tmp_path / "wds", "test", NAMES, 5)
    enc = PrototypeEncoder(NAMES, seed=3)
    ours = _ours("zeroshot-cls", enc, root, split="test").metrics
    ds = build_dataset("wds/synthetic", root=str(root), transform=enc.preprocess, split="test")
    assert ds.classes == NAMES  # clip_benchmark's reader, label order (not sorted)
    loader = DataLoader(ds.batched(6), batch_size=None, shuffle=False, num_workers=0)
    ref = _cb_classification(enc, loader, ds.classes, ds.templates)
    _assert_cls_equal(ours, ref)
    assert ours["acc1"] > 0.4
    # a class-order bug (names sorted) fails the parity check
    (root / "classnames.txt").write_text("".join(f"{n}\n" for n in sorted(NAMES)))
    with pytest.raises(AssertionError):
        _assert_cls_equal(_ours("zeroshot-cls", enc, root, split="test").metrics, ref)


def test_zeroshot_fewer_than_five_classes_acc5_undefined(tmp_path):
    names = NAMES[:3]
    root = write_imagefolder(tmp_path / "ds", names, {"val": 4})
    enc = PrototypeEncoder(names)
    ev = _ours("zeroshot-cls", enc, root)
    assert ev.metrics["acc5"] is None
    assert any("acc5 undefined" in n for n in ev.extra["notes"])
    ref = _imagefolder_reference(enc, root, _by_folder(names), list(TEMPLATES), tmp_path / "cb")
    _assert_cls_equal(ev.metrics, ref)


def test_zeroshot_parity_tiny_openclip(tmp_path, tiny_encoder):
    root = write_imagefolder(tmp_path / "ds", NAMES[:6], {"val": 3})
    ours = _ours("zeroshot-cls", tiny_encoder, root).metrics
    ref = _imagefolder_reference(tiny_encoder, root, _by_folder(NAMES[:6]), list(TEMPLATES), tmp_path / "cb")
    _assert_cls_equal(ours, ref)


def _cb_flickr_annotations(karpathy_json: Path, split: str, out: Path) -> Path:
    """clip_benchmark's Flickr annotation file (``image,caption`` lines, as its ``flickr30k_<split>_karpathy.txt``),
    written from the raw Karpathy JSON, not through our reader."""
    images = json.loads(karpathy_json.read_text())["images"]
    lines = [
        f"{im['filename']},{s['raw']}\n" for im in images if im["split"] == split for s in im["sentences"]
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("image,caption\n" + "".join(lines))
    return out


def _cb_retrieval(encoder, ann: Path, split: str, tmp: Path) -> dict:
    """clip_benchmark's ``flickr30k`` dataset (its Flickr reader) on ``ann``'s images; the annotation file is written
    under ``tmp``, outside the dataset folder (the session's synthetic world must stay byte-identical)."""
    txt = _cb_flickr_annotations(ann, split, tmp / f"flickr30k_{split}_karpathy.txt")
    ds = build_dataset(
        "flickr30k",
        root=str(ann.parent / "images"),
        transform=encoder.preprocess,
        split=split,
        annotation_file=str(txt),
        task="zeroshot_retrieval",
    )
    loader = DataLoader(ds, batch_size=4, shuffle=False, num_workers=0, collate_fn=image_captions_collate_fn)
    model, _, tokenizer = wrap_encoder(encoder)
    return zeroshot_retrieval.evaluate(model, loader, tokenizer, "cpu", amp=False, recall_k_list=[1, 5, 10])


def _assert_retrieval_equal(ours: dict, ref: dict) -> None:
    assert set(ref) == set(ours)
    for key, value in ref.items():
        assert abs(ours[key] - value) <= TOL, key


def test_retrieval_parity_nontrivial(tmp_path):
    ann = write_karpathy(tmp_path / "flickr", NAMES, {"train": 3, "val": 2, "test": 30})
    enc = PrototypeEncoder(NAMES, seed=1)
    ours = _ours("retrieval", enc, ann.parent).metrics
    ref = _cb_retrieval(enc, ann, "test", tmp_path / "cb")
    _assert_retrieval_equal(ours, ref)
    assert 0.05 < ours["image_retrieval_recall@1"] < ours["image_retrieval_recall@10"] <= 1.0
    # a caption-assignment bug (each test image given the next one's captions) fails the parity check
    data = json.loads(ann.read_text())
    test = [im for im in data["images"] if im["split"] == "test"]
    shifted = [im["sentences"] for im in test[1:] + test[:1]]
    for im, sentences in zip(test, shifted, strict=True):
        im["sentences"] = sentences
    ann.write_text(json.dumps(data))
    with pytest.raises(AssertionError):
        _assert_retrieval_equal(_ours("retrieval", enc, ann.parent).metrics, ref)


def test_retrieval_parity_tiny_openclip(tmp_path, tiny_encoder):
    ann = write_karpathy(tmp_path / "flickr", NAMES, {"train": 2, "test": 14})
    _assert_retrieval_equal(
        _ours("retrieval", tiny_encoder, ann).metrics,
        _cb_retrieval(tiny_encoder, ann, "test", tmp_path / "cb"),
    )


def test_retrieval_chunking_does_not_change_recall():
    g = torch.Generator().manual_seed(0)
    img = torch.nn.functional.normalize(torch.randn(50, 8, generator=g), dim=-1)
    txt = torch.nn.functional.normalize(torch.randn(170, 8, generator=g), dim=-1)
    owner = torch.randint(0, 50, (170,), generator=g)
    whole = retrieval_recall(img, txt, owner, [1, 5, 10], max_elements=1 << 30)
    chunked = retrieval_recall(img, txt, owner, [1, 5, 10], max_elements=97)
    assert whole == chunked


def test_parity_on_synthetic_world(synth_root, tiny_encoder, tmp_path):
    root = synth_root / "imagenet"
    # the world's own class list and templates, one per line (its names do not sort in wnid-folder order; its
    # templates mark the class CLIP's way, "{}", where clip_benchmark's template files say "{c}")
    names = (root / "classnames.txt").read_text().splitlines()
    templates = [t.replace("{}", "{c}") for t in (root / "templates.txt").read_text().splitlines()]
    assert names != sorted(names)
    ours = _ours("zeroshot-cls", tiny_encoder, root).metrics
    _assert_cls_equal(ours, _imagefolder_reference(tiny_encoder, root, names, templates, tmp_path / "cb"))
    ann = synth_root / "flickr30k" / "dataset_flickr30k.json"
    _assert_retrieval_equal(
        _ours("retrieval", tiny_encoder, ann.parent).metrics,
        _cb_retrieval(tiny_encoder, ann, "test", tmp_path / "cb"),
    )
