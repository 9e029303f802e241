"""The class-name lists shipped for the zero-shot segmentation protocols (``benchmarks/configs/mmseg/names/``).

A shipped list names the classes of one mmseg dataset class, line k for class k: mmseg's class name first, then
the synonyms that the open-vocabulary segmentation papers (SCLIP, NACLIP) prompt with for it, comma-separated;
every synonym is its own query and a class scores the best of its queries (``adapters.class_queries``). The
``clearclip-*`` lists are ClearCLIP's released ``configs/cls_*.txt`` instead: one query per class, its words (e.g.
``ship`` for mmseg's ``boat``, ``background`` alone). A protocol's ``names`` knob selects one as
``shipped:<name>``.
"""

from __future__ import annotations

from pathlib import Path

from silc.errors import UserError

NAMES_DIR = Path(__file__).resolve().parent / "configs" / "mmseg" / "names"
SHIPPED_PREFIX = "shipped:"
# shipped list (file NAMES_DIR/<name>.txt) -> the mmseg dataset class whose classes it names, in order
SHIPPED_NAMES: dict[str, str] = {
    "voc21": "PascalVOCDataset",
    "voc20": "PascalVOC20Dataset",
    "coco-object": "COCOObjectDataset",
    "clearclip-voc21": "PascalVOCDataset",
    "clearclip-voc20": "PascalVOC20Dataset",
    "clearclip-coco-object": "COCOObjectDataset",
}


def names_file(names: str) -> str:
    """The file a ``names`` knob reads: the shipped list's path for ``shipped:<name>``, else ``names`` (a path)."""
    if not names.startswith(SHIPPED_PREFIX):
        return names
    key = names[len(SHIPPED_PREFIX) :]
    if key not in SHIPPED_NAMES:
        known = ", ".join(f"{SHIPPED_PREFIX}{k}" for k in SHIPPED_NAMES)
        raise UserError(f"names {names!r}: no such shipped list; expected one of {known} or a names file")
    return str(NAMES_DIR / f"{key}.txt")


def standard_names(dataset: str) -> set[str]:
    """The ``names`` values that prompt with the classes of mmseg dataset class ``dataset`` as published:
    ``dataset`` (its METAINFO names) and the shipped lists of its classes."""
    return {"dataset"} | {f"{SHIPPED_PREFIX}{k}" for k, owner in SHIPPED_NAMES.items() if owner == dataset}
