"""Public dataset identities: the facts of the public datasets a suite entry may claim (``dataset: imagenet-1k``),
the shared checks, and the one line that says how a folder differs from what it claims.

A harness lists the datasets it can verify in ``Harness.public_datasets`` (claim -> :class:`PublicDataset`); a
third-party harness adds its own the same way. The counts are those of the public releases; class names and
templates are read from the installed packages (open_clip, mmseg), never retyped.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.readers.classification import WNID, read_class_meta
from benchmarks.readers.images import is_image
from silc.errors import UserError

IMAGENET_CLASSES = 1_000
IMAGENET_IMAGES = {"train": 1_281_167, "val": 50_000}  # ILSVRC2012
FLICKR30K_FILE = "dataset_flickr30k.json"  # Karpathy's split file
FLICKR30K_TEST_IMAGES = 1_000
FLICKR30K_CAPTIONS = 5  # per image
ADE20K_CLASSES = 150  # mmseg ADE20KDataset METAINFO
ADE20K_VAL_IMAGES = 2_000
COCO_VAL_IMAGES = 5_000  # instances_val2017.json
COCO_CATEGORIES = 80
NONSTANDARD_HINT = "pass --allow-nonstandard to evaluate it under its own name"

# (data_root, resolved protocol) -> how the folder differs from the public dataset, one phrase each ([]: it is it)
IdentityCheck = Callable[[Path, dict[str, Any]], list[str]]


@dataclass(frozen=True)
class PublicDataset:
    """A public dataset a harness can verify a folder against."""

    name: str  # the name tables print for a verified folder, e.g. "ImageNet-1k"
    check: IdentityCheck


def refusal(folder: Path, dataset: PublicDataset, differences: Sequence[str]) -> str:
    """The one line that refuses ``folder`` as ``dataset``."""
    return f"{folder.name}: not {dataset.name}: {'; '.join(differences)}; {NONSTANDARD_HINT}"


def identity_record(
    claim: str, dataset: PublicDataset, differences: Sequence[str], folder: Path
) -> dict[str, Any]:
    """What a record says about its data's identity: the claim, whether it held, what differs, the table label
    (the public name when verified, else the folder's own name marked nonstandard)."""
    verified = not differences
    label = dataset.name if verified else f"{folder.name} (nonstandard)"
    return {"claimed": claim, "verified": verified, "differences": list(differences), "label": label}


def count_images(folders: Sequence[Path]) -> int:
    """Image files under ``folders`` (recursively, links followed, the readers' extensions): a listing, no decoding."""
    return sum(
        sum(1 for f in files if is_image(f))
        for folder in folders
        for _, _, files in os.walk(folder, followlinks=True)
    )


def imagenet_differences(root: Path, splits: dict[str, str], templates: str | None) -> list[str]:
    """How ``root`` differs from ImageNet-1k in its ``val/<wnid>/`` folder layout: for each ``{split folder:
    public split}``, the wnid class folders and the image count; with ``templates`` (a zero-shot protocol's prompt
    source) also a classnames.txt or templates file that replaces open_clip's names or the 80 OpenAI templates."""
    out = []
    for folder, public in splits.items():
        if folder != public:
            out.append(f"split {folder!r} (expected {public})")
        split_dir = root / folder
        if split_dir.is_dir() and any(p.suffix == ".tar" for p in split_dir.iterdir()):
            out.append(
                f"{folder}/ holds webdataset shards (ImageNet-1k is checked in its {folder}/<wnid>/ layout)"
            )
            continue
        classes = sorted(d for d in split_dir.iterdir() if d.is_dir()) if split_dir.is_dir() else []
        others = sum(not WNID.match(d.name) for d in classes)
        if len(classes) != IMAGENET_CLASSES or others:
            wnids = (
                "" if not others else ", none a wnid" if others == len(classes) else f", {others:,} not wnids"
            )
            out.append(
                f"{len(classes):,} {folder} class folders{wnids} (expected {IMAGENET_CLASSES:,} wnids)"
            )
        images, expected = count_images(classes), IMAGENET_IMAGES.get(public, 0)
        if images != expected:
            out.append(f"{images:,} {folder} images (expected {expected:,})")
    if templates is None:
        return out
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

    from silc.kernel import template_set

    split = next(iter(splits))
    try:
        meta = read_class_meta(root, split, templates)
    except UserError:  # the preflight says why they cannot be read; name the files that would replace them
        names = "classnames.txt" if (root / "classnames.txt").is_file() else None
        prompts = "templates.txt" if templates == "dataset" and (root / "templates.txt").is_file() else None
    else:
        openai80 = list(template_set("openai80").with_marker("{c}").texts)
        names = meta.classnames_source if meta.classnames != list(IMAGENET_CLASSNAMES) else None
        prompts = meta.templates_source if meta.templates != openai80 else None
    if names and prompts:
        out.append(f"{names} and {prompts} replace open_clip's class names and the 80 OpenAI templates")
    elif names:
        out.append(f"{names} {'replace' if names.endswith('names') else 'replaces'} open_clip's class names")
    elif prompts:
        out.append(f"{prompts} replaces the 80 OpenAI templates")
    return out
