"""One writer per dataset format: pretraining pairs, ImageNet folders, Karpathy Flickr30k, ADE20K, COCO."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from silc.data.synth.captions import captions, tokens
from silc.data.synth.encode import (
    jpeg_bytes,
    json_bytes,
    open_tar,
    photo_jpeg_bytes,
    png_bytes,
    resized,
    tar_add,
    write,
)
from silc.data.synth.masks import coco_segmentation, mask_bbox
from silc.data.synth.render import Rendered, render_visible
from silc.data.synth.world import SEG_CLASSES, SHAPES, Scene, sample_scene

# COCO-style category ids: gaps like the real COCO id list, so code that assumes 0..K-1 ids breaks visibly.
COCO_CATEGORY_IDS: tuple[int, ...] = (1, 2, 3, 4, 6, 8, 9, 11, 13, 15, 18, 20, 22, 25, 27, 31)
SUPERCATEGORY = {
    **dict.fromkeys(("circle", "ring", "crescent", "semicircle", "heart"), "round"),
    **dict.fromkeys(
        ("square", "triangle", "diamond", "hexagon", "pentagon", "trapezoid", "rectangle"), "polygon"
    ),
    **dict.fromkeys(("star", "cross", "arrow", "chevron"), "symbol"),
}
# Open-vocabulary split: novel categories never get a box in instances_train2017_base.json.
NOVEL: tuple[str, ...] = ("star", "heart", "crescent", "pentagon")
TEMPLATES: tuple[str, ...] = (
    "a photo of a {}.",
    "a picture of a {}.",
    "a drawing of a {}.",
    "a {} shape.",
    "a photo of the {}.",
    "an image containing a {}.",
    "a rendering of a {}.",
)
# Seed-stream ids: every image draws from its own generator, seeded by (seed, stream, index).
_STREAMS = {
    "pretrain": 1,
    "imagenet/train": 2,
    "imagenet/val": 3,
    "flickr30k": 4,
    "ade/training": 5,
    "ade/validation": 6,
    "coco/train2017": 7,
    "coco/val2017": 8,
}


@dataclass(frozen=True)
class Photo:
    """Photo-like output: each square rendering resized to a camera frame (short side drawn from ``short_side``,
    aspect 4:3 or 3:2, landscape with probability ``landscape_p``) and stored as a 4:2:0 JPEG of ``quality``."""

    short_side: tuple[int, int]  # inclusive range, pixels
    quality: int = 90
    landscape_p: float = 0.8

    def frame(self, rng: np.random.Generator) -> tuple[int, int]:
        """(W, H) of one photo, drawn from the image's own RNG after everything else its scene draws."""
        short = int(rng.integers(self.short_side[0], self.short_side[1] + 1))
        long = round(short * (4 / 3 if rng.random() < 0.5 else 3 / 2))
        return (long, short) if rng.random() < self.landscape_p else (short, long)

    def jpeg(self, image: np.ndarray, frame: tuple[int, int]) -> bytes:
        """The rendered image resized to ``frame`` (bicubic) as a photo JPEG."""
        return photo_jpeg_bytes(resized(image, frame), self.quality)


@dataclass(frozen=True)
class Preset:
    """How much of each dataset to write, the default image side, and whether the classification, retrieval and
    segmentation images are written as photos (None: square PNG / quality-95 JPEG at the image side)."""

    image_size: int
    pretrain: int
    shard_size: int
    imagenet_per_class: tuple[int, int]  # train, val
    flickr: tuple[int, int, int]  # train, val, test
    ade: tuple[int, int]  # training, validation
    coco: tuple[int, int]  # train2017, val2017
    photo: Photo | None = None


def wnid(k: int) -> str:
    """The ImageNet-style folder name of class k (sorted order = class order)."""
    return f"s{k + 1:07d}"


# Scene parameters per dataset family (object count range, clutter / crowd / empty-image probabilities).
SCENES: dict[str, dict] = {
    # Half the pretraining photos are object-centric (one large shape, a short caption about it), as web data
    # mixes product-style photos with scenes: without them a tiny ViT matches captions by colour and background
    # alone and never learns shape names (docs/experiments.md).
    "pretrain": {"n_objects": (1, 4), "clutter_p": 0.2, "crowd_p": 0.05, "object_centric_p": 0.5},
    "imagenet": {"n_objects": (0, 2), "clutter_p": 0.1},
    "flickr30k": {"n_objects": (1, 4), "clutter_p": 0.2, "crowd_p": 0.05},
    "ade": {"n_objects": (2, 5), "clutter_p": 0.35},
    "coco": {"n_objects": (2, 6), "clutter_p": 0.15, "crowd_p": 0.12, "empty_p": 0.06},
}


