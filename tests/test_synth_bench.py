"""Photo output of the synthetic world (the `bench` preset): camera-sized 4:2:0 JPEGs, aligned label maps, the same
scenes and the same bytes every time, the other presets untouched, and the readers (ours, torchvision's,
clip_benchmark's) seeing the same files. A small photo preset stands in for `bench` (which takes minutes)."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, JpegImagePlugin

from silc.data.synth import PRESETS, SHAPES, generate_world
from silc.data.synth.encode import resized
from silc.data.synth.writers import Photo, Preset, make_scene

PHOTO = Preset(
    image_size=64,
    pretrain=4,
    shard_size=4,
    imagenet_per_class=(1, 3),
    flickr=(1, 1, 4),
    ade=(2, 3),
    coco=(1, 2),
    photo=Photo(short_side=(40, 56)),
)
# sha256 over (path, sha256 of the bytes) of every file of the `tiny` world (seed 0), as written before photo
# output existed, with Pillow 13.0.0 and NumPy 2.3.5: photo output must not change a byte of the other presets.
TINY_DIGEST = "69da0045d902d3b9787b36d158b3db1c47f22fae6cbbfa74a6e32e7a9c69cf47"


def _generate(out: Path, preset: Preset) -> Path:
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(PRESETS, "photo-test", preset)
        generate_world(out, seed=0, preset="photo-test")
    return out


@pytest.fixture(scope="module")
def photo_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _generate(tmp_path_factory.mktemp("photo-world"), PHOTO)


def _photos(root: Path) -> list[Path]:
    """The photo JPEGs: ImageNet train/val, Flickr30k, ADE20K training/validation."""
    return sorted(
        [*(root / "imagenet").rglob("*.JPEG"), *(root / "flickr30k").rglob("*.jpg")]
        + [*(root / "ADEChallengeData2016" / "images").rglob("*.jpg")]
    )


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for name, data in _files(root).items():
        h.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
    return h.hexdigest()


def test_photo_frames_are_camera_sized_and_coco_stays_square(photo_world: Path):
    photos = _photos(photo_world)
    assert len(photos) == 16 * 4 + 6 + 5  # imagenet train + val, flickr30k, ADE20K
    for path in photos:
        w, h = Image.open(path).size
        short, long = min(w, h), max(w, h)
        assert 40 <= short <= 56 and long in (round(short * 4 / 3), round(short * 3 / 2)), (path, w, h)
    assert Counter(Image.open(p).size[0] > Image.open(p).size[1] for p in photos) == {True: 57, False: 18}
    for path in (photo_world / "coco").rglob("*.jpg"):
        assert Image.open(path).size == (64, 64)  # its boxes are in pixels of the square rendering
    # `bench`'s frames: short side 375..480, 4:3 or 3:2 in equal parts, about 80 % landscape
    rng = np.random.default_rng(0)
    frames = [PRESETS["bench"].photo.frame(rng) for _ in range(2000)]
    assert sum(w > h for w, h in frames) == 1572
    assert Counter(round(max(f) / min(f), 2) for f in frames) == {1.33: 1026, 1.5: 974}
    assert (min(min(f) for f in frames), max(min(f) for f in frames)) == (375, 480)
    assert (min(max(f) for f in frames), max(max(f) for f in frames)) == (500, 720)


def test_photos_are_quality_90_420_jpegs_without_metadata(photo_world: Path):
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, format="JPEG", quality=90)
    q90 = Image.open(buf).quantization
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, format="JPEG", quality=95)
    assert Image.open(buf).quantization != q90  # the tables tell the quality apart
    for path in _photos(photo_world):
        im = Image.open(path)
        assert im.format == "JPEG" and im.mode == "RGB"
        assert JpegImagePlugin.get_sampling(im) == 2  # 4:2:0
        assert im.quantization == q90
        assert [marker for marker, _ in im.applist] == ["APP0"] and im.applist[0][1].startswith(b"JFIF")
        assert not {"exif", "icc_profile", "comment", "progressive", "progression"} & set(im.info)
    manifest = json.loads((photo_world / "world.json").read_bytes())
    assert manifest["photo"] == {"short_side": [40, 56], "jpeg_quality": 90, "chroma_subsampling": "4:2:0"}


def test_ade_label_maps_align_with_their_photos(photo_world: Path):
    ade = photo_world / "ADEChallengeData2016"
    for split, short in (("training", "train"), ("validation", "val")):
        for i in range(PHOTO.ade[split == "validation"]):
            stem = f"ADE_{short}_{i + 1:08d}"
            image = np.asarray(Image.open(ade / "images" / split / f"{stem}.jpg").convert("RGB"))
            labels = Image.open(ade / "annotations" / split / f"{stem}.png")
            assert labels.mode == "L" and labels.size == image.shape[1::-1]
            _, r, _ = make_scene(0, f"ade/{split}", i, 64)
            # both are the same square rendering resized to the photo's frame: the labels exactly (nearest), the
            # photo up to its JPEG loss; scaled back, the labels match the rendering's (a transposed or shifted
            # label map agrees on about half the pixels)
            frame = labels.size
            assert (np.asarray(labels) == resized(r.labels, frame, labels=True)).all()
            assert np.abs(resized(r.image, frame).astype(float) - image).mean() < 10
            back = resized(np.asarray(labels), (64, 64), labels=True)
            assert (back == r.labels).mean() > 0.97


def test_photo_world_is_byte_identical_and_keeps_every_scene(photo_world: Path, tmp_path: Path):
    again = _files(_generate(tmp_path / "again", PHOTO))
    assert again == _files(photo_world)
    # without photo output: the same captions, COCO and pretraining files (the frame is drawn last)
    plain = _files(_generate(tmp_path / "plain", dataclasses.replace(PHOTO, photo=None)))
    same = [k for k in plain if k.startswith(("pretrain/", "coco/", "flickr30k/dataset_"))]
    assert len(same) == (4 + 1 + 1) + (3 + 4) + 1 and all(plain[k] == again[k] for k in same)
    assert sum(k.endswith(".png") for k in plain if k.startswith("imagenet/")) == 64
    assert not any(k.endswith(".JPEG") for k in plain)


def test_other_presets_are_byte_identical_to_before(synth_root: Path):
    assert _digest(synth_root) == TINY_DIGEST  # see TINY_DIGEST: re-pin only for another Pillow/NumPy build
    assert "photo" not in json.loads((synth_root / "world.json").read_bytes())
    assert all(spec.photo is None for name, spec in PRESETS.items() if name != "bench")


def test_readers_see_the_photos_as_torchvision_and_clip_benchmark_do(photo_world: Path):
    from clip_benchmark.datasets.builder import build_dataset
    from torchvision.datasets import ImageFolder

    from benchmarks.identity import count_images
    from benchmarks.readers.classification import read_classification
    from benchmarks.readers.karpathy import read_karpathy
    from benchmarks.seg_dataset import find_bad_pairs

    root = photo_world / "imagenet"
    ours = read_classification(root, "val")
    samples = [(ref.path, label) for ref, label in zip(ours.refs, ours.labels, strict=True)]
    assert len(samples) == 3 * len(SHAPES) and all(p.endswith(".JPEG") for p, _ in samples)
    assert samples == ImageFolder(str(root / "val")).samples
    assert samples == build_dataset("imagenet1k-unverified", root=str(root), split="test").samples
    assert ours.meta.classnames == list(SHAPES) and count_images([root / "val"]) == len(samples)
    assert ours.refs[0].open().size == Image.open(samples[0][0]).size
    flickr = read_karpathy(photo_world / "flickr30k", "test")
    assert [Path(r.path).name for r in flickr.refs] == [f"{1000000002 + i}.jpg" for i in range(4)]
    assert flickr.num_captions == 20
    bad, kept = find_bad_pairs(photo_world / "ADEChallengeData2016", "validation")
    assert bad == {} and kept == [f"ADE_val_{i:08d}" for i in (1, 2, 3)]
