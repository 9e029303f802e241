"""Scene-level consistency: the files on disk come from one rendered scene (image, label map, COCO masks, text)."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

from silc.data.synth.captions import tokens
from silc.data.synth.world import COLOURS, OBJECT_LABEL_OFFSET, SHAPES
from silc.data.synth.writers import COCO_CATEGORY_IDS, make_scene


def test_coco_masks_and_ade_style_labels_come_from_the_same_objects(synth_root: Path):
    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(synth_root / "coco" / "annotations" / "instances_val2017.json"))
    for i, image_id in enumerate(sorted(gt.getImgIds())[:12]):
        scene, r, _ = make_scene(0, "coco/val2017", i, 64)
        anns = gt.loadAnns(gt.getAnnIds(imgIds=[image_id]))
        assert len(anns) == len(scene.objects) - len(scene.crowd) + bool(scene.crowd)
        singles = [k for k in range(len(scene.objects)) if k not in scene.crowd]
        for k, ann in zip(singles, anns, strict=False):
            visible = r.owner == k
            assert (gt.annToMask(ann).astype(bool) == visible).all()
            assert ann["category_id"] == COCO_CATEGORY_IDS[scene.objects[k].shape]
            assert (r.labels[visible] == OBJECT_LABEL_OFFSET + scene.objects[k].shape).all()
        # The stored JPEG is this rendering (up to compression).
        stored = np.asarray(Image.open(synth_root / "coco" / "val2017" / f"{image_id:012d}.jpg"), np.float32)
        assert np.abs(stored - r.image).mean() < 4


def test_ade_label_png_is_the_rendered_label_map(synth_root: Path):
    for i in range(5):
        scene, r, _ = make_scene(0, "ade/validation", i, 64)
        stored = np.asarray(
            Image.open(synth_root / f"ADEChallengeData2016/annotations/validation/ADE_val_{i + 1:08d}.png")
        )
        assert (stored == r.labels).all()
        for k, obj in enumerate(scene.objects):
            assert (stored[r.owner == k] == OBJECT_LABEL_OFFSET + obj.shape).all()


def test_classification_images_are_dominated_by_their_class():
    for k in range(len(SHAPES)):
        scene, r, _ = make_scene(0, "imagenet/val", k * 8, 64, dominant=k)
        areas = np.bincount(r.owner[r.owner >= 0], minlength=len(scene.objects))
        assert scene.objects[0].shape == k and areas[0] > 3 * max(areas[1:], default=0)


def test_retrieval_captions_all_name_the_main_object(synth_root: Path):
    doc = json.loads((synth_root / "flickr30k" / "dataset_flickr30k.json").read_text())
    for i, entry in enumerate(doc["images"][:30]):
        scene, _, _ = make_scene(0, "flickr30k", i, 64)
        singles = [o for k, o in enumerate(scene.objects) if k not in scene.crowd]
        main = max(singles, key=lambda o: o.radius) if singles else scene.objects[scene.crowd[0]]
        for sentence in entry["sentences"]:
            assert f"{main.colour} {SHAPES[main.shape]}" in sentence["raw"]


def test_half_the_pretraining_photos_are_object_centric_and_captioned_by_their_main_object(synth_root: Path):
    rows = (synth_root / "pretrain" / "pairs.csv").read_text().splitlines()[1:]
    scenes = [make_scene(0, "pretrain", i, 64)[0] for i in range(len(rows))]
    centric = [i for i, s in enumerate(scenes) if s.object_centric]
    assert 0.4 < len(centric) / len(scenes) < 0.6
    with_colour = 0
    for i in centric:
        main = scenes[i].objects[0]
        assert all(main.radius > 2 * o.radius for o in scenes[i].objects[1:])
        words = tokens(rows[i])
        assert set(words) & set(SHAPES) == {SHAPES[main.shape]}, rows[i]
        before = words[words.index(SHAPES[main.shape]) - 1]
        if before in COLOURS:
            assert before == main.colour, rows[i]
            with_colour += 1
    assert 0.35 < with_colour / len(centric) < 0.65  # OBJECT_COLOUR_P = 0.5
    for row, scene in zip(rows, scenes, strict=True):
        if not scene.object_centric and scene.objects and not scene.crowd:
            main = max(scene.objects, key=lambda o: o.radius)
            assert f"{main.colour} {SHAPES[main.shape]}" in row  # scene captions always name the colour
    other = [make_scene(0, stream, i, 64)[0] for stream in ("flickr30k", "coco/val2017") for i in range(40)]
    assert not any(s.object_centric for s in other)
