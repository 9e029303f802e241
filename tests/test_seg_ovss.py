"""The ovss8 protocols (seg-ade20k voc21 ... cityscapes): their knobs are NACLIP's settings, their class-name lists
are mmseg's classes with the papers' synonyms, and each public layout, written here by hand, is found, checked
(pairs, label values, claims) and scored by its mmseg dataset class: an oracle encoder gets mIoU 100 through each,
so that the background class, reduce_zero_label and the ignored values are those of the public benchmark."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import require_mm

pytestmark = pytest.mark.mm
require_mm()  # before the mm imports below: fails when mm is missing, skips with SILC_SKIP_MM=1

from mmengine.registry import init_default_scope  # noqa: E402
from mmseg.datasets import (  # noqa: E402
    CityscapesDataset,
    COCOStuffDataset,
    PascalContextDataset,
    PascalContextDataset59,
    PascalVOCDataset,
)
from mmseg.registry import DATASETS  # noqa: E402

from adapters.class_queries import read_names_file  # noqa: E402
from benchmarks.registry import get_harness  # noqa: E402
from benchmarks.runner import run_harness  # noqa: E402
from benchmarks.seg_config import config_file, load_config  # noqa: E402
from benchmarks.seg_dataset import dataset_root  # noqa: E402
from benchmarks.seg_layouts import PUBLIC_RELEASES, release_differences  # noqa: E402
from benchmarks.seg_mmseg import COCOObjectDataset, PascalVOC20Dataset  # noqa: E402
from benchmarks.seg_names import NAMES_DIR, SHIPPED_NAMES, names_file  # noqa: E402
from benchmarks.suites import load_suite  # noqa: E402
from silc.errors import UserError  # noqa: E402
from tests.seg_fixtures import COLOURS, ColourOracle, colour_of, save_jpeg, stripe_labels  # noqa: E402

HARNESS = get_harness("seg-ade20k")
OVSS = ("voc21", "voc20", "context60", "context59", "coco-object", "coco-stuff", "cityscapes")
# NACLIP's configs (configs/cfg_*.py, naclip.py defaults): short side, window, stride (VOC: slide_crop=0, the
# whole image), prob_thd (logit_scale 40), the mmseg dataset class, the split.
NACLIP = {
    "voc21": (336, 2048, 2048, 0.1, "PascalVOCDataset", "val"),
    "voc20": (336, 2048, 2048, None, "PascalVOC20Dataset", "val"),
    "context60": (336, 224, 112, 0.1, "PascalContextDataset", "val"),
    "context59": (336, 224, 112, None, "PascalContextDataset59", "val"),
    "coco-object": (336, 224, 112, 0.1, "COCOObjectDataset", "val2017"),
    "coco-stuff": (336, 224, 112, None, "COCOStuffDataset", "val2017"),
    "cityscapes": (560, 224, 112, None, "CityscapesDataset", "val"),
}
CLASSES = {
    "PascalVOCDataset": PascalVOCDataset,
    "PascalVOC20Dataset": PascalVOC20Dataset,
    "PascalContextDataset": PascalContextDataset,
    "PascalContextDataset59": PascalContextDataset59,
    "COCOObjectDataset": COCOObjectDataset,
    "COCOStuffDataset": COCOStuffDataset,
    "CityscapesDataset": CityscapesDataset,
}


@pytest.mark.parametrize("name", OVSS)
def test_protocol_knobs_are_naclips(name):
    protocol = HARNESS.protocols[name]
    short, crop, stride, threshold, dataset, split = NACLIP[name]
    assert (protocol["short_side"], protocol["crop"], protocol["stride"]) == (short, crop, stride)
    assert (protocol["bg_threshold"], protocol["dataset"], protocol["split"]) == (threshold, dataset, split)
    assert protocol["logit_scale"] == (40.0 if threshold else 100.0)
    assert (protocol["templates"], protocol["dense_mode"], protocol["max_long_side"]) == (
        "openai80",
        "naive",
        2048,
    )
    assert config_file(protocol).name == f"ovss_{name.replace('-', '_')}.py"
    # the config the harness runs: the dataset, its split, the names the segmentor reads
    cfg = load_config(protocol, "ENCODER", "/data/root", workers=0)
    assert cfg["test_dataloader"]["dataset"]["type"] == dataset
    names = cfg["model"]["class_names"]
    assert names == (
        names_file(protocol["names"]) if protocol["names"] != "dataset" else {"dataset": dataset}
    )


def test_a_split_knob_reaches_the_split_file_and_folders():
    voc = load_config({**HARNESS.protocols["voc21"], "split": "train"}, "E", "/d", workers=0)
    assert voc["test_dataloader"]["dataset"]["ann_file"] == "ImageSets/Segmentation/train.txt"
    city = load_config({**HARNESS.protocols["cityscapes"], "split": "test"}, "E", "/d", workers=0)
    assert city["test_dataloader"]["dataset"]["data_prefix"] == {
        "img_path": "leftImg8bit/test",
        "seg_map_path": "gtFine/test",
    }


def test_the_suite_is_the_eight_protocols_with_their_claims():
    suite = load_suite("ovss8")
    entries = [(e.protocol, e.data, e.dataset) for e in suite.entries]
    assert entries == [
        ("voc21", "VOCdevkit/VOC2012", "pascal-voc-2012"),
        ("context60", "VOCdevkit/VOC2010", "pascal-context"),
        ("coco-object", "coco_object", "coco-object"),
        ("voc20", "VOCdevkit/VOC2012", "pascal-voc-2012"),
        ("context59", "VOCdevkit/VOC2010", "pascal-context"),
        ("coco-stuff", "coco_stuff164k", "coco-stuff-164k"),
        ("cityscapes", "cityscapes", "cityscapes"),
        ("ade-336", "ADEChallengeData2016", "ade20k"),
    ]
    assert all(r.protocol == HARNESS.protocols[r.protocol_name] for r in suite.resolve())
    synth = load_suite("ovss8_synth")
    assert [e.protocol for e in synth.entries] == [e.protocol for e in suite.entries]
    assert [e.data for e in synth.entries] == [e.data for e in suite.entries]


@pytest.mark.parametrize("shipped", sorted(n for n in SHIPPED_NAMES if not n.startswith("clearclip-")))
def test_shipped_names_are_mmseg_classes_then_the_papers_synonyms(shipped):
    classes = [str(c).strip() for c in CLASSES[SHIPPED_NAMES[shipped]].METAINFO["classes"]]
    names = read_names_file(NAMES_DIR / f"{shipped}.txt")
    assert [synonyms[0] for synonyms in names] == classes  # line k: class k's mmseg name first
    words = [w for synonyms in names for w in synonyms]
    assert len(words) == len(set(words))  # no query names two classes (it could never win for the second)
    by_class = {synonyms[0]: synonyms[1:] for synonyms in names}
    person = ["person in shirt", "person in jeans", "person in dress", "person in sweater", "person in skirt",
              "person in jacket"]  # fmt: skip
    if shipped.startswith("voc"):
        assert by_class["boat"] == ["ship"] and by_class["diningtable"] == ["table"]
        assert by_class["tvmonitor"] == [
            "television monitor",
            "tv monitor",
            "monitor",
            "television",
            "screen",
        ]
        assert by_class["person"] == person
    else:
        assert by_class["person"] == [*person, "body"]
    if (
        "background" in by_class
    ):  # the stuff words SCLIP / NACLIP prompt the background with ("bed" is a COCO class)
        assert len(by_class["background"]) == (26 if shipped == "voc21" else 25)
        assert ("bed" in by_class["background"]) == (shipped == "voc21")


@pytest.mark.parametrize("shipped", sorted(n for n in SHIPPED_NAMES if n.startswith("clearclip-")))
def test_clearclip_names_are_one_query_per_class_in_its_words(shipped):
    """ClearCLIP's lists (its configs/cls_*.txt): mmseg's classes one query each, in its words where they differ."""
    classes = [str(c).strip() for c in CLASSES[SHIPPED_NAMES[shipped]].METAINFO["classes"]]
    names = read_names_file(NAMES_DIR / f"{shipped}.txt")
    assert all(len(synonyms) == 1 for synonyms in names) and len(names) == len(classes)
    renamed = {c: q[0] for c, q in zip(classes, names, strict=True) if c != q[0]}
    assert renamed == ({"boat": "ship", "diningtable": "table"} if "voc" in shipped else {})


def test_unknown_shipped_names_is_one_line():
    with pytest.raises(UserError, match=r"^names 'shipped:voc22': no such shipped list; expected one of "):
        names_file("shipped:voc22")


# ---- the public layouts, written by hand -------------------------------------------------------------------

# per protocol: the raw label values drawn, and the class each one is (None: ignored). Not person in VOC21 or
# COCO-Object: its 7-8 synonyms share its probability, which next to the background's 25-26 may drop under the 0.1
# threshold at the pixels where bilinear upsampling blends the two (as it would for NACLIP).
LABELS = {
    "voc21": {0: 0, 1: 1, 5: 5, 11: 11, 20: 20, 255: None},
    "voc20": {0: None, 1: 0, 5: 4, 11: 10, 20: 19, 255: None},
    "context60": {0: 0, 1: 1, 30: 30, 59: 59},
    "context59": {0: None, 1: 0, 30: 29, 59: 58},
    "coco-object": {0: 0, 2: 2, 40: 40, 80: 80},
    "coco-stuff": {0: 0, 90: 90, 170: 170, 255: None},
    "cityscapes": {0: 0, 7: 7, 18: 18, 255: None},
}
# colours of the classes drawn: red and blue differ (a BGR/RGB swap changes them); an ignored value is painted
# with the first class's colour
PAINT = [i for i, c in enumerate(COLOURS) if c[0] != c[2]]
IDS = ("2008_000001", "2008_000002")


def _maps(name: str, height: int, width: int) -> list[np.ndarray]:
    """Two label maps of 32-px stripes (patch-aligned at scale 1, as are the 224 windows every 112 px on
    ``height`` x ``height + 112`` images): vertical, then horizontal."""
    rng = np.random.default_rng(0)
    values = list(LABELS[name])
    return [
        stripe_labels(rng, height, width, 32, values, vertical=True),
        stripe_labels(rng, height, width, 32, values, vertical=False),
    ]


def _paint(name: str) -> dict[int, int]:
    """Raw label value -> colour index of the image pixels."""
    classes = [v for v, c in LABELS[name].items() if c is not None]
    colours = {v: PAINT[k + 1] for k, v in enumerate(classes)}
    return {v: colours.get(v, colours[classes[0]]) for v in LABELS[name]}


def _png(path: Path, labels: np.ndarray, palette: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(labels.astype(np.uint8))
    if palette:  # VOC's label PNGs: palette images whose indices are the labels
        image = image.convert("P")
        image.putpalette([v for i in range(256) for v in (i, 255 - i, (7 * i) % 256)])
    image.save(path)


def write_layout(name: str, root: Path) -> Path:
    """``name``'s public layout under ``root`` (the data folder a suite entry names) with two images."""
    short = NACLIP[name][0]
    maps = _maps(name, short, short + 112)
    paint = _paint(name)
    if name in ("voc21", "voc20", "context60", "context59"):
        base = root / ("VOCdevkit/VOC2012" if name.startswith("voc") else "VOCdevkit/VOC2010")
        labels, split = (
            ("SegmentationClass", "ImageSets/Segmentation/val.txt")
            if name.startswith("voc")
            else ("SegmentationClassContext", "ImageSets/SegmentationContext/val.txt")
        )
        for stem, labels_map in zip(IDS, maps, strict=True):
            save_jpeg(base / "JPEGImages" / f"{stem}.jpg", colour_of(labels_map, paint))
            _png(base / labels / f"{stem}.png", labels_map, palette=name.startswith("voc"))
        (base / split).parent.mkdir(parents=True, exist_ok=True)
        (base / split).write_text("".join(f"{s}\n" for s in IDS))
        return base
    if name in ("coco-object", "coco-stuff"):
        base = root / ("coco_object" if name == "coco-object" else "coco_stuff164k")
        suffix = "_instanceTrainIds.png" if name == "coco-object" else "_labelTrainIds.png"
        for stem, labels_map in zip(("000000000139", "000000000285"), maps, strict=True):
            save_jpeg(base / "images" / "val2017" / f"{stem}.jpg", colour_of(labels_map, paint))
            _png(base / "annotations" / "val2017" / f"{stem}{suffix}", labels_map)
        return base
    base = root / "cityscapes"
    for i, labels_map in enumerate(maps):
        stem = f"frankfurt/frankfurt_000000_00029{i}"
        image = base / "leftImg8bit" / "val" / f"{stem}_leftImg8bit.png"
        image.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(colour_of(labels_map, paint)).save(image)
        _png(base / "gtFine" / "val" / f"{stem}_gtFine_labelTrainIds.png", labels_map)
    return base


