"""Undecodable, odd and huge images: every PIL mode becomes RGB as torchvision's ``pil_loader`` makes it; a
truncated, empty or garbage file (or a decompression bomb) stops ``silc-bench eval``/``run`` with one line naming
every bad file, or, with ``--skip-bad-images``, is left out and the numbers equal those of the data without it."""

from __future__ import annotations

import io
import json
import shutil
import struct
import tarfile
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from torchvision.datasets.folder import pil_loader

import silc_bench.cli
from benchmarks.readers.images import (
    BadImage,
    ImageRef,
    decode_rgb,
    find_bad_images,
    settle_bad_images,
)
from benchmarks.records import artefacts_dir, read_record
from benchmarks.uncertainty import OUTCOMES_FILE, Outcomes
from silc.errors import UserError
from tests.conftest import TINY_MODEL_CONFIG
from tests.global_fixtures import write_imagefolder, write_karpathy

NAMES = ["apple", "boat", "cat", "drum", "eagle", "fern"]
TINY = f"tiny=openclip:{TINY_MODEL_CONFIG}"  # seeded random init: the same weights in every run
LIMIT = Image.MAX_IMAGE_PIXELS
ADVICE = "repair or remove them, or pass --skip-bad-images to leave them out"


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose IHDR claims ``width`` x ``height`` RGB pixels (PIL checks the size at open)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b""))
        + chunk(b"IEND", b"")
    )


