"""Parity with clip_benchmark: the same encoder, transform and images through clip_benchmark's own readers and
``evaluate`` functions give the same acc1/acc5/mean-per-class-recall and recall@k (within 1e-6)."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import pytest
import torch
from clip_benchmark.datasets.builder import build_dataset, image_captions_collate_fn
from clip_benchmark.datasets.flickr import Flickr
from clip_benchmark.metrics import zeroshot_classification, zeroshot_retrieval
from torch.utils.data import DataLoader
from torchvision.datasets import ImageFolder

from adapters.clip_benchmark import wrap_encoder
from benchmarks.metrics import retrieval_recall
from benchmarks.readers import read_class_meta, read_karpathy
from benchmarks.registry import get_harness
from tests.global_fixtures import PrototypeEncoder, write_imagefolder, write_karpathy, write_wds

NAMES = ["apple", "boat", "cat", "drum", "eagle", "fern", "grape", "harp"]
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


def _imagefolder_reference(encoder, root: Path, split: str = "val") -> dict:
    meta = read_class_meta(root, split)
    ds = ImageFolder(
        str(root / split), transform=encoder.preprocess
    )  # what clip_benchmark uses for imagenet1k
    ds.classes = meta.classnames
    loader = DataLoader(ds, batch_size=5, shuffle=False, num_workers=0)
    return _cb_classification(encoder, loader, meta.classnames, meta.templates)


def test_zeroshot_imagefolder_parity_nontrivial(tmp_path):
    root = write_imagefolder(tmp_path / "ds", NAMES, {"val": 6})
    enc = PrototypeEncoder(NAMES)
    ours = _ours("zeroshot-cls", enc, root).metrics
    ref = _imagefolder_reference(enc, root)
    _assert_cls_equal(ours, ref)
    assert 0.4 < ours["acc1"] < 1.0 and ours["acc5"] > ours["acc1"]  # far from chance (1/8), not saturated


def test_zeroshot_webdataset_parity_with_clip_benchmark_reader(tmp_path):
    root = write_wds(tmp_path / "wds", "test", NAMES, 5)
    enc = PrototypeEncoder(NAMES, seed=3)
    ours = _ours("zeroshot-cls", enc, root, split="test").metrics
    ds = build_dataset("wds/synthetic", root=str(root), transform=enc.preprocess, split="test")
    loader = DataLoader(ds.batched(6), batch_size=None, shuffle=False, num_workers=0)
    ref = _cb_classification(enc, loader, ds.classes, ds.templates)
    _assert_cls_equal(ours, ref)
    assert ours["acc1"] > 0.4


def test_zeroshot_fewer_than_five_classes_acc5_undefined(tmp_path):
    names = NAMES[:3]
    root = write_imagefolder(tmp_path / "ds", names, {"val": 4})
    enc = PrototypeEncoder(names)
    ev = _ours("zeroshot-cls", enc, root)
    assert ev.metrics["acc5"] is None
    assert any("acc5 undefined" in n for n in ev.extra["notes"])
    _assert_cls_equal(ev.metrics, _imagefolder_reference(enc, root))


def test_zeroshot_parity_tiny_openclip(tmp_path, tiny_encoder):
    root = write_imagefolder(tmp_path / "ds", NAMES[:6], {"val": 3})
    ours = _ours("zeroshot-cls", tiny_encoder, root).metrics
    _assert_cls_equal(ours, _imagefolder_reference(tiny_encoder, root))


def _cb_retrieval(encoder, ann: Path, split: str) -> dict:
    data = read_karpathy(ann.parent, split)
    # clip_benchmark's Flickr annotation format ("image,caption" lines), written outside the dataset folder: the
    # synthetic world is shared by the session's tests, and one of them checks that it is byte-identical
    txt = Path(tempfile.mkdtemp(prefix="cb-flickr-")) / f"cb_{split}.txt"
    txt.write_text(
        "image,caption\n"
        + "".join(
            f"{Path(r.path).name},{c}\n"
            for r, caps in zip(data.refs, data.captions, strict=True)
            for c in caps
        )
    )
    ds = Flickr(root=str(Path(data.refs[0].path).parent), ann_file=str(txt), transform=encoder.preprocess)
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
    ref = _cb_retrieval(enc, ann, "test")
    _assert_retrieval_equal(ours, ref)
    assert 0.05 < ours["image_retrieval_recall@1"] < ours["image_retrieval_recall@10"] <= 1.0


def test_retrieval_parity_tiny_openclip(tmp_path, tiny_encoder):
    ann = write_karpathy(tmp_path / "flickr", NAMES, {"train": 2, "test": 14})
    _assert_retrieval_equal(
        _ours("retrieval", tiny_encoder, ann).metrics, _cb_retrieval(tiny_encoder, ann, "test")
    )


def test_retrieval_chunking_does_not_change_recall():
    g = torch.Generator().manual_seed(0)
    img = torch.nn.functional.normalize(torch.randn(50, 8, generator=g), dim=-1)
    txt = torch.nn.functional.normalize(torch.randn(170, 8, generator=g), dim=-1)
    owner = torch.randint(0, 50, (170,), generator=g)
    whole = retrieval_recall(img, txt, owner, [1, 5, 10], max_elements=1 << 30)
    chunked = retrieval_recall(img, txt, owner, [1, 5, 10], max_elements=97)
    assert whole == chunked


def test_parity_on_synthetic_world(synth_root, tiny_encoder):
    root = synth_root / "imagenet"
    ours = _ours("zeroshot-cls", tiny_encoder, root).metrics
    _assert_cls_equal(ours, _imagefolder_reference(tiny_encoder, root))
    ann = synth_root / "flickr30k" / "dataset_flickr30k.json"
    _assert_retrieval_equal(
        _ours("retrieval", tiny_encoder, ann.parent).metrics, _cb_retrieval(tiny_encoder, ann, "test")
    )
