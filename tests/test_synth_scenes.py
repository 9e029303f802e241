"""Scene-level consistency: the files on disk come from one rendered scene (image, label map, COCO masks, text)."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

from silc.data.synth.render import render_visible
from silc.data.synth.world import OBJECT_LABEL_OFFSET, SHAPES, sample_scene
from silc.data.synth.writers import COCO_CATEGORY_IDS, _rng, _scene


def test_coco_masks_and_ade_style_labels_come_from_the_same_objects(synth_root: Path):
    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(synth_root / "coco" / "annotations" / "instances_val2017.json"))
    for i, image_id in enumerate(sorted(gt.getImgIds())[:12]):
        rng = _rng(0, "coco/val2017", i)
        n_objects = (0, 0) if rng.random() < 0.06 else (2, 6)
        scene, r = _scene(rng, 64, n_objects, clutter_p=0.15, crowd_p=0.12)
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
        scene, r = _scene(_rng(0, "ade/validation", i), 64, (2, 5), clutter_p=0.35)
        stored = np.asarray(
            Image.open(synth_root / f"ADEChallengeData2016/annotations/validation/ADE_val_{i + 1:08d}.png")
        )
        assert (stored == r.labels).all()
        for k, obj in enumerate(scene.objects):
            assert (stored[r.owner == k] == OBJECT_LABEL_OFFSET + obj.shape).all()


def test_classification_images_are_dominated_by_their_class():
    for k in range(len(SHAPES)):
        scene = sample_scene(np.random.default_rng(k), 64, (0, 2), dominant=k, clutter_p=0.1)
        r = render_visible(scene)
        areas = np.bincount(r.owner[r.owner >= 0], minlength=len(scene.objects))
        assert scene.objects[0].shape == k and areas[0] > 3 * max(areas[1:], default=0)


def test_retrieval_captions_all_name_the_main_object(synth_root: Path):
    doc = json.loads((synth_root / "flickr30k" / "dataset_flickr30k.json").read_text())
    for i, entry in enumerate(doc["images"][:30]):
        scene, _ = _scene(_rng(0, "flickr30k", i), 64, (1, 4), clutter_p=0.2, crowd_p=0.05)
        singles = [o for k, o in enumerate(scene.objects) if k not in scene.crowd]
        main = max(singles, key=lambda o: o.radius) if singles else scene.objects[scene.crowd[0]]
        for sentence in entry["sentences"]:
            assert f"{main.colour} {SHAPES[main.shape]}" in sentence["raw"]