def make_scene(
    seed: int, stream: str, index: int, size: int, dominant: int | None = None
) -> tuple[Scene, Rendered, np.random.Generator]:
    """Scene number ``index`` of a stream, rendered; every image draws from its own (seed, stream, index) RNG."""
    rng = np.random.default_rng([seed, _STREAMS[stream], index])
    params = dict(SCENES[stream.split("/")[0]])
    if rng.random() < params.pop("empty_p", 0.0):
        params["n_objects"] = (0, 0)
    # Drawn only in streams that have the key, so the other streams' scenes do not change with it.
    centric_p = params.pop("object_centric_p", None)
    if centric_p is not None and rng.random() < centric_p and dominant is None:
        dominant = int(rng.integers(len(SHAPES)))
    scene = sample_scene(rng, size, dominant=dominant, **params)
    return scene, render_visible(scene), rng


def write_pretrain(root: Path, seed: int, preset: Preset, size: int) -> dict[str, int]:
    """pretrain/shards/pretrain-%06d.tar (key.png + key.txt), pretrain/images/*.png and pretrain/pairs.csv."""
    out = root / "pretrain"
    table = io.StringIO()
    rows = csv.writer(table, lineterminator="\n")
    rows.writerow(["filepath", "caption"])
    for first in range(0, preset.pretrain, preset.shard_size):
        with open_tar(out / "shards" / f"pretrain-{first // preset.shard_size:06d}.tar") as tar:
            for i in range(first, min(first + preset.shard_size, preset.pretrain)):
                scene, r, rng = make_scene(seed, "pretrain", i, size)
                text = captions(scene, r, rng, 1)[0]
                key, png = f"{i:06d}", png_bytes(r.image)
                tar_add(tar, f"{key}.png", png)
                tar_add(tar, f"{key}.txt", text.encode("utf-8"))
                write(out / "images" / f"{key}.png", png)
                rows.writerow([f"images/{key}.png", text])
    write(out / "pairs.csv", table.getvalue().encode("utf-8"))
    return {"pretrain": preset.pretrain, "pretrain/shards": -(-preset.pretrain // preset.shard_size)}


def write_imagenet(root: Path, seed: int, preset: Preset, size: int) -> dict[str, int]:
    """imagenet/{train,val}/<wnid>/<wnid>_%05d.png (photos: .JPEG, as ImageNet's) with one dominant shape per
    image, class names, templates."""
    out = root / "imagenet"
    counts = {}
    for split, per_class in zip(("train", "val"), preset.imagenet_per_class, strict=True):
        for k in range(len(SHAPES)):
            for j in range(per_class):
                _, r, rng = make_scene(seed, f"imagenet/{split}", k * per_class + j, size, dominant=k)
                stem = out / split / wnid(k) / f"{wnid(k)}_{j:05d}"
                if preset.photo is None:
                    write(stem.with_suffix(".png"), png_bytes(r.image))
                else:
                    write(stem.with_suffix(".JPEG"), preset.photo.jpeg(r.image, preset.photo.frame(rng)))
        counts[f"imagenet/{split}"] = per_class * len(SHAPES)
    write(out / "classnames.txt", "".join(f"{name}\n" for name in SHAPES).encode())
    write(out / "templates.txt", "".join(f"{t}\n" for t in TEMPLATES).encode())
    return counts


def write_flickr30k(root: Path, seed: int, preset: Preset, size: int) -> dict[str, int]:
    """flickr30k/images/*.jpg and a Karpathy-style dataset_flickr30k.json with 5 different captions each."""
    out = root / "flickr30k"
    splits = [s for s, n in zip(("train", "val", "test"), preset.flickr, strict=True) for _ in range(n)]
    images = []
    for i, split in enumerate(splits):
        scene, r, rng = make_scene(seed, "flickr30k", i, size)
        filename = f"{1000000000 + i}.jpg"
        sentids = list(range(5 * i, 5 * i + 5))
        sentences = [
            {"tokens": tokens(text), "raw": text, "imgid": i, "sentid": sid}
            for sid, text in zip(sentids, captions(scene, r, rng, 5), strict=True)
        ]
        photo = preset.photo  # its frame is drawn after the captions, so they stay the same
        image = jpeg_bytes(r.image) if photo is None else photo.jpeg(r.image, photo.frame(rng))
        write(out / "images" / filename, image)
        images.append(
            {"sentids": sentids, "imgid": i, "sentences": sentences, "split": split, "filename": filename}
        )
    write(out / "dataset_flickr30k.json", json_bytes({"images": images, "dataset": "flickr30k"}))
    return {f"flickr30k/{s}": n for s, n in zip(("train", "val", "test"), preset.flickr, strict=True)}


def write_ade(root: Path, seed: int, preset: Preset, size: int) -> dict[str, int]:
    """ADEChallengeData2016/{images,annotations}/{training,validation} (JPEG + uint8 label PNG of the same size),
    classnames.txt."""
    out = root / "ADEChallengeData2016"
    counts = {}
    for split, short, n in (("training", "train", preset.ade[0]), ("validation", "val", preset.ade[1])):
        for i in range(n):
            _, r, rng = make_scene(seed, f"ade/{split}", i, size)
            stem = f"ADE_{short}_{i + 1:08d}"
            if preset.photo is None:
                image, labels = jpeg_bytes(r.image), r.labels
            else:
                frame = preset.photo.frame(rng)
                image, labels = preset.photo.jpeg(r.image, frame), resized(r.labels, frame, labels=True)
            write(out / "images" / split / f"{stem}.jpg", image)
            write(out / "annotations" / split / f"{stem}.png", png_bytes(labels))
        counts[f"ADEChallengeData2016/{split}"] = n
    write(out / "classnames.txt", "".join(f"{name}\n" for name in SEG_CLASSES).encode())
    return counts


def coco_categories() -> list[dict]:
    """COCO ``categories`` in id order."""
    return [
        {"supercategory": SUPERCATEGORY[name], "id": cid, "name": name}
        for cid, name in zip(COCO_CATEGORY_IDS, SHAPES, strict=True)
    ]


def _coco_annotations(scene: Scene, r: Rendered, image_id: int, next_id: int) -> list[dict]:
    """One annotation per visible object (polygons of the pixels it shows) plus one iscrowd region per crowd."""
    anns = []
    crowd = set(scene.crowd)
    groups = [[k] for k in range(len(scene.objects)) if k not in crowd] + ([sorted(crowd)] if crowd else [])
    for group in groups:
        mask = np.isin(r.owner, group)
        is_crowd = len(group) > 1
        anns.append(
            {
                "id": next_id + len(anns),
                "image_id": image_id,
                "category_id": COCO_CATEGORY_IDS[scene.objects[group[0]].shape],
                "segmentation": coco_segmentation(mask, crowd=is_crowd),
                "area": float(mask.sum()),
                "bbox": mask_bbox(mask),
                "iscrowd": int(is_crowd),
            }
        )
    return anns


def write_coco(root: Path, seed: int, preset: Preset, size: int) -> dict[str, int]:
    """coco/{train2017,val2017}/*.jpg, instances_{train,val}2017.json, ov_split.json, instances_train2017_base.json."""
    out = root / "coco"
    counts = {}
    base_ids = {c["id"] for c in coco_categories() if c["name"] not in NOVEL}
    # Image and annotation ids are unique across both splits, as in COCO.
    for split, n, first_id in (("train2017", preset.coco[0], 1), ("val2017", preset.coco[1], 500001)):
        images, anns = [], []
        for i in range(n):
            scene, r, _ = make_scene(seed, f"coco/{split}", i, size)
            image_id = first_id + i
            file_name = f"{image_id:012d}.jpg"
            write(out / split / file_name, jpeg_bytes(r.image))
            images.append(
                {"license": 1, "file_name": file_name, "height": size, "width": size, "id": image_id}
            )
            anns += _coco_annotations(scene, r, image_id, 10 * first_id + len(anns))
        doc = _coco_doc(images, anns)
        write(out / "annotations" / f"instances_{split}.json", json_bytes(doc))
        counts[f"coco/{split}"] = n
        counts[f"coco/{split} boxes"] = len(anns)
        if split == "train2017":
            base = [a for a in anns if a["category_id"] in base_ids]
            write(out / "annotations" / "instances_train2017_base.json", json_bytes(_coco_doc(images, base)))
    split_doc = {"base": [s for s in SHAPES if s not in NOVEL], "novel": [s for s in SHAPES if s in NOVEL]}
    write(out / "annotations" / "ov_split.json", json_bytes(split_doc))
    return counts


def _coco_doc(images: list[dict], anns: list[dict]) -> dict:
    return {
        "info": {
            "description": "silc-bench synthetic world",
            "url": "",
            "version": "1.0",
            "year": 2025,
            "contributor": "silc-bench",
            "date_created": "2025-01-01",
        },
        "licenses": [
            {"url": "https://creativecommons.org/publicdomain/zero/1.0/", "id": 1, "name": "CC0 1.0"}
        ],
        "images": images,
        "annotations": anns,
        "categories": coco_categories(),
    }