def png_ending_in_garbage() -> bytes:
    """A 64x64 grey PNG whose image data is cut in half and followed by text: it opens, and decoding it raises
    PIL's ``SyntaxError`` (not an OSError)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    pixels = zlib.compress(b"".join(b"\x00" + bytes(64) for _ in range(64)))
    header = chunk(b"IHDR", struct.pack(">IIBBBBB", 64, 64, 8, 0, 0, 0, 0))
    return b"\x89PNG\r\n\x1a\n" + header + chunk(b"IDAT", pixels[: len(pixels) // 2]) + b"garbage text " * 10


def break_files(root: Path, truncated: str, empty: str, garbage: str) -> dict[str, str]:
    """Truncate one file to 3/4 of its bytes, empty another, fill a third with text; returns name -> reason."""
    data = (root / truncated).read_bytes()
    (root / truncated).write_bytes(data[: len(data) * 3 // 4])
    (root / empty).write_bytes(b"")
    (root / garbage).write_bytes(b"not an image, just some text\n" * 20)
    return {truncated: "truncated", empty: "empty file", garbage: "not an image PIL can read"}


def expected_error(root: Path, bad: dict[str, str]) -> str:
    listed = ", ".join(f"{name} ({why})" for name, why in sorted(bad.items()))
    return f"silc-bench: error: {root}: {len(bad)} image(s) do not decode: {listed}; {ADVICE}\n"


@pytest.fixture
def cli(monkeypatch, tmp_path):
    """``silc-bench`` in this process with the feature cache in tmp."""
    monkeypatch.setenv("SILC_BENCH_CACHE", str(tmp_path / "cache"))
    return lambda *args: silc_bench.cli.main([str(a) for a in args])


def eval_args(benchmark: str, data: Path, results: Path, *extra) -> list:
    return [
        "eval",
        benchmark,
        "--model",
        TINY,
        "--data",
        data,
        "--results",
        results,
        "--device",
        "cpu",
        *extra,
    ]


def record_of(out: str):
    (line,) = [x for x in out.splitlines() if x.startswith("record: ")]
    path = line.removeprefix("record: ")
    return read_record(path), Outcomes.load(artefacts_dir(path) / OUTCOMES_FILE)


def assert_same_evaluation(skipped, clean) -> None:
    """The run that skipped the bad images equals the run on the data without them: metrics, intervals, units."""
    (rec, outcomes), (ref, ref_outcomes) = skipped, clean
    assert rec.num_samples == ref.num_samples
    assert rec.metrics == ref.metrics
    assert rec.metrics_ci == ref.metrics_ci
    assert outcomes.units == ref_outcomes.units
    assert ref.skipped_images == []


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    return err


# --- decoding: every PIL mode as torchvision, bad files named -------------------------------------------------


def _mode_image(mode: str, rng: np.random.Generator) -> Image.Image:
    rgb = Image.fromarray(rng.integers(0, 256, (20, 28, 3), dtype=np.uint8))
    if mode == "P-transparency":
        image = rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
        image.info["transparency"] = 3
        return image
    if mode == "I;16":
        return Image.fromarray(rng.integers(0, 65536, (20, 28), dtype=np.uint16))
    return rgb.convert(mode)


@pytest.mark.parametrize(
    "mode,fmt,read_as",
    [
        ("L", "PNG", "L"),
        ("LA", "PNG", "LA"),
        ("P-transparency", "PNG", "P"),
        ("RGBA", "PNG", "RGBA"),
        ("CMYK", "JPEG", "CMYK"),
        ("I;16", "PNG", "I;16"),
        ("RGB", "JPEG", "RGB"),
    ],
)
def test_every_mode_decodes_as_torchvisions_pil_loader(
    tmp_path: Path, mode: str, fmt: str, read_as: str
) -> None:
    from benchmarks.detection.boxcls import load_rgb

    path = tmp_path / f"image.{fmt.lower()}"
    _mode_image(mode, np.random.default_rng(0)).save(path, format=fmt)
    with Image.open(path) as im:
        assert im.mode == read_as  # the file really holds that mode
    reference = np.asarray(pil_loader(str(path)))
    assert reference.shape == (20, 28, 3) and reference.std() > 0
    np.testing.assert_array_equal(np.asarray(ImageRef(str(path)).open()), reference)
    np.testing.assert_array_equal(np.asarray(load_rgb(path)), reference)
    tar = tmp_path / "0.tar"  # a webdataset member: the same bytes at an offset
    with tarfile.open(tar, "w") as tf:
        tf.add(path, arcname=f"key.{fmt.lower()}")
    with tarfile.open(tar) as tf:
        member = tf.getmembers()[0]
    np.testing.assert_array_equal(
        np.asarray(ImageRef(str(tar), member.offset_data, member.size).open()), reference
    )


def test_bad_files_and_bombs_are_named_with_a_reason(tmp_path: Path) -> None:
    good = tmp_path / "good.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(good)
    for name in ("truncated.jpg", "empty.jpg", "garbage.jpg"):
        shutil.copy(good, tmp_path / name)
    reasons = break_files(tmp_path, "truncated.jpg", "empty.jpg", "garbage.jpg")
    (tmp_path / "bomb.png").write_bytes(png_claiming(30000, 30000))  # over twice the limit: PIL refuses it
    (tmp_path / "big.png").write_bytes(png_claiming(10000, 10000))  # over the limit: PIL only warns
    reasons["bomb.png"] = f"900000000 pixels, over PIL's decompression-bomb limit of {LIMIT}"
    reasons["big.png"] = f"10000x10000 = 100000000 pixels, over PIL's decompression-bomb limit of {LIMIT}"
    reasons["missing.jpg"] = "missing"
    names = ["good.jpg", *reasons]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no DecompressionBombWarning escapes
        found = find_bad_images([tmp_path / n for n in names], threads=3)
    assert {names[i]: why for i, why in found.items()} == reasons
    with pytest.raises(BadImage, match="^empty file$"):
        decode_rgb(io.BytesIO(b""))  # an empty tar member
    tar_member = ImageRef(str(tmp_path / "garbage.jpg"), 10, 40)
    with pytest.raises(BadImage, match="^not an image PIL can read$"):
        tar_member.open()


def test_settle_lists_ten_then_counts_and_needs_an_image_left(caplog) -> None:
    bad = {f"val/x/{i:02d}.jpg": "truncated" for i in range(13)}
    with pytest.raises(UserError) as e:
        settle_bad_images(bad, "ROOT", False, 5)
    listed = ", ".join(f"val/x/{i:02d}.jpg (truncated)" for i in range(10))
    assert str(e.value) == f"ROOT: 13 image(s) do not decode: {listed}, and 3 more; {ADVICE}"
    assert settle_bad_images(bad, "ROOT", True, 5) == sorted(bad)
    (warning,) = [r for r in caplog.records if r.levelname == "WARNING"]
    assert warning.getMessage().endswith("and 3 more; left out of the evaluation (--skip-bad-images)")
    with pytest.raises(UserError, match="; no image is left to evaluate$"):
        settle_bad_images(bad, "ROOT", True, 0)
    assert settle_bad_images({}, "ROOT", False, 5) == []


# --- the global harnesses through the CLI ---------------------------------------------------------------------


def _copy_without(src: Path, dst: Path, names: list[str]) -> Path:
    shutil.copytree(src, dst)
    for name in names:
        (dst / name).unlink()
    return dst


@pytest.mark.parametrize("workers", [0, 2])
def test_zeroshot_stops_naming_every_bad_image_or_skips_them(cli, capsys, tmp_path, workers) -> None:
    data = write_imagefolder(tmp_path / "ds", NAMES, {"val": 3}, ext=".jpg")
    bad = ["val/class000/img_001.jpg", "val/class002/img_000.jpg", "val/class004/img_002.jpg"]
    clean = _copy_without(data, tmp_path / "clean", bad)
    reasons = break_files(data, *bad)
    args = eval_args("zeroshot-cls", data, tmp_path / "res", "--workers", workers)
    assert cli(*args) == 2
    assert one_line_error(capsys) == expected_error(data, reasons)
    assert not [p for p in (tmp_path / "res").rglob("*") if p.is_file()]  # no record
    assert cli(*args, "--skip-bad-images") == 0
    skipped = record_of(capsys.readouterr().out)
    assert skipped[0].skipped_images == bad and skipped[0].num_samples == 15
    assert cli(*eval_args("zeroshot-cls", clean, tmp_path / "ref", "--workers", workers)) == 0
    assert_same_evaluation(skipped, record_of(capsys.readouterr().out))
    assert cli(*args, "--rerun") == 2  # the feature cache does not hide a bad image on a later run
    assert one_line_error(capsys) == expected_error(data, reasons)


def test_retrieval_skips_an_image_with_its_captions(cli, capsys, tmp_path) -> None:
    write_karpathy(tmp_path / "flickr", NAMES, {"train": 2, "test": 10})
    data = tmp_path / "flickr"
    bad = ["images/1003.jpg", "images/1006.jpg", "images/1009.jpg"]
    clean = _copy_without(data, tmp_path / "clean", bad)
    ann = clean / "dataset_flickr30k.json"
    obj = json.loads(ann.read_text())
    obj["images"] = [e for e in obj["images"] if f"images/{e['filename']}" not in bad]
    ann.write_text(json.dumps(obj))
    reasons = break_files(data, *bad)
    args = eval_args("retrieval", data, tmp_path / "res", "--workers", 0)
    assert cli(*args) == 2
    assert one_line_error(capsys) == expected_error(data, reasons)
    assert cli(*args, "--skip-bad-images") == 0
    skipped = record_of(capsys.readouterr().out)
    assert skipped[0].skipped_images == bad and skipped[0].num_samples == 7
    assert cli(*eval_args("retrieval", clean, tmp_path / "ref", "--workers", 0)) == 0
    reference = record_of(capsys.readouterr().out)
    assert_same_evaluation(skipped, reference)
    assert skipped[0].extra["num_captions"] == reference[0].extra["num_captions"]


def test_fewshot_says_when_left_out_images_leave_a_class_short_of_shots(cli, capsys, tmp_path) -> None:
    data = write_imagefolder(tmp_path / "ds", NAMES, {"train": 2, "val": 1}, ext=".jpg")
    break_files(data, "train/class001/img_000.jpg", "train/class003/img_001.jpg", "val/class000/img_000.jpg")
    args = eval_args("fewshot", data, tmp_path / "res", "--shots", 2, "--seeds", 0, "--workers", 0)
    assert cli(*args, "--skip-bad-images") == 2
    assert one_line_error(capsys) == (
        f"silc-bench: error: {data / 'train'}: class 'boat' has 1 images (after leaving out 2 undecodable "
        "images), fewer than the 2 shots asked for (2 such classes); lower --shots\n"
    )


def test_fewshot_redraws_shots_without_a_bad_image_and_drops_bad_val_images(cli, capsys, tmp_path) -> None:
    from benchmarks.fewshot import sample_shots

    data = write_imagefolder(tmp_path / "ds", NAMES, {"train": 4, "val": 3}, ext=".jpg")
    labels = [c for c in range(len(NAMES)) for _ in range(4)]
    drawn = sample_shots(labels, len(NAMES), 2, seed=0)  # seed 0's first shot of classes 1 and 5
    bad = [f"train/class001/img_{drawn[1][0] - 4:03d}.jpg", "val/class003/img_000.jpg"]
    bad.append(f"train/class005/img_{drawn[5][0] - 20:03d}.jpg")
    clean = _copy_without(data, tmp_path / "clean", bad)
    reasons = break_files(data, *bad)
    # one image per forward: the redrawn shots are encoded in other batches than in the clean run, and a probe
    # with C = 1000 can turn a last-bit difference of batched float32 features into another prediction
    shots = ["--shots", 1, 2, "--seeds", 0, 1, "--workers", 0, "--batch-size", 1]
    args = eval_args("fewshot", data, tmp_path / "res", *shots)
    assert cli(*args) == 2  # every bad image found while encoding: two drawn shots and a val image
    assert one_line_error(capsys) == expected_error(data, reasons)
    assert cli(*args, "--skip-bad-images") == 0
    skipped = record_of(capsys.readouterr().out)
    assert skipped[0].skipped_images == sorted(bad) and skipped[0].num_samples == 17
    assert cli(*eval_args("fewshot", clean, tmp_path / "ref", *shots)) == 0
    reference = record_of(capsys.readouterr().out)
    assert_same_evaluation(skipped, reference)
    assert [r["C"] for r in skipped[0].extra["runs"]] == [r["C"] for r in reference[0].extra["runs"]]


def test_run_passes_skip_bad_images_to_every_entry(capsys, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("SILC_BENCH_CACHE", str(tmp_path / "cache"))
    data = write_imagefolder(tmp_path / "data" / "cls", NAMES, {"val": 2}, ext=".jpg")
    bad = ["val/class001/img_000.jpg", "val/class003/img_001.jpg", "val/class005/img_000.jpg"]
    reasons = break_files(data, *bad)
    suite = tmp_path / "suite.yaml"
    suite.write_text("name: bad\nbenchmarks:\n  - {benchmark: zeroshot-cls, data: cls}\n")
    args = ["run", "--suite", suite, "--data-root", tmp_path / "data", "--model", TINY, "--device", "cpu"]
    args += ["--results", tmp_path / "res", "--bootstrap", "0"]
    assert silc_bench.cli.main([str(a) for a in args]) == 2
    err = capsys.readouterr().err.replace("\r", "\n").strip().splitlines()[-1]  # after the progress bar
    assert err + "\n" == expected_error(data, reasons)
    assert silc_bench.cli.main([str(a) for a in [*args, "--skip-bad-images"]]) == 0
    (record,) = [read_record(p) for p in (tmp_path / "res").rglob("zeroshot-cls.*.json")]
    assert record.skipped_images == bad and record.num_samples == 9


# --- segmentation and box classification (the OpenMMLab stack) ------------------------------------------------


def _seg_world(root: Path) -> Path:
    """Six colour-coded 64-px images in the synthetic ADE layout with a 5-class classnames.txt."""
    from tests.seg_fixtures import block_labels, write_ade

    rng = np.random.default_rng(0)
    maps = {f"ADE_val_{i:08d}": block_labels(rng, 64, 64, 16, range(6)) for i in range(1, 7)}
    ade = write_ade(root, maps, {v: v for v in range(6)})
    (ade / "classnames.txt").write_text("grass\nwater\nsky\ncircle\nsquare\n")
    return root


@pytest.mark.mm
def test_seg_checks_every_image_before_mmseg_and_skips_them(tmp_path, capsys) -> None:
    data = _seg_world(tmp_path / "world")
    ade = data / "ADEChallengeData2016"
    bad = [f"images/validation/ADE_val_{i:08d}.jpg" for i in (2, 4, 5)]
    clean = tmp_path / "clean"
    shutil.copytree(data, clean)
    for name in bad:
        (clean / "ADEChallengeData2016" / name).unlink()
        (
            clean / "ADEChallengeData2016" / name.replace("images", "annotations").replace(".jpg", ".png")
        ).unlink()
    reasons = break_files(ade, *bad)

    def run(root: Path, results: str, *extra: str) -> int:
        return silc_bench.cli.main(["eval", "seg-ade20k", "--model", TINY, "--data", str(root), "--workers", "0",
                                    "--results", str(tmp_path / results), "--protocol", "synth", *extra])  # fmt: skip

    assert run(data, "res") == 2
    assert one_line_error(capsys) == expected_error(ade, reasons)
    assert run(data, "res", "--skip-bad-images") == 0
    skipped = record_of(capsys.readouterr().out)
    assert skipped[0].skipped_images == bad and skipped[0].num_samples == 3
    assert skipped[0].extra["timing"]["decode_check_s"] >= 0
    assert run(clean, "ref") == 0
    reference = record_of(capsys.readouterr().out)
    assert_same_evaluation(skipped, reference)
    assert skipped[0].extra["per_class_iou"] == reference[0].extra["per_class_iou"]


@pytest.mark.mm
def test_seg_a_label_map_that_does_not_decode_leaves_its_image_out(tmp_path) -> None:
    from benchmarks.seg_dataset import find_bad_pairs

    ade = _seg_world(tmp_path / "world") / "ADEChallengeData2016"
    label = ade / "annotations" / "validation" / "ADE_val_00000003.png"
    label.write_bytes(label.read_bytes()[:60])
    (ade / "images" / "validation" / "ADE_val_00000006.jpg").write_bytes(png_claiming(30000, 30000))
    bad, kept = find_bad_pairs(ade, "validation")
    assert bad == {
        "annotations/validation/ADE_val_00000003.png": "truncated",
        "images/validation/ADE_val_00000006.jpg": f"900000000 pixels, over PIL's decompression-bomb limit of {LIMIT}",
    }
    assert kept == [f"ADE_val_{i:08d}" for i in (1, 2, 4, 5)]


@pytest.mark.mm
def test_seg_skips_bad_images_with_a_relative_results_folder(cli, tmp_path, capsys, monkeypatch) -> None:
    """The file listing the images left (mmseg's ``ann_file``) lies in the record's folder under a relative
    ``--results``; mmengine would join a relative ``ann_file`` onto the data root, so it is passed absolute."""
    ade = _seg_world(tmp_path / "world") / "ADEChallengeData2016"
    bad = [f"images/validation/ADE_val_{i:08d}.jpg" for i in (2, 4, 5)]
    break_files(ade, *bad)
    monkeypatch.chdir(tmp_path)
    args = ["eval", "seg-ade20k", "--model", TINY, "--data", "world", "--workers", 0, "--results", "results",
            "--protocol", "synth", "--skip-bad-images"]  # fmt: skip
    assert cli(*args) == 0
    out = capsys.readouterr().out
    record, outcomes = record_of(out)
    assert record.skipped_images == bad and record.num_samples == 3
    assert outcomes.units == [f"images/validation/ADE_val_{i:08d}.jpg" for i in (1, 3, 6)]
    (line,) = [x for x in out.splitlines() if x.startswith("record: ")]
    images_file = artefacts_dir(tmp_path / line.removeprefix("record: ")) / "images.txt"
    assert record.extra["mmseg_config"]["test_dataloader"]["dataset"]["ann_file"] == str(images_file)
    assert images_file.read_text() == "ADE_val_00000001\nADE_val_00000003\nADE_val_00000006\n"


@pytest.mark.mm
def test_seg_label_maps_that_do_not_decode_are_named_by_the_decode_check(cli, tmp_path, capsys) -> None:
    """A label map that is a decompression bomb (PIL's DecompressionBombError) or whose data ends in garbage (a
    SyntaxError), neither an OSError: the preflight's label-value sample passes over them, and the decode check
    names them in one line."""
    from benchmarks.registry import get_harness

    ade = _seg_world(tmp_path / "world") / "ADEChallengeData2016"
    labels = ade / "annotations" / "validation"
    (labels / "ADE_val_00000003.png").write_bytes(png_claiming(30000, 30000))
    (labels / "ADE_val_00000005.png").write_bytes(png_ending_in_garbage())
    harness = get_harness("seg-ade20k")
    protocol = harness.resolve_protocol("synth")
    assert harness.preflight(ade.parent, protocol, harness.parse_options({}), "cpu") == []
    args = ["eval", "seg-ade20k", "--model", TINY, "--data", ade.parent, "--workers", 0, "--results",
            tmp_path / "res", "--protocol", "synth"]  # fmt: skip
    assert cli(*args) == 2
    assert one_line_error(capsys) == expected_error(
        ade,
        {
            "annotations/validation/ADE_val_00000003.png": f"900000000 pixels, over PIL's decompression-bomb limit "
            f"of {LIMIT}",
            "annotations/validation/ADE_val_00000005.png": "SyntaxError: broken PNG file (chunk b'age ')",
        },
    )


def _det_world(root: Path) -> Path:
    from tests.det_helpers import IMAGES, random_images, write_coco

    return write_coco(root, {"train2017": IMAGES["train2017"], "val2017": random_images(8, 1, "v")})


def _coco_copy_without(data: Path, clean: Path, bad: list[str], subsets: tuple[str, ...]) -> Path:
    """A copy of the COCO root ``data`` at ``clean`` without the images ``bad`` (``<subset>/<file>``), their
    files, entries and boxes: what a run that skips them must equal."""
    shutil.copytree(data, clean)
    for subset in subsets:
        ann = clean / "annotations" / f"instances_{subset}.json"
        coco = json.loads(ann.read_text())
        drop = {i["id"] for i in coco["images"] if f"{subset}/{i['file_name']}" in bad}
        coco["images"] = [i for i in coco["images"] if i["id"] not in drop]
        coco["annotations"] = [a for a in coco["annotations"] if a["image_id"] not in drop]
        ann.write_text(json.dumps(coco))
    for name in bad:
        (clean / name).unlink()
    return clean


@pytest.mark.mm
def test_boxcls_drops_a_bad_image_with_its_boxes(tmp_path, capsys) -> None:
    data = _det_world(tmp_path / "coco")
    bad = ["val2017/v1.png", "val2017/v4.png", "val2017/v6.png"]
    clean = _coco_copy_without(data, tmp_path / "clean", bad, ("val2017",))
    reasons = break_files(data, *bad)
    extra = ["--protocol", "boxcls", "--input-size", "64", "--templates", "photo"]
    assert silc_bench.cli.main([str(a) for a in eval_args("det-ovcoco", data, tmp_path / "res", *extra)]) == 2
    assert one_line_error(capsys) == expected_error(data, reasons)
    argv = eval_args("det-ovcoco", data, tmp_path / "res", *extra, "--skip-bad-images")
    assert silc_bench.cli.main([str(a) for a in argv]) == 0
    skipped = record_of(capsys.readouterr().out)
    assert skipped[0].skipped_images == bad
    assert (
        silc_bench.cli.main([str(a) for a in eval_args("det-ovcoco", clean, tmp_path / "ref", *extra)]) == 0
    )
    reference = record_of(capsys.readouterr().out)
    assert_same_evaluation(skipped, reference)
    assert skipped[0].extra["images"] == 5 and skipped[0].extra["boxes"] == reference[0].extra["boxes"]


@pytest.mark.mm
def test_fvlm_stops_before_training_on_a_bad_image(tmp_path, capsys) -> None:
    data = _det_world(tmp_path / "coco")
    bad = ["train2017/t2.png", "val2017/v0.png", "val2017/v3.png"]
    reasons = break_files(data, *bad)
    argv = eval_args("det-ovcoco", data, tmp_path / "res", "--protocol", "fvlm", "--max-iters", "1")
    assert silc_bench.cli.main([str(a) for a in [*argv, "--work-dir", tmp_path / "work"]]) == 2
    assert one_line_error(capsys) == expected_error(data, reasons)
    assert not (tmp_path / "work" / "mmdet").exists()  # no training started


@pytest.mark.mm
@pytest.mark.slow
def test_fvlm_leaves_bad_train_and_val_images_out_of_training_and_test(tmp_path, capsys) -> None:
    data = _det_world(tmp_path / "coco")
    bad = ["train2017/t2.png", "val2017/v0.png", "val2017/v3.png"]
    clean = _coco_copy_without(data, tmp_path / "clean", bad, ("train2017", "val2017"))
    break_files(data, *bad)
    runs = []
    for root, results, extra in ((data, "res", ["--skip-bad-images"]), (clean, "ref", [])):
        argv = eval_args(
            "det-ovcoco", root, tmp_path / results, "--protocol", "fvlm", "--max-iters", 2, *extra
        )
        assert silc_bench.cli.main([str(a) for a in [*argv, "--templates", "photo"]]) == 0
        runs.append(record_of(capsys.readouterr().out))
    (skipped, _), (reference, _) = runs
    assert skipped.skipped_images == bad and skipped.num_samples == 6
    assert_same_evaluation(*runs)
    assert skipped.extra["loss_start"] == reference.extra["loss_start"]  # trained on the same images
    assert skipped.extra["loss_end"] == reference.extra["loss_end"]
    detections = [json.loads(Path(r.extra["detections_file"]).read_text()) for r in (skipped, reference)]
    assert detections[0] == detections[1] and detections[0]
