"""The segmentation dataset on disk as ``seg-ade20k`` reads it: the dataset's root in its public layout
(``benchmarks/seg_layouts.py``), its image / label-map pairs and a full decode of every file, the class list its
label values index and the names a protocol prompts with, and the checks that stop a run where mmseg would score
the wrong thing without a word (a folder's own vocabulary, names that do not match the classes, label values out
of range).

The harness's preflight and run (``benchmarks/segmentation.py``), the dense linear probe
(``benchmarks/seg_linear.py``) and the mmseg config (``benchmarks/seg_config.py``) read the data through these.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from benchmarks.identity import ADE20K_CLASSES, ADE20K_VAL_IMAGES
from benchmarks.readers.images import (
    BadImage,
    bomb_warnings_silenced,
    decode_label_map,
    find_bad_images,
    settle_bad_images,
)
from benchmarks.seg_layouts import ADE as ADE_LAYOUT
from benchmarks.seg_layouts import SegLayout, layout_of
from benchmarks.seg_names import names_file
from silc.errors import UserError, listed
from silc.io import atomic_write_text

LAYOUT = ADE_LAYOUT.text
LABEL_SAMPLE = 20  # label maps whose values the preflight reads (evenly spaced by name)


def ade_root(data_root: Path) -> Path:
    """``data_root`` itself or its ``ADEChallengeData2016/`` child, whichever holds ``images/`` + ``annotations/``."""
    return ADE_LAYOUT.root(data_root)


def dataset_root(data_root: Path, protocol: dict[str, Any]) -> Path:
    """The root of the protocol's dataset under ``data_root``, in the layout its mmseg dataset class reads
    (``benchmarks/seg_layouts.py``: ADE20K, Pascal VOC / Context, COCO-Stuff / -Object, Cityscapes)."""
    return layout_of(protocol["dataset"]).root(data_root)


def check_pairs(root: Path, split: str, layout: SegLayout = ADE_LAYOUT) -> int:
    """Number of images of ``split`` in ``layout``; every image needs its label map (a UserError names what is
    missing)."""
    return layout.check_pairs(root, split)


def find_bad_pairs(
    root: Path, split: str, layout: SegLayout = ADE_LAYOUT
) -> tuple[dict[str, str], list[str]]:
    """Decode every image of ``split`` and its label map fully with PIL (mmseg decodes images with cv2, which
    reads a truncated JPEG as grey without a word). Returns ``{file relative to root: why}`` of the files that do
    not decode, and the names (as mmseg names them: under the image folder, without the suffix, in its order) of
    the images that decode with their label maps."""
    names = layout.names(root, split)
    paths = [p for pair in layout.pairs(root, split, names) for p in pair]
    found = find_bad_images(paths)
    bad = {paths[i].relative_to(root).as_posix(): why for i, why in found.items()}
    kept = [n for j, n in enumerate(names) if 2 * j not in found and 2 * j + 1 not in found]
    return bad, kept


def decode_check(
    root: Path, split: str, skip: bool, layout: SegLayout = ADE_LAYOUT
) -> tuple[list[str], list[str], float]:
    """Every image of ``split`` and its label map decoded before mmseg reads them (:func:`find_bad_pairs`); bad
    files stop the run in one line or, with ``skip``, leave their images out. Returns the names of the images
    evaluated (mmseg's order), the files skipped and the seconds the check took."""
    start = time.perf_counter()
    bad, kept = find_bad_pairs(root, split, layout)
    check_s = time.perf_counter() - start
    return kept, settle_bad_images(bad, root, skip, len(kept)), check_s


def subset_ann_file(artefacts: Path, kept: list[str]) -> str:
    """mmseg's way to evaluate a subset: an ``ann_file`` listing the images ``kept`` (in its order), written into
    ``artefacts``. Its absolute path: mmengine joins a relative ``ann_file`` onto the data root."""
    images_file = atomic_write_text(artefacts / "images.txt", "".join(f"{n}\n" for n in kept))
    return str(images_file.resolve())


def own_vocabulary(root: Path) -> list[str] | None:
    """The classes (first names) of the folder's own classnames.txt when they are not mmseg ADE20KDataset's 150
    in its order; None without such a file or when it lists exactly those."""
    own = root / "classnames.txt"
    if not own.is_file():
        return None
    from adapters.class_queries import read_names_file
    from adapters.mmseg import class_names_from

    theirs = [synonyms[0] for synonyms in read_names_file(own)]
    ade = [synonyms[0] for synonyms in class_names_from({"dataset": "ADE20KDataset"})]
    return None if theirs == ade else theirs


def check_vocabulary(protocol: dict[str, Any], root: Path) -> None:
    """A folder that ships its own classnames.txt is never scored with ADE20K's 150 names silently: a protocol
    that would (ADE20KDataset with the dataset's names) on such a folder is a UserError saying what to use."""
    if protocol["dataset"] != "ADE20KDataset" or protocol["names"] != "dataset":
        return
    theirs = own_vocabulary(root)
    if theirs is None:
        return
    own, renamed = root / "classnames.txt", len(theirs) == ADE20K_CLASSES
    what = f"{ADE20K_CLASSES} classes named otherwise" if renamed else f"{len(theirs)} classes"
    names = f"--names {own} or " if renamed else ""
    raise UserError(
        f"{own}: the folder's own {what}, but this protocol scores with ADE20K's {ADE20K_CLASSES} names (mmseg "
        f"ADE20KDataset); use {names}--protocol synth, which reads that file (--short-side 448 --crop 448 "
        "--stride 224 for the ade-448 recipe)"
    )


def check_names_match(protocol: dict[str, Any], root: Path, classes: list[list[str]]) -> None:
    """The names the protocol prompts with (a names file, or the dataset's own) are one per class of the dataset
    (``classes``: :func:`dataset_classes`), whose label values index them."""
    from adapters.mmseg import class_names_from

    names = class_names_from(class_names_source(protocol, root))
    if len(names) != len(classes):
        raise UserError(f"{protocol['names']}: {len(names)} classes, but the dataset has {len(classes)}")


def check_label_sample(
    root: Path,
    split: str,
    num_classes: int,
    sample: int = LABEL_SAMPLE,
    layout: SegLayout = ADE_LAYOUT,
    reduce_zero_label: bool = True,
) -> None:
    """Label values of the label maps of ``sample`` evenly spaced images (in mmseg's order) of ``split`` in
    ``layout``: only 0..classes-1 (with reduce_zero_label, as ADE20K's 0 "other": 0..classes) and 255 are labels;
    IoUMetric would drop any other value without a word."""
    import numpy as np

    ann_dir = layout.dirs(root, split)[1]
    names = layout.names(root, split)
    picks = sorted({names[round(i)] for i in np.linspace(0, len(names) - 1, min(sample, len(names)))})
    top = num_classes if reduce_zero_label else num_classes - 1
    bad = []
    for _, path in layout.pairs(root, split, picks):
        try:
            with bomb_warnings_silenced():
                labels = decode_label_map(path)
        except BadImage:  # the decode check names it (find_bad_pairs, --skip-bad-images)
            continue
        if labels.ndim != 2:
            bad.append(f"{path.name} ({labels.shape[-1]} channels, not a label map)")
            continue
        values = np.unique(labels)
        wrong = values[(values > top) & (values != 255)].tolist()
        if wrong:
            bad.append(f"{path.name} (values {listed(wrong, 5)})")
    if bad:
        reduced = ", reduce_zero_label" if reduce_zero_label else ""
        raise UserError(
            f"{ann_dir}: {len(bad)} of {len(picks)} sampled label maps hold values other than 0..{top} "
            f"and 255 ({num_classes} classes{reduced}): {listed(bad, 3)}"
        )


def dataset_classes(protocol: dict[str, Any], root: Path) -> list[list[str]]:
    """The dataset's own class list (mmseg METAINFO, or the synthetic layout's classnames.txt): what the label
    values index, whatever names the protocol prompts with."""
    from adapters.mmseg import class_names_from

    return class_names_from(class_names_source({**protocol, "names": "dataset"}, root))


def ade20k_differences(data_root: Path, protocol: dict[str, Any]) -> list[str]:
    """How ``data_root`` under ``protocol`` differs from ADE20K-150 validation: the dataset and class names
    (mmseg ADE20KDataset's 150; a classnames.txt with another vocabulary), 2,000 images with their label maps."""
    root = ade_root(data_root)
    out = []
    if protocol["dataset"] != "ADE20KDataset":
        out.append(f"protocol dataset {protocol['dataset']} (expected ADE20KDataset)")
    if protocol.get("names", "dataset") != "dataset":
        out.append(f"class names from {protocol['names']} (expected mmseg ADE20KDataset's {ADE20K_CLASSES})")
    theirs = own_vocabulary(root)
    if theirs is not None:
        out.append(f"classnames.txt lists {len(theirs)} classes other than ADE20K's {ADE20K_CLASSES}")
    if protocol["split"] != "validation":
        out.append(f"split {protocol['split']!r} (expected validation)")
    images = check_pairs(root, protocol["split"])
    labels = sum(1 for _ in (root / "annotations" / protocol["split"]).rglob("*.png"))
    if images != ADE20K_VAL_IMAGES or labels != ADE20K_VAL_IMAGES:
        out.append(f"{images:,} images and {labels:,} label maps (expected {ADE20K_VAL_IMAGES:,} each)")
    return out


def class_names_source(protocol: dict[str, Any], root: Path) -> str | dict:
    """What the segmentor reads its class names from: the dataset's own list or a names file (a shipped one for
    ``shipped:<name>``, benchmarks/seg_names.py)."""
    if protocol["names"] != "dataset":
        return names_file(str(protocol["names"]))
    if protocol["dataset"] == "SynthADE20KDataset":
        return str(root / "classnames.txt")
    import benchmarks.seg_mmseg  # noqa: F401  (registers the dataset classes mmseg lacks: VOC-20, COCO-Object)

    return {"dataset": protocol["dataset"]}
