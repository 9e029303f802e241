"""The OV-COCO base/novel split and the files it needs: validated COCO reading and split annotation writing."""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from silc.errors import UserError, listed
from silc.io import atomic_write_json, atomic_write_text

PUBLIC_SPLIT_FILE = Path(__file__).resolve().parent / "data" / "ov_coco_split.json"
BOX_TOLERANCE = 1.0  # pixels a box may stick out of its image (COCO's float rounding)
_IMAGE_KEYS = ("id", "file_name", "width", "height")
_ANNOTATION_KEYS = ("id", "image_id", "category_id", "bbox", "area")
_CATEGORY_KEYS = ("id", "name")
TRAIN_FILE = "annotations/instances_train2017_base.json"
VAL_FILE = "annotations/instances_val2017_ov.json"
SPLIT_FILE = "annotations/ov_split.json"


@dataclass(frozen=True)
class OVSplit:
    """Base and novel category names (disjoint); ``names`` is base then novel."""

    base: tuple[str, ...]
    novel: tuple[str, ...]
    source: str

    @property
    def names(self) -> tuple[str, ...]:
        return self.base + self.novel

    def to_json(self) -> dict[str, Any]:
        return {"base": list(self.base), "novel": list(self.novel), "source": self.source}


def load_split(path: str | os.PathLike | None = None) -> OVSplit:
    """Read a split file ``{"base": [...], "novel": [...]}``; None means the public OV-COCO 48/17 split."""
    path = Path(path) if path is not None else PUBLIC_SPLIT_FILE
    obj = _read_json(path)
    for key in ("base", "novel"):
        names = obj.get(key) if isinstance(obj, dict) else None
        if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
            raise UserError(f"{path}: expected key {key!r} with a list of category names")
    dupes = sorted(n for n, c in Counter(obj["base"] + obj["novel"]).items() if c > 1)
    if dupes:
        raise UserError(f"{path}: categories listed twice (base and novel must be disjoint): {dupes}")
    if not obj["base"]:
        raise UserError(f"{path}: the split has no base category")
    source = "public:ov-coco-48-17" if path == PUBLIC_SPLIT_FILE else str(path.resolve())
    return OVSplit(tuple(obj["base"]), tuple(obj["novel"]), source)


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise UserError(f"{path}: file not found")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: not valid JSON ({e})") from None


def load_coco(path: str | os.PathLike) -> dict[str, Any]:
    """Read a COCO ``instances_*.json`` and check what the harnesses rely on (keys, references, boxes)."""
    path = Path(path)
    coco = _read_json(path)
    if not isinstance(coco, dict):
        raise UserError(f"{path}: expected a COCO annotation object")
    for key in ("images", "annotations", "categories"):
        if not isinstance(coco.get(key), list):
            raise UserError(f"{path}: missing key {key!r} (a list)")
    images = _index(path, coco["images"], "image", _IMAGE_KEYS)
    categories = _index(path, coco["categories"], "category", _CATEGORY_KEYS)
    names = Counter(c["name"] for c in coco["categories"])
    dupes = sorted(n for n, c in names.items() if c > 1)
    if dupes:
        raise UserError(f"{path}: category names used twice: {dupes}")
    _index(path, coco["annotations"], "annotation", _ANNOTATION_KEYS)
    for ann in coco["annotations"]:
        image = images.get(ann["image_id"])
        if image is None:
            raise UserError(f"{path}: annotation {ann['id']} refers to unknown image_id {ann['image_id']}")
        if ann["category_id"] not in categories:
            raise UserError(
                f"{path}: annotation {ann['id']} refers to unknown category_id {ann['category_id']}"
            )
        _check_box(path, ann, image)
    return coco


def _index(path: Path, items: list, what: str, keys: tuple[str, ...]) -> dict[Any, dict]:
    index: dict[Any, dict] = {}
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise UserError(f"{path}: {what} #{i} is not an object")
        for key in keys:
            if key not in item:
                raise UserError(f"{path}: {what} #{i} (id {item.get('id')!r}) is missing key {key!r}")
        if item["id"] in index:
            raise UserError(f"{path}: {what} id {item['id']!r} used twice")
        index[item["id"]] = item
    return index