def _oracle(name: str) -> ColourOracle:
    protocol = HARNESS.protocols[name]
    classes = [[str(c).strip()] for c in CLASSES[protocol["dataset"]].METAINFO["classes"]]
    names = classes if protocol["names"] == "dataset" else read_names_file(names_file(protocol["names"]))
    paint = _paint(name)
    colour = {c: paint[v] for v, c in LABELS[name].items() if c is not None}
    return ColourOracle(names, [colour.get(c, 0) for c in range(len(classes))])


def _evaluate(name: str, data: Path, tmp_path: Path, **overrides):
    protocol = HARNESS.resolve_protocol(name, {"templates": "identity", **overrides})
    record, _, _ = run_harness(
        HARNESS, _oracle(name), data, name, protocol, tmp_path / "results",
        options={"workers": 0, "no_cache": True, "save_predictions": True},
    )  # fmt: skip
    return record


@pytest.mark.parametrize("name", OVSS)
def test_each_layout_is_read_by_its_mmseg_dataset_class(name, tmp_path):
    data = write_layout(name, tmp_path)
    protocol = HARNESS.protocols[name]
    cfg = load_config(protocol, "ENCODER", dataset_root(data, protocol), workers=0)
    init_default_scope("mmseg")
    dataset = DATASETS.build(cfg["test_dataloader"]["dataset"])
    assert type(dataset).__name__ == protocol["dataset"] and len(dataset) == 2
    for i, raw in enumerate(_maps(name, NACLIP[name][0], NACLIP[name][0] + 112)):
        gt = dataset[i]["data_samples"].gt_sem_seg.data.numpy()[0]
        lut = np.full(256, -1)
        for value, c in LABELS[name].items():
            lut[value] = 255 if c is None else c
        np.testing.assert_array_equal(gt, lut[raw])
    assert HARNESS.preflight(data, protocol, HARNESS.parse_options({}), "cpu") == []


