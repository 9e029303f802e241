"""The public layouts of the ovss8 suite's datasets filled from the synthetic world (``silc-bench data synth-ovss``).

Every validation scene of the world's ADE20K folder (``ADEChallengeData2016``: 0 "other", 1-6 stuff, 7-22 shapes)
is written into each layout with its labels mapped into that dataset's conventions, so that the suite runs end to
end through the same readers as on the real datasets; the class names prompted are the real datasets', so a
model's numbers on these layouts test the plumbing, not the model:

- ``VOCdevkit/VOC2012`` (VOC21, VOC20): palette PNGs with the VOC colour map; other and stuff are background 0,
  shape k is class k + 1, and the pixels on either side of a label edge are 255, as VOC's boundaries.
- ``VOCdevkit/VOC2010`` (Context60, Context59): the world's values as they are (0 background, 1-22).
- ``coco_stuff164k`` (COCO-Stuff-171): the released label maps (shapes as the first 16 thing values, stuff as the
  first 6 stuff values, other 255 unlabelled) and the ``_labelTrainIds.png`` maps mmseg's converter writes.
- ``coco_object`` (COCO-Object): converted from that COCO-Stuff folder by ``benchmarks/coco_object.py``.
- ``cityscapes``: PNG images, train ids (value v -> (v - 1) mod 19, other 255 ignored).
- ``ADEChallengeData2016``: the world's images and label maps without its classnames.txt (ADE20K's 150 names).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks.coco_object import THINGS, coco_stuff_train_ids, convert_coco_object
from benchmarks.readers.images import BadImage, bomb_warnings_silenced, decode_label_map, decode_rgb
from benchmarks.seg_layouts import ADE, CITYSCAPES, COCO_STUFF, CONTEXT, VOC2012, SegLayout
from silc.data.synth.world import OBJECT_LABEL_OFFSET, SEG_CLASSES
from silc.errors import UserError
from silc.io import atomic_write_bytes, atomic_write_text

VOC_IGNORE = 255
CITYSCAPES_CLASSES = 19
# where each layout goes under the output folder (the ovss8 suite's `data:` sub-paths)
FOLDERS = {
    "voc": "VOCdevkit/VOC2012",
    "context": "VOCdevkit/VOC2010",
    "coco_stuff": "coco_stuff164k",
    "coco_object": "coco_object",
    "cityscapes": "cityscapes",
    "ade": "ADEChallengeData2016",
}


def voc_palette() -> list[int]:
    """The VOC devkit's 256-colour label map (VOClabelcolormap: index bits 0, 1, 2 go to R, G, B from their
    most significant bit down, three bits per step), flat ``[r0, g0, b0, r1, ...]``."""
    flat = []
    for index in range(256):
        rgb = [0, 0, 0]
        for step in range(8):
            for channel in range(3):
                rgb[channel] |= ((index >> (3 * step + channel)) & 1) << (7 - step)
        flat += rgb
    return flat


def png(labels: np.ndarray, palette: list[int] | None = None) -> bytes:
    """A uint8 label map as a PNG (a palette PNG with ``palette``, as VOC's)."""
    image = Image.fromarray(labels.astype(np.uint8))
    if palette is not None:
        image = image.convert("P")
        image.putpalette(palette)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def voc_labels(world: np.ndarray) -> np.ndarray:
    """Objects on background: shape k -> k + 1, other and stuff -> 0, the pixels on either side of an edge 255."""
    voc = np.where(world >= OBJECT_LABEL_OFFSET, world.astype(np.int16) - OBJECT_LABEL_OFFSET + 1, 0)
    edge = np.zeros(voc.shape, bool)
    vertical, horizontal = voc[1:] != voc[:-1], voc[:, 1:] != voc[:, :-1]
    edge[1:] |= vertical
    edge[:-1] |= vertical
    edge[:, 1:] |= horizontal
    edge[:, :-1] |= horizontal
    return np.where(edge, VOC_IGNORE, voc).astype(np.uint8)


def coco_stuff_values(train_ids: dict[int, int]) -> np.ndarray:
    """uint8 ``[256]``: world value -> COCO-Stuff-164k released value (other -> 255 unlabelled, stuff -> the
    first stuff values, shapes -> the first thing values, in value order)."""
    things = sorted(v for v, t in train_ids.items() if t < THINGS)
    stuff = sorted(v for v, t in train_ids.items() if THINGS <= t < 255)
    lut = np.full(256, 255, np.uint8)
    shapes = len(SEG_CLASSES) - OBJECT_LABEL_OFFSET + 1
    lut[1:OBJECT_LABEL_OFFSET] = stuff[: OBJECT_LABEL_OFFSET - 1]
    lut[OBJECT_LABEL_OFFSET : OBJECT_LABEL_OFFSET + shapes] = things[:shapes]
    return lut


def train_id_lut(train_ids: dict[int, int]) -> np.ndarray:
    """uint8 ``[256]``: COCO-Stuff-164k released value -> mmseg's train id (255 elsewhere), as its converter."""
    lut = np.full(256, 255, np.uint8)
    for value, train_id in train_ids.items():
        lut[value] = train_id
    return lut


def cityscapes_labels(world: np.ndarray) -> np.ndarray:
    """Train ids: world value v -> (v - 1) mod 19, other -> 255 (ignored)."""
    return np.where(world == 0, 255, (world.astype(np.int16) - 1) % CITYSCAPES_CLASSES).astype(np.uint8)


def world_scenes(world: Path) -> list[tuple[str, Path, Path]]:
    """(stem, image, label map) of every validation scene of the world's ADE20K folder, in name order."""
    ade = ADE.root(world)
    names = ade / "classnames.txt"
    if not names.is_file() or names.read_text(encoding="utf-8").splitlines() != list(SEG_CLASSES):
        raise UserError(
            f"{names}: expected the synthetic world's classnames.txt (write it with silc-bench data synth)"
        )
    ADE.check_pairs(ade, "validation")
    stems = ADE.names(ade, "validation")
    return [(s, *pair) for s, pair in zip(stems, ADE.pairs(ade, "validation", stems), strict=True)]


def _writer(out: Path, layout: SegLayout, folder: str, split: str) -> Callable[[str, bytes, bytes], None]:
    """Writes one (name, image bytes, label PNG bytes) pair into ``layout`` under ``out/folder``."""
    root = out / folder

    def write(name: str, image: bytes, labels: bytes) -> None:
        atomic_write_bytes(root / layout.img_dir.format(split=split) / f"{name}{layout.img_suffix}", image)
        atomic_write_bytes(root / layout.seg_dir.format(split=split) / f"{name}{layout.seg_suffix}", labels)

    return write


def write_ovss_layouts(world: str | Path, out: str | Path) -> dict[str, int]:
    """Write the ovss8 layouts (``FOLDERS``) under ``out`` from the synthetic world folder ``world``; returns the
    images written per layout folder."""
    world, out = Path(world), Path(out)
    scenes = world_scenes(world)
    train_ids = coco_stuff_train_ids()
    to_coco, to_train_id, palette = coco_stuff_values(train_ids), train_id_lut(train_ids), voc_palette()
    voc = _writer(out, VOC2012, FOLDERS["voc"], "val")
    context = _writer(out, CONTEXT, FOLDERS["context"], "val")
    coco = _writer(out, COCO_STUFF, FOLDERS["coco_stuff"], "val2017")
    cityscapes = _writer(out, CITYSCAPES, FOLDERS["cityscapes"], "val")
    ade = _writer(out, ADE, FOLDERS["ade"], "validation")
    ids = []
    for i, (stem, image_path, label_path) in enumerate(scenes, 1):
        try:
            with bomb_warnings_silenced():
                world_labels, rgb = decode_label_map(label_path), np.asarray(decode_rgb(image_path))
        except BadImage as e:
            raise UserError(f"{label_path.parent}: scene {stem} does not decode ({e})") from None
        jpeg = image_path.read_bytes()
        voc_id, coco_id = f"2008_{i:06d}", f"{i:012d}"
        ids.append(voc_id)
        voc(voc_id, jpeg, png(voc_labels(world_labels), palette))
        context(voc_id, jpeg, png(world_labels))
        released = to_coco[world_labels]
        coco(coco_id, jpeg, png(to_train_id[released]))
        atomic_write_bytes(
            out / FOLDERS["coco_stuff"] / "annotations" / "val2017" / f"{coco_id}.png", png(released)
        )
        buffer = io.BytesIO()
        Image.fromarray(rgb).save(buffer, format="PNG")
        cityscapes(f"synth/synth_{i:06d}_000019", buffer.getvalue(), png(cityscapes_labels(world_labels)))
        ade(stem, jpeg, png(world_labels))
    for layout, folder in ((VOC2012, FOLDERS["voc"]), (CONTEXT, FOLDERS["context"])):
        atomic_write_text(
            out / folder / layout.split_file.format(split="val"), "".join(f"{n}\n" for n in ids)
        )
    convert_coco_object(out / FOLDERS["coco_stuff"], out / FOLDERS["coco_object"])
    return {folder: len(scenes) for folder in FOLDERS.values()}
