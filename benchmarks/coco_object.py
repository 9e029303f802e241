"""COCO-Object from COCO-Stuff-164k (``silc-bench data coco-object``), as the open-vocabulary segmentation papers
(GroupViT, TCL, SCLIP, NACLIP) derive it: every thing pixel gets its thing class's index + 1 (1..80, in mmseg's
COCOStuffDataset order), every stuff and unlabelled pixel 0 (background, a class that is scored).

Input: COCO-Stuff-164k in mmseg's layout, ``coco_stuff164k/{images/<split>/<id>.jpg,
annotations/<split>/<id>.png}``, the label maps as released (stuffthingmaps_trainval2017.zip: value = COCO
category id - 1, 255 unlabelled). Which value is which thing or stuff class is mmseg's own mapping, the
``clsID_to_trID`` of the converter the mmsegmentation wheel ships (tools/dataset_converters/coco_stuff164k.py, read
as data, not run), which also wrote the ``_labelTrainIds.png`` maps that COCO-Stuff-171 is scored on. Output:
``<out>/annotations/<split>/<id>_instanceTrainIds.png`` and ``<out>/images/<split>`` linked to the input's images
(``<out>`` may be the input folder itself).
"""

from __future__ import annotations

import ast
import io
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from benchmarks.ov_coco import _link_images
from benchmarks.readers.images import BadImage, bomb_warnings_silenced, decode_label_map
from silc.errors import UserError, listed
from silc.io import atomic_write_bytes

THINGS = 80  # COCO-Stuff's thing classes: mmseg's train ids 0..79
SUFFIX = "_instanceTrainIds.png"
CONVERTED = ("_labelTrainIds.png", SUFFIX)  # converted label maps that may sit beside the released ones
MMSEG_CONVERTER = Path(".mim", "tools", "dataset_converters", "coco_stuff164k.py")
INPUT = (
    "coco_stuff164k/{images/<split>/<id>.jpg, annotations/<split>/<id>.png} with COCO-Stuff-164k's released "
    "label values (stuffthingmaps_trainval2017.zip: COCO category id - 1, 255 unlabelled)"
)


def coco_stuff_train_ids() -> dict[int, int]:
    """COCO-Stuff-164k label value -> mmseg's train id (things 0..79, stuff 80..170; 255 unlabelled), the
    ``clsID_to_trID`` literal of mmseg's shipped coco_stuff164k.py converter."""
    try:
        import mmseg
    except ImportError as e:
        raise UserError(
            f"silc-bench data coco-object reads mmsegmentation's COCO-Stuff mapping ({e})"
        ) from None
    path = Path(mmseg.__file__).parent / MMSEG_CONVERTER
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError) as e:
        raise UserError(f"{path}: cannot read mmsegmentation's COCO-Stuff converter ({e})") from None
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "clsID_to_trID" for t in node.targets
        ):
            return {int(k): int(v) for k, v in ast.literal_eval(node.value).items()}
    raise UserError(f"{path}: no clsID_to_trID mapping (mmsegmentation 1.2.2's converter has one)")


def object_lut(train_ids: dict[int, int]) -> np.ndarray:
    """int16 ``[256]``: COCO-Stuff-164k label value -> COCO-Object label (thing train id t -> t + 1, stuff and
    unlabelled -> 0); -1 for a value that is no COCO-Stuff class."""
    lut = np.full(256, -1, np.int16)
    for value, train_id in train_ids.items():
        lut[value] = train_id + 1 if train_id < THINGS else 0
    return lut


def _label_map(path: Path) -> np.ndarray:
    """An 8-bit single-channel label map's values; anything else is a UserError naming the file."""
    try:
        with bomb_warnings_silenced():
            labels = decode_label_map(path)
    except BadImage as e:
        raise UserError(f"{path}: {e}; expected a COCO-Stuff-164k label map (8-bit PNG)") from None
    if labels.ndim != 2 or labels.dtype != np.uint8:
        raise UserError(
            f"{path}: a {labels.dtype} image of shape {labels.shape}; expected an 8-bit single-channel label map"
        )
    return labels


def convert_map(src: Path, dst: Path, lut: np.ndarray) -> None:
    """Write ``src``'s COCO-Object labels to ``dst`` (a uint8 PNG, atomically)."""
    labels = _label_map(src)
    converted = lut[labels]
    if (converted < 0).any():
        wrong = np.unique(labels[converted < 0]).tolist()
        raise UserError(
            f"{src}: values {listed(wrong, 5)} are no COCO-Stuff-164k class; expected its released label values "
            "(COCO category id - 1, 255 unlabelled)"
        )
    buffer = io.BytesIO()
    Image.fromarray(converted.astype(np.uint8)).save(buffer, format="PNG")
    atomic_write_bytes(dst, buffer.getvalue())


def released_maps(coco_stuff: Path, split: str) -> list[Path]:
    """The released label map of every image of ``split`` (a UserError names a missing folder or map)."""
    img_dir, ann_dir = coco_stuff / "images" / split, coco_stuff / "annotations" / split
    for folder in (img_dir, ann_dir):
        if not folder.is_dir():
            raise UserError(f"{folder}: folder missing; expected {INPUT}")
    maps = sorted(p for p in ann_dir.glob("*.png") if not p.name.endswith(CONVERTED))
    if not maps:
        raise UserError(f"{ann_dir}: no label maps <id>.png; expected {INPUT}")
    stems = {p.stem for p in maps}
    images = sorted(p.stem for p in img_dir.glob("*.jpg"))
    missing = [s for s in images if s not in stems]
    if missing:
        raise UserError(
            f"{ann_dir}: no label map for {len(missing)} of {len(images)} images, e.g. {missing[0]}.png"
        )
    return maps


def convert_coco_object(
    coco_stuff: str | os.PathLike, out: str | os.PathLike, splits: tuple[str, ...] = ("val2017",)
) -> dict[str, Any]:
    """Write COCO-Object's label maps of ``splits`` under ``out`` from the COCO-Stuff-164k folder ``coco_stuff``
    and link its images there; returns what was written."""
    coco_stuff, out = Path(coco_stuff), Path(out)
    lut = object_lut(coco_stuff_train_ids())
    written = {}
    for split in splits:
        maps = released_maps(coco_stuff, split)
        out_dir = out / "annotations" / split
        out_dir.mkdir(parents=True, exist_ok=True)
        # PIL decodes and encodes outside the GIL
        with ThreadPoolExecutor(min(8, os.cpu_count() or 1)) as pool:
            list(pool.map(lambda p, d=out_dir: convert_map(p, d / f"{p.stem}{SUFFIX}", lut), maps))
        if (out / "images").resolve() != (coco_stuff / "images").resolve():
            (out / "images").mkdir(parents=True, exist_ok=True)
            _link_images(coco_stuff / "images" / split, out / "images" / split)
        written[split] = len(maps)
    return {"coco_stuff": str(coco_stuff), "out": str(out), "label_maps": written}