@pytest.mark.parametrize("name", OVSS)
def test_oracle_is_perfect_through_each_layout(name, tmp_path):
    record = _evaluate(name, write_layout(name, tmp_path / "data"), tmp_path)
    assert record.metrics["mIoU"] == 100.0 and record.metrics["aAcc"] == 100.0
    present = {c for c in LABELS[name].values() if c is not None}
    classes = [str(c).strip() for c in CLASSES[HARNESS.protocols[name]["dataset"]].METAINFO["classes"]]
    assert {k for k, v in record.extra["per_class_iou"].items() if v is not None} == {
        classes[c] for c in present
    }
    assert record.num_samples == 2


def test_background_threshold_is_on_the_softmax_over_every_query(tmp_path):
    """VOC21's oracle: a class with k synonyms (identical queries here) has top probability 1/k: tvmonitor (6)
    drops under a 0.2 threshold to background, diningtable (2) does not."""
    record = _evaluate("voc21", write_layout("voc21", tmp_path / "data"), tmp_path, bg_threshold=0.2)
    iou = record.extra["per_class_iou"]
    assert iou["tvmonitor"] == 0.0 and iou["diningtable"] == 100.0 and iou["aeroplane"] == 100.0
    assert 0 < iou["background"] < 100


def test_preflight_names_what_is_wrong_in_one_line_each(tmp_path):
    voc = write_layout("voc21", tmp_path / "a")
    _png(voc / "SegmentationClass" / f"{IDS[1]}.png", np.full((8, 8), 21), palette=True)
    (voc / "ImageSets/Segmentation/val.txt").write_text("".join(f"{s}\n" for s in (*IDS, "2008_000003")))
    problems = HARNESS.preflight(tmp_path / "a", HARNESS.protocols["voc21"], HARNESS.parse_options({}), "cpu")
    assert problems == [f"{voc / 'JPEGImages'}: no image for 1 of 3 images, e.g. 2008_000003.jpg"]
    (voc / "ImageSets/Segmentation/val.txt").write_text("".join(f"{s}\n" for s in IDS))
    problems = HARNESS.preflight(tmp_path / "a", HARNESS.protocols["voc21"], HARNESS.parse_options({}), "cpu")
    assert problems == [
        f"{voc / 'SegmentationClass'}: 1 of 2 sampled label maps hold values other than 0..20 and 255 (21 "
        f"classes): {IDS[1]}.png (values 21)"
    ]
    # VOC20 reduces the label 0: its label maps may hold 0..20
    problems = HARNESS.preflight(tmp_path / "a", HARNESS.protocols["voc20"], HARNESS.parse_options({}), "cpu")
    assert problems[0].endswith("(20 classes, reduce_zero_label): 2008_000002.png (values 21)")
    # COCO-Stuff's released maps but no COCO-Object conversion
    coco = write_layout("coco-stuff", tmp_path / "b")
    problems = HARNESS.preflight(coco, HARNESS.protocols["coco-object"], HARNESS.parse_options({}), "cpu")
    assert problems == [
        f"{coco / 'annotations' / 'val2017'}: no label map for 2 of 2 images, e.g. 000000000139_instanceTrainIds.png"
    ]
    problems = HARNESS.preflight(
        tmp_path / "b", HARNESS.protocols["cityscapes"], HARNESS.parse_options({}), "cpu"
    )
    assert problems == [f"{tmp_path / 'b'}: expected {PUBLIC_RELEASES['cityscapes'].layout.text}"]


def test_claims_say_how_a_folder_differs_from_the_public_release(tmp_path):
    data = write_layout("voc21", tmp_path)
    voc = PUBLIC_RELEASES["pascal-voc-2012"]
    assert release_differences(voc, data, HARNESS.protocols["voc21"]) == [
        "2 images with label maps (expected 1,449)"
    ]
    other = {**HARNESS.protocols["voc20"], "names": "/my/names.txt", "split": "train"}
    (data / "ImageSets/Segmentation/train.txt").write_text(f"{IDS[0]}\n")
    assert release_differences(voc, data, other) == [
        "class names from /my/names.txt (expected mmseg PascalVOC20Dataset's or shipped:clearclip-voc20, shipped:voc20)",
        "split 'train' (expected val)",
        "1 images with label maps (expected 1,449)",
    ]
