"""Karpathy-split caption JSON (Flickr30k ``dataset_flickr30k.json``, COCO ``dataset_coco.json``) for retrieval.

The file holds ``{"images": [{"filename", "split", "sentences": [{"raw", ...}], "filepath"?}, ...]}``. Images are
looked up at ``ROOT/<filepath>/<filename>`` (COCO) or in the first of ``ROOT/images/``, ``ROOT/flickr30k-images/``,
``ROOT/`` that holds them (Flickr30k), unless an image folder is given.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from benchmarks.readers.images import ImageRef
from silc.errors import UserError

_IMAGE_DIR_CANDIDATES = ("images", "flickr30k-images", ".")


@dataclass
class RetrievalData:
    """One split of a caption dataset: images in file order and all captions of each image."""

    annotation_file: Path
    root: Path
    split: str
    refs: list[ImageRef]
    captions: list[list[str]]

    @property
    def num_captions(self) -> int:
        return sum(len(c) for c in self.captions)


def find_annotation_file(root: str | Path) -> Path:
    """``root`` itself when it is a JSON file, else the one ``dataset_*.json`` inside it."""
    root = Path(root)
    if root.is_file():
        return root
    if not root.is_dir():
        raise UserError(f"{root}: folder does not exist")
    found = sorted(root.glob("dataset_*.json"))
    if len(found) != 1:
        what = "no" if not found else f"{len(found)}"
        raise UserError(
            f"{root}: {what} Karpathy caption file(s) dataset_*.json found; expected exactly one "
            "(or pass the JSON file itself as --data)"
        )
    return found[0]


def load(ann: Path) -> dict:
    """The parsed caption file: an object whose ``images`` is a list (its entries are checked by
    :func:`entry_fields`); an unreadable file or another shape is a UserError naming it."""
    try:
        obj = json.loads(ann.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"{ann}: not readable JSON ({e.__class__.__name__}: {e})") from e
    if not isinstance(obj, dict) or not isinstance(obj.get("images"), list):
        raise UserError(f"{ann}: missing key 'images' (a list of {{filename, split, sentences}})")
    return obj


def entry_fields(ann: Path, i: int, entry: object) -> tuple[str, str, list[str], str | None]:
    """``images[i]`` of ``ann`` as (filename, split, every caption's raw text, filepath or None); a missing key
    is a UserError naming the entry."""
    if not isinstance(entry, dict):
        raise UserError(f"{ann}: images[{i}] is not an object")
    for key in ("filename", "split", "sentences"):
        if key not in entry:
            raise UserError(f"{ann}: images[{i}] is missing key {key!r}")
    sentences = entry["sentences"]
    if not isinstance(sentences, list):
        raise UserError(f"{ann}: images[{i}].sentences is not a list")
    raws = []
    for j, s in enumerate(sentences):
        if not isinstance(s, dict) or "raw" not in s:
            raise UserError(f"{ann}: images[{i}].sentences[{j}] is missing key 'raw'")
        raws.append(str(s["raw"]))
    return str(entry["filename"]), str(entry["split"]), raws, entry.get("filepath")


def read_karpathy(root: str | Path, split: str, image_dir: str | Path | None = None) -> RetrievalData:
    """The ``split`` images (in file order) and their captions; ``root`` is the dataset folder or its JSON file.

    Missing keys, missing images or a split without images are UserErrors naming the JSON file.
    """
    root = Path(root)
    ann = find_annotation_file(root)
    base = root if root.is_dir() else ann.parent
    entries = [entry_fields(ann, i, e) for i, e in enumerate(load(ann)["images"])]
    chosen = [e for e in entries if e[1] == split]
    if not chosen:
        found = sorted({e[1] for e in entries})
        raise UserError(f"{ann}: no images with split {split!r} (found: {', '.join(found) or 'none'})")

    def path_for(fname: str, filepath: str | None, folder: Path) -> Path:
        return (folder / filepath / fname) if filepath and image_dir is None else folder / fname

    if image_dir is not None:
        folder = Path(image_dir)
    elif chosen[0][3]:
        folder = base
    else:
        first = chosen[0][0]
        folder = next(
            (base / c for c in _IMAGE_DIR_CANDIDATES if (base / c / first).is_file()), base / "images"
        )
    paths = [path_for(fname, filepath, folder) for fname, _, _, filepath in chosen]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise UserError(
            f"{ann}: {len(missing)} of {len(paths)} {split!r} images missing on disk, e.g. {missing[0]}"
        )
    return RetrievalData(ann, base, split, [ImageRef(str(p)) for p in paths], [e[2] for e in chosen])
