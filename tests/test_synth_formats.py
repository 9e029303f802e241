"""The synthetic world read back by the reference readers: torchvision, webdataset, pycocotools, PIL, json."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import re
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from silc.data.synth import SEG_CLASSES, SHAPES
from silc.data.synth.captions import RELATION_WORDS
from silc.data.synth.world import COLOURS, STUFF


def _pairs(root: Path) -> list[dict[str, str]]:
    with open(root / "pretrain" / "pairs.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_imagenet_folders_read_by_torchvision(synth_root: Path):
    from torchvision.datasets import ImageFolder

    names = (synth_root / "imagenet" / "classnames.txt").read_text().splitlines()
    assert names == list(SHAPES) and len(names) >= 16
    templates = (synth_root / "imagenet" / "templates.txt").read_text().splitlines()
    assert len(templates) >= 5 and all("{}" in t for t in templates)
    for split in ("train", "val"):
        ds = ImageFolder(str(synth_root / "imagenet" / split))
        assert len(ds.classes) == len(names)
        assert ds.classes == sorted(ds.classes)  # wnid-style ids: sorted order is the class-name order
        assert len(ds) == 8 * len(names)
        counts = np.bincount(ds.targets, minlength=len(names))
        assert (counts == 8).all()
        image, target = ds[len(ds) - 1]
        assert image.size == (64, 64) and image.mode == "RGB" and target == len(names) - 1


def test_pretrain_shards_read_by_webdataset_match_the_csv(synth_root: Path):
    import webdataset as wds

    shards = sorted((synth_root / "pretrain" / "shards").glob("pretrain-*.tar"))
    assert [s.name for s in shards] == [f"pretrain-{i:06d}.tar" for i in range(3)]
    pairs = _pairs(synth_root)
    assert list(pairs[0]) == ["filepath", "caption"] and len(pairs) == 1200
    by_key = {Path(p["filepath"]).stem: p for p in pairs}
    samples = list(wds.WebDataset([str(s) for s in shards], shardshuffle=False).decode("pil"))
    assert len(samples) == len(pairs) and len({s["__key__"] for s in samples}) == len(samples)
    for s in samples[::97]:
        assert s["png"].size == (64, 64) and s["png"].mode == "RGB"
        row = by_key[s["__key__"]]
        assert s["txt"] == row["caption"]
        on_disk = np.asarray(Image.open(synth_root / "pretrain" / row["filepath"]))
        assert (np.asarray(s["png"]) == on_disk).all()
    with tarfile.open(shards[0]) as tar:
        members = tar.getmembers()
    assert all(m.mtime == 0 and m.uid == 0 and m.uname == "" for m in members)
    assert [m.name for m in members[:4]] == ["000000.png", "000000.txt", "000001.png", "000001.txt"]


def test_captions_name_shapes_colours_stuff_and_relations(synth_root: Path):
    captions = [p["caption"] for p in _pairs(synth_root)]
    shape_re = re.compile(r"\b(" + "|".join(SHAPES) + r")(e?s)?\b")
    colour_re = re.compile(r"\b(" + "|".join(COLOURS) + r")\b")
    assert all(shape_re.search(c) for c in captions)
    # colours everywhere but in the object-centric captions that leave it out (test_synth_scenes checks which)
    assert 0.6 < sum(bool(colour_re.search(c)) for c in captions) / len(captions) < 0.9
    text = " ".join(captions)
    for words in RELATION_WORDS.values():
        assert any(w in text for w in words)
    assert all(name in text for name in ("grass", "water", "sand", "snow", "sky", "brick"))
    assert len(set(captions)) > 0.85 * len(captions)  # short object captions ("a photo of a circle.") repeat
    # every category (novel ones included) is named in the pretraining captions
    assert {m.group(1) for c in captions for m in shape_re.finditer(c)} == set(SHAPES)


def test_flickr_karpathy_json(synth_root: Path):
    root = synth_root / "flickr30k"
    doc = json.loads((root / "dataset_flickr30k.json").read_text())
    assert doc["dataset"] == "flickr30k"
    splits = [im["split"] for im in doc["images"]]
    assert {s: splits.count(s) for s in set(splits)} == {"train": 40, "val": 20, "test": 100}
    sentids = []
    for im in doc["images"]:
        assert set(im) >= {"filename", "imgid", "split", "sentids", "sentences"}
        assert (root / "images" / im["filename"]).is_file()
        assert len(im["sentences"]) == 5 and im["sentids"] == [s["sentid"] for s in im["sentences"]]
        raws = [s["raw"] for s in im["sentences"]]
        assert len(set(raws)) == 5
        for s in im["sentences"]:
            assert s["imgid"] == im["imgid"] and s["tokens"] and all(isinstance(t, str) for t in s["tokens"])
            assert s["tokens"] == [w for w in re.split(r"[^a-z0-9-]+", s["raw"].lower()) if w]
        sentids += im["sentids"]
    assert len(set(sentids)) == len(sentids)
    assert Image.open(root / "images" / doc["images"][0]["filename"]).format == "JPEG"


def test_ade_label_maps(synth_root: Path):
    root = synth_root / "ADEChallengeData2016"
    names = (root / "classnames.txt").read_text().splitlines()
    assert names == list(SEG_CLASSES) and names[: len(STUFF)] == list(STUFF)
    seen: set[int] = set()
    for split, short in (("training", "train"), ("validation", "val")):
        anns = sorted((root / "annotations" / split).glob("*.png"))
        images = sorted((root / "images" / split).glob("*.jpg"))
        assert len(anns) == len(images) == 40
        assert [a.stem for a in anns] == [i.stem for i in images]
        assert anns[0].name == f"ADE_{short}_00000001.png"
        for ann in anns:
            label = Image.open(ann)
            assert label.mode == "L" and label.size == (64, 64)
            values = np.asarray(label)
            assert values.dtype == np.uint8 and values.max() <= len(names)
            seen.update(np.unique(values).tolist())
    assert 0 in seen  # "other" clutter, ignored under reduce_zero_label
    assert set(range(1, len(STUFF) + 1)) <= seen  # every stuff class
    assert len(seen & set(range(len(STUFF) + 1, len(names) + 1))) >= 10  # most object classes


@pytest.mark.parametrize("split", ["val2017", "train2017"])
def test_coco_ground_truth_as_detections_gives_ap_1(synth_root: Path, split: str):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(synth_root / "coco" / "annotations" / f"instances_{split}.json"))
    cat_ids = sorted(gt.getCatIds())
    assert len(cat_ids) == len(SHAPES) and cat_ids != list(range(1, len(cat_ids) + 1))  # gaps, like COCO
    anns = gt.loadAnns(gt.getAnnIds())
    assert any(a["iscrowd"] for a in anns)
    assert any(not gt.getAnnIds(imgIds=[i]) for i in gt.getImgIds())  # some images have no objects
    assert all(
        (synth_root / "coco" / split / im["file_name"]).is_file() for im in gt.loadImgs(gt.getImgIds())
    )
    dets = [
        {
            "image_id": a["image_id"],
            "category_id": a["category_id"],
            "bbox": a["bbox"],
            "score": 1.0,
            "segmentation": a["segmentation"],
        }
        for a in anns
        if not a["iscrowd"]
    ]
    for iou_type in ("bbox", "segm"):
        with contextlib.redirect_stdout(io.StringIO()):
            ev = COCOeval(gt, gt.loadRes(dets), iou_type)
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        assert ev.stats[0] == pytest.approx(1.0) and ev.stats[1] == pytest.approx(1.0)


def test_coco_boxes_polygons_and_areas_agree(synth_root: Path):
    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(synth_root / "coco" / "annotations" / "instances_val2017.json"))
    for ann in gt.loadAnns(gt.getAnnIds()):
        mask = gt.annToMask(ann).astype(bool)
        ys, xs = np.nonzero(mask)
        box = [xs.min(), ys.min(), xs.max() + 1 - xs.min(), ys.max() + 1 - ys.min()]
        assert ann["bbox"] == [float(v) for v in box]  # tight around the visible pixels
        assert ann["area"] == mask.sum()
        if not ann["iscrowd"]:
            assert isinstance(ann["segmentation"], list) and all(len(p) >= 8 for p in ann["segmentation"])
        else:
            assert set(ann["segmentation"]) == {"counts", "size"}


def test_open_vocabulary_split(synth_root: Path):
    ann_dir = synth_root / "coco" / "annotations"
    split = json.loads((ann_dir / "ov_split.json").read_text())
    assert set(split) == {"base", "novel"} and split["novel"] and not set(split["base"]) & set(split["novel"])
    full = json.loads((ann_dir / "instances_train2017.json").read_text())
    base = json.loads((ann_dir / "instances_train2017_base.json").read_text())
    assert sorted(split["base"] + split["novel"]) == sorted(c["name"] for c in full["categories"])
    name = {c["id"]: c["name"] for c in full["categories"]}
    assert {name[a["category_id"]] for a in base["annotations"]} == set(split["base"])
    assert [a for a in full["annotations"] if name[a["category_id"]] in split["base"]] == base["annotations"]
    assert {name[a["category_id"]] for a in full["annotations"]} >= set(split["novel"])
    assert base["images"] == full["images"] and base["categories"] == full["categories"]
