"""The feature cache: a second run encodes nothing, keys separate what changes features, corruption recomputes."""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from torchvision import transforms

from benchmarks.features import FeatureCache, describe_transform
from benchmarks.registry import get_harness
from tests.global_fixtures import PrototypeEncoder, write_imagefolder

NAMES = ["apple", "boat", "cat", "drum", "eagle", "fern"]


def _run(benchmark, enc, root, cache, **overrides):
    h = get_harness(benchmark)
    options = h.parse_options({"cache_dir": cache, "workers": 0})
    return h.evaluate(enc, root, h.resolve_protocol(None, overrides), options, root / "artefacts")


@pytest.fixture
def data(tmp_path):
    return write_imagefolder(tmp_path / "ds", NAMES, {"train": 5, "val": 3})


def test_second_run_encodes_nothing_and_matches(data, tmp_path):
    cache = tmp_path / "cache"
    first = _run("zeroshot-cls", PrototypeEncoder(NAMES), data, cache)
    enc = PrototypeEncoder(NAMES)
    second = _run("zeroshot-cls", enc, data, cache)
    assert enc.image_calls == 0 and enc.text_calls == 0
    assert second.images_processed == 0 and second.extra["image_features_from_cache"]
    assert first.metrics == second.metrics
    # few-shot on the same val images reuses zero-shot's val features
    enc2 = PrototypeEncoder(NAMES)
    ev = _run("fewshot", enc2, data, cache, shots=[2], seeds=[0, 1])
    assert ev.extra["image_features_from_cache"] == {"train": False, "val": True}


def test_corrupt_entry_is_detected_and_recomputed(data, tmp_path):
    cache = tmp_path / "cache"
    ref = _run("zeroshot-cls", PrototypeEncoder(NAMES), data, cache).metrics
    entries = sorted(cache.rglob("*.pt"))
    assert len(entries) == 2  # prompts + images
    for path in entries:
        raw = bytearray(path.read_bytes())
        raw[len(raw) // 2] ^= 0xFF  # flip one byte in the middle (tensor data)
        path.write_bytes(bytes(raw))
    enc = PrototypeEncoder(NAMES)
    again = _run("zeroshot-cls", enc, data, cache)
    assert enc.image_calls > 0 and enc.text_calls > 0
    assert again.metrics == ref
    truncated = sorted(cache.rglob("*.pt"))[0]
    truncated.write_bytes(truncated.read_bytes()[:100])
    assert FeatureCache(cache).load({"no": "such entry"}) is None


def test_checksum_guards_silent_bit_flips(tmp_path):
    cache = FeatureCache(tmp_path)
    parts = {"kind": "image", "x": 1}
    cache.save(parts, torch.arange(12, dtype=torch.float32).reshape(3, 4))
    path = cache.path(cache.key(parts))
    entry = torch.load(path, weights_only=True)
    entry["tensor"][1, 1] = 99.0  # a well-formed file whose tensor no longer matches its checksum
    torch.save(entry, path)
    assert cache.load(parts) is None and not path.exists()


def test_key_separates_transform_precision_and_data(data, tmp_path):
    cache = tmp_path / "cache"
    _run("zeroshot-cls", PrototypeEncoder(NAMES), data, cache)
    enc = PrototypeEncoder(NAMES)
    enc.preprocess = transforms.Compose(
        [
            transforms.Resize(20),
            transforms.CenterCrop(20),
            transforms.ToTensor(),
            transforms.Normalize(enc.mean, enc.std),
        ]
    )
    _run("zeroshot-cls", enc, data, cache)
    assert enc.image_calls > 0 and enc.text_calls == 0  # new transform: images again, prompts cached
    enc = PrototypeEncoder(NAMES)
    _run("zeroshot-cls", enc, data, cache, precision="bf16")
    assert enc.image_calls > 0 and enc.text_calls > 0
    Image.new("RGB", (30, 30), "white").save(
        data / "val" / "class000" / "img_000.png"
    )  # changed file, new key
    enc = PrototypeEncoder(NAMES)
    _run("zeroshot-cls", enc, data, cache)
    assert enc.image_calls > 0


def test_transform_description_is_stable():
    def to_rgb(im):
        return im

    t = transforms.Compose([transforms.Resize(64), to_rgb, transforms.Normalize((0.5,), (0.2,))])
    d = describe_transform(t)
    assert "0x" not in d and "to_rgb" in d and "bicubic" not in d and "Resize(size=64" in d