def _check_box(path: Path, ann: dict, image: dict) -> None:
    box = ann["bbox"]
    if not (isinstance(box, list) and len(box) == 4 and all(isinstance(v, int | float) for v in box)):
        raise UserError(f"{path}: annotation {ann['id']} bbox must be [x, y, width, height], got {box!r}")
    x, y, w, h = box
    W, H = image["width"], image["height"]
    t = BOX_TOLERANCE
    if w < 0 or h < 0 or x < -t or y < -t or x + w > W + t or y + h > H + t:
        raise UserError(
            f"{path}: annotation {ann['id']} bbox {box} lies outside its {W}x{H} image {image['file_name']!r}"
        )


def check_split(
    split: OVSplit, coco: dict[str, Any], coco_path: str | os.PathLike, names: tuple[str, ...] | None = None
) -> None:
    """Every split category (or every one of ``names``) must be a category of the annotation file."""
    known = {c["name"] for c in coco["categories"]}
    unknown = [n for n in (names if names is not None else split.names) if n not in known]
    if unknown:
        raise UserError(
            f"{coco_path}: split {split.source} names categories this file does not have: "
            f"{listed([repr(n) for n in unknown])}"
        )


def restrict(coco: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    """A copy of ``coco`` keeping only the categories ``names`` and their annotations; every image stays, so
    images without annotations remain as in COCO. Categories keep their ids and are listed by ascending id, as
    COCO lists them (mmdet's OVCocoMetric picks base/novel precision columns assuming that order)."""
    wanted = set(names)
    categories = sorted((c for c in coco["categories"] if c["name"] in wanted), key=lambda c: c["id"])
    keep = {c["id"] for c in categories}
    out = {k: v for k, v in coco.items() if k not in ("categories", "annotations")}
    out["categories"] = categories
    out["annotations"] = [a for a in coco["annotations"] if a["category_id"] in keep]
    return out


def write_ov_coco(coco_root: str | os.PathLike, out_dir: str | os.PathLike, split: OVSplit) -> dict[str, Any]:
    """Write base-only training and base+novel validation annotations for ``coco_root`` under ``out_dir``.

    ``out_dir`` becomes a COCO-style root: ``annotations/instances_train2017_base.json``,
    ``annotations/instances_val2017_ov.json``, ``annotations/ov_split.json`` (the split used, plus ``labels``:
    the validation categories in file order, which is the detector's label order) and links ``train2017`` and
    ``val2017`` to the source image folders. Returns a summary of what was written.
    """
    coco_root, out_dir = Path(coco_root), Path(out_dir)
    summary: dict[str, Any] = {"split": split.source, "base": len(split.base), "novel": len(split.novel)}
    labels: list[str] = []
    for subset, names, target in (("train2017", split.base, TRAIN_FILE), ("val2017", split.names, VAL_FILE)):
        src = coco_root / "annotations" / f"instances_{subset}.json"
        coco = load_coco(src)
        check_split(split, coco, src, names)
        restricted = restrict(coco, names)
        if subset == "val2017":
            labels = [c["name"] for c in restricted["categories"]]
        atomic_write_text(out_dir / target, json.dumps(restricted, separators=(",", ":")))  # compact, as COCO
        _link_images(coco_root / subset, out_dir / subset)
        summary[subset] = {
            "file": str(out_dir / target),
            "images": len(restricted["images"]),
            "annotations": len(restricted["annotations"]),
            "categories": len(restricted["categories"]),
        }
    atomic_write_json(out_dir / SPLIT_FILE, {**split.to_json(), "labels": labels})
    return summary


def _link_images(src: Path, dst: Path) -> None:
    if not src.is_dir():
        raise UserError(f"{src}: image folder not found")
    if dst.is_symlink() or dst.exists():
        if dst.resolve() == src.resolve():
            return
        if not dst.is_symlink():
            raise UserError(f"{dst}: exists and is not a link to {src}; choose another --out")
        dst.unlink()
    dst.symlink_to(src.resolve(), target_is_directory=True)
