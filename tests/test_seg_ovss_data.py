"""The ovss8 suite's data: ``silc-bench data coco-object`` against the reference conversion (mmseg's COCO-Stuff
mapping, the papers' thing + 1 / stuff -> 0 rule) on a tiny fake COCO-Stuff-164k, its bad input in one line each;
``silc-bench data synth-ovss``: every layout read by its mmseg dataset class with the label values its dataset's
conventions give the world's scenes; and the suite end to end on those layouts through ``silc-bench run`` and
``silc-bench table --layout ovss``."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import require_mm

pytestmark = pytest.mark.mm
require_mm()  # before the mm imports below: fails when mm is missing, skips with SILC_SKIP_MM=1

import mmseg  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402
from mmseg.datasets import COCOStuffDataset  # noqa: E402
from mmseg.registry import DATASETS  # noqa: E402

from benchmarks.records import read_record  # noqa: E402
from benchmarks.registry import get_harness  # noqa: E402
from benchmarks.seg_config import load_config  # noqa: E402
from benchmarks.seg_dataset import dataset_root  # noqa: E402
from benchmarks.seg_mmseg import COCOObjectDataset  # noqa: E402
from benchmarks.suites import load_suite  # noqa: E402
from silc.data.synth.world import OBJECT_LABEL_OFFSET  # noqa: E402
from silc_bench.app.references import reference_specs  # noqa: E402
from silc_bench.cli import main  # noqa: E402
from tests.seg_fixtures import save_jpeg, save_label  # noqa: E402

HARNESS = get_harness("seg-ade20k")


def _reference_mapping() -> dict[int, int]:
    """COCO-Object's label of each COCO-Stuff value, as GroupViT / TCL / NACLIP's cvt_coco_object.py defines it
    on mmseg's converter mapping: train id + 1, then every value above 90 (stuff, 255 unlabelled) 0."""
    path = Path(mmseg.__file__).parent / ".mim/tools/dataset_converters/coco_stuff164k.py"
    spec = importlib.util.spec_from_file_location("mmseg_coco_stuff164k", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return {k: 0 if k > 90 else v + 1 for k, v in module.clsID_to_trID.items()}


def _fake_coco_stuff(root: Path, maps: dict[str, np.ndarray]) -> Path:
    base = root / "coco_stuff164k"
    for stem, labels in maps.items():
        save_jpeg(base / "images" / "val2017" / f"{stem}.jpg", np.zeros((*labels.shape, 3), np.uint8))
        save_label(base / "annotations" / "val2017" / f"{stem}.png", labels)
    return base


def _one_line_error(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    return err


def test_coco_object_matches_the_reference_conversion(tmp_path: Path, capsys) -> None:
    reference = _reference_mapping()
    values = np.array(sorted(reference), np.uint8)  # every COCO-Stuff value: 0-181 but the unused ids, 255
    rng = np.random.default_rng(0)
    maps = {"000000000139": rng.choice(values, (24, 32)), "000000000285": np.resize(values, (16, 12))}
    coco = _fake_coco_stuff(tmp_path, maps)
    save_label(
        coco / "annotations" / "val2017" / "000000000139_labelTrainIds.png", np.zeros((24, 32))
    )  # skipped
    out = tmp_path / "coco_object"
    assert main(["data", "coco-object", "--coco-stuff", str(coco), "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary == {"coco_stuff": str(coco), "out": str(out), "label_maps": {"val2017": 2}}
    lut = np.zeros(256, np.int64)
    for value, label in reference.items():
        lut[value] = label
    for stem, raw in maps.items():
        written = np.asarray(Image.open(out / "annotations" / "val2017" / f"{stem}_instanceTrainIds.png"))
        np.testing.assert_array_equal(written, lut[raw])
    assert (out / "images" / "val2017").resolve() == (coco / "images" / "val2017").resolve()
    # the labels index COCOObjectDataset's classes: value 0 (person, id 1) -> 1, 89 (toothbrush, id 90) -> 80
    assert (lut[0], lut[89], lut[91], lut[255]) == (1, 80, 0, 0)
    classes = COCOObjectDataset.METAINFO["classes"]
    assert (classes[0], classes[1], classes[80], len(classes)) == ("background", "person", "toothbrush", 81)
    assert classes[1:] == COCOStuffDataset.METAINFO["classes"][:80]
    # in place, as the papers' script defaults to: the label maps beside the released ones, no image link
    assert main(["data", "coco-object", "--coco-stuff", str(coco), "--out", str(coco)]) == 0
    assert (coco / "annotations" / "val2017" / "000000000285_instanceTrainIds.png").is_file()
    assert not (coco / "images" / "val2017").is_symlink()


def test_coco_object_bad_input_is_one_line(tmp_path: Path, capsys) -> None:
    coco = _fake_coco_stuff(tmp_path, {"000000000139": np.full((8, 8), 91, np.uint8)})
    argv = ["data", "coco-object", "--coco-stuff", str(coco), "--out", str(tmp_path / "out")]
    missing = tmp_path / "nowhere"
    err = _one_line_error(
        capsys, ["data", "coco-object", "--coco-stuff", str(missing), "--out", str(tmp_path)]
    )
    assert err.startswith(f"silc-bench: error: {missing / 'images' / 'val2017'}: folder missing; expected ")
    ann = coco / "annotations" / "val2017"
    save_label(ann / "000000000139.png", np.array([[0, 11, 25], [90, 182, 255]]))  # unused ids, past 181
    assert _one_line_error(capsys, argv) == (
        f"silc-bench: error: {ann / '000000000139.png'}: values 11, 25, 90, 182 are no COCO-Stuff-164k class; "
        "expected its released label values (COCO category id - 1, 255 unlabelled)"
    )
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(ann / "000000000139.png")
    err = _one_line_error(capsys, argv)
    assert err.startswith(
        f"silc-bench: error: {ann / '000000000139.png'}: a uint8 image of shape (8, 8, 3); "
    )
    (ann / "000000000139.png").write_bytes(b"not a png")
    err = _one_line_error(capsys, argv)
    assert err.startswith(f"silc-bench: error: {ann / '000000000139.png'}: ")
    assert err.endswith("expected a COCO-Stuff-164k label map (8-bit PNG)")
    save_jpeg(coco / "images" / "val2017" / "000000000285.jpg", np.zeros((8, 8, 3), np.uint8))
    save_label(ann / "000000000139.png", np.zeros((8, 8)))
    assert _one_line_error(capsys, argv) == (
        f"silc-bench: error: {ann}: no label map for 1 of 2 images, e.g. 000000000285.png"
    )


# ---- the synthetic layouts -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ovss_root(tmp_path_factory: pytest.TempPathFactory, synth_root: Path) -> Path:
    out = tmp_path_factory.mktemp("ovss")
    assert main(["data", "synth-ovss", "--world", str(synth_root), "--out", str(out)]) == 0
    return out


def _world(synth_root: Path) -> list[np.ndarray]:
    folder = synth_root / "ADEChallengeData2016" / "annotations" / "validation"
    return [np.asarray(Image.open(p)).astype(np.int64) for p in sorted(folder.glob("*.png"))]


def _voc(world: np.ndarray) -> np.ndarray:
    """Shapes are the VOC classes 1-16, the rest background, and the pixels at a label edge 255."""
    voc = np.where(world >= OBJECT_LABEL_OFFSET, world - OBJECT_LABEL_OFFSET + 1, 0)
    padded = np.pad(voc, 1, mode="edge")
    edge = np.zeros(voc.shape, bool)
    for dy, dx in ((0, 1), (2, 1), (1, 0), (1, 2)):
        edge |= padded[dy : dy + voc.shape[0], dx : dx + voc.shape[1]] != voc
    return np.where(edge, 255, voc)


def _coco_stuff(world: np.ndarray, reduce_to_objects: bool) -> np.ndarray:
    """Stuff 1-6 -> the first six stuff train ids (80-85), shapes -> the first 16 things (0-15), other 255; as
    COCO-Object: things + 1, the rest 0."""
    ids = np.where(
        world == 0, 255, np.where(world < OBJECT_LABEL_OFFSET, 79 + world, world - OBJECT_LABEL_OFFSET)
    )
    if reduce_to_objects:
        return np.where(ids < 80, ids + 1, 0)
    return ids


# per protocol: the label each world label map becomes once its mmseg dataset class has read it
EXPECTED = {
    "voc21": _voc,
    "voc20": lambda w: np.where(np.isin(_voc(w), (0, 255)), 255, _voc(w) - 1),
    "context60": lambda w: w,
    "context59": lambda w: np.where(w == 0, 255, w - 1),
    "coco-object": lambda w: _coco_stuff(w, True),
    "coco-stuff": lambda w: _coco_stuff(w, False),
    "cityscapes": lambda w: np.where(w == 0, 255, (w - 1) % 19),
    "ade-336": lambda w: np.where(w == 0, 255, w - 1),
}


@pytest.mark.parametrize("name", list(EXPECTED))
def test_each_synthetic_layout_is_read_by_its_mmseg_dataset_class(name, ovss_root, synth_root) -> None:
    entry = next(e for e in load_suite("ovss8").entries if e.protocol == name)
    protocol = HARNESS.protocols[name]
    cfg = load_config(protocol, "ENCODER", dataset_root(ovss_root / entry.data, protocol), workers=0)
    init_default_scope("mmseg")
    dataset = DATASETS.build(cfg["test_dataloader"]["dataset"])
    world = _world(synth_root)
    assert type(dataset).__name__ == protocol["dataset"] and len(dataset) == len(world) == 40
    seen = set()
    for i, labels in enumerate(world):
        sample = dataset[i]["data_samples"]
        gt = sample.gt_sem_seg.data.numpy()[0]
        np.testing.assert_array_equal(gt, EXPECTED[name](labels), err_msg=f"{name} image {i}")
        seen |= set(np.unique(gt).tolist())
    assert len(seen - {255}) >= 10  # many classes, and the ignored value where the dataset has one
    assert HARNESS.preflight(ovss_root / entry.data, protocol, HARNESS.parse_options({}), "cpu") == []


def test_synthetic_layouts_are_refused_as_the_public_datasets(ovss_root) -> None:
    check = load_suite("ovss8").check(ovss_root, "cpu")
    # VOC20 and Context59 read VOC21's and Context60's folders: their refusals are listed once
    assert [f.entry for f in check.failed] == [
        f"seg-ade20k ({name})"
        for name in ("voc21", "context60", "coco-object", "coco-stuff", "cityscapes", "ade-336")
    ]
    assert check.failed[0].problems == (
        "VOC2012: not Pascal VOC 2012: 40 images with label maps (expected 1,449); pass --allow-nonstandard to "
        "evaluate it under its own name",
    )
    allowed = load_suite("ovss8").check(ovss_root, "cpu", allow_nonstandard=True)
    assert allowed.failed == [] and [i["label"] for i in allowed.identities][:3] == [
        "VOC2012 (nonstandard)",
        "VOC2010 (nonstandard)",
        "coco_object (nonstandard)",
    ]


@pytest.mark.slow
def test_suite_runs_end_to_end_and_tabulates(ovss_root, tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("SILC_BENCH_CACHE", str(tmp_path / "cache"))
    clip = next(s for s in reference_specs() if s.startswith("clip="))
    results = tmp_path / "results"
    argv = ["run", "--suite", "ovss8_synth", "--data-root", str(ovss_root), "--model", clip]
    assert main([*argv, "--results", str(results), "--device", "cpu", "--bootstrap", "0"]) == 0
    records = {r.protocol_name: r for r in map(read_record, sorted(results.glob("clip/*.json")))}
    assert sorted(records) == sorted(e.protocol for e in load_suite("ovss8_synth").entries)
    assert all(r.num_samples == 40 and 0 <= r.metrics["mIoU"] <= 100 for r in records.values())
    capsys.readouterr()
    assert main(["table", "--results", str(results), "--layout", "ovss", "--format", "csv"]) == 0
    header, row = capsys.readouterr().out.splitlines()
    assert header == "model,VOC21,PC60,Object,VOC20,PC59,Stuff,City,ADE,Avg."
    order = ["voc21", "context60", "coco-object", "voc20", "context59", "coco-stuff", "cityscapes", "ade-336"]
    values = [float(v) for v in row.split(",")[1:]]
    assert row.startswith("clip,")
    assert values[:8] == [records[n].metrics["mIoU"] for n in order]
    assert values[8] == pytest.approx(sum(values[:8]) / 8, abs=1e-9)
