"""The public on-disk layouts of the zero-shot segmentation datasets, as mmseg's dataset classes read them.

A layout says where a dataset's root lies under a data folder, where a split's images and label maps are, which
images a split has and in which order (mmseg's: the split's list file, else the image files sorted by path) and
which file is each image's label map. Each mmseg dataset class the harness runs names its layout and whether it
reduces label 0 (``reduce_zero_label``), which sets the values a label map may hold. A public release (what a
suite entry may claim, ``dataset: pascal-voc-2012``) adds the split and image count of its validation set.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from benchmarks.identity import PublicDataset
from benchmarks.seg_names import SHIPPED_PREFIX, standard_names
from silc.errors import UserError


@dataclass(frozen=True)
class SegLayout:
    """Where a dataset's files are: ``img_dir`` / ``seg_dir`` relative to its root (``{split}`` replaced), the
    file suffixes mmseg's dataset class uses, and the split's image list (``split_file``; None: every image of
    ``img_dir``). ``folders``: where the root may be under a data folder (``""``: the folder itself)."""

    folders: tuple[str, ...]
    img_dir: str
    seg_dir: str
    text: str  # the layout in words, for error messages
    img_suffix: str = ".jpg"
    seg_suffix: str = ".png"
    split_file: str | None = None

    def root(self, data_root: Path) -> Path:
        """The first of ``folders`` under ``data_root`` that holds the image and label folders' top folders."""
        tops = {d.split("/")[0] for d in (self.img_dir, self.seg_dir)}
        for folder in self.folders:
            root = data_root / folder if folder else data_root
            if all((root / top).is_dir() for top in tops):
                return root
        raise UserError(f"{data_root}: expected {self.text}")

    def dirs(self, root: Path, split: str) -> tuple[Path, Path]:
        """The image and label-map folders of ``split``."""
        return root / self.img_dir.format(split=split), root / self.seg_dir.format(split=split)

    def names(self, root: Path, split: str) -> list[str]:
        """The images of ``split`` as mmseg names them (path under the image folder without the suffix), in its
        order: the lines of the split file, else the image files sorted by path (with the suffix)."""
        img_dir, _ = self.dirs(root, split)
        if self.split_file is not None:
            path = root / self.split_file.format(split=split)
            if not path.is_file():
                raise UserError(f"{path}: split file missing; expected {self.text}")
            try:
                names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
            except (OSError, UnicodeDecodeError) as e:
                raise UserError(f"{path}: cannot read the split file ({e})") from None
            blank = next((number for number, name in enumerate(names, 1) if not name), None)
            if blank is not None:
                raise UserError(f"{path}:{blank}: blank line; expected one image name per line")
            if not names:
                raise UserError(f"{path}: no image names; expected one per line")
            return names
        if not img_dir.is_dir():
            raise UserError(f"{img_dir}: folder missing; expected {self.text}")
        files = sorted(p.relative_to(img_dir).as_posix() for p in img_dir.rglob(f"*{self.img_suffix}"))
        if not files:
            raise UserError(f"{img_dir}: no *{self.img_suffix} images; expected {self.text}")
        return [f[: -len(self.img_suffix)] for f in files]

    def pairs(self, root: Path, split: str, names: list[str]) -> list[tuple[Path, Path]]:
        """(image, label map) of each of ``names``."""
        img_dir, seg_dir = self.dirs(root, split)
        return [(img_dir / f"{n}{self.img_suffix}", seg_dir / f"{n}{self.seg_suffix}") for n in names]

    def check_pairs(self, root: Path, split: str) -> int:
        """Number of images of ``split``; every image (of the split file) and its label map must exist (a
        UserError names what is missing)."""
        for folder in self.dirs(root, split):
            if not folder.is_dir():
                raise UserError(f"{folder}: folder missing; expected {self.text}")
        names = self.names(root, split)
        pairs = self.pairs(root, split, names)
        for k, what in ((0, "image"), (1, "label map")):
            missing = [pair[k] for pair in pairs if not pair[k].is_file()]
            if missing:
                raise UserError(
                    f"{missing[0].parent}: no {what} for {len(missing)} of {len(names)} images, e.g. "
                    f"{missing[0].name}"
                )
        return len(names)


ADE = SegLayout(
    folders=("ADEChallengeData2016", ""),
    img_dir="images/{split}",
    seg_dir="annotations/{split}",
    text="ADEChallengeData2016/{images,annotations}/<split>/ with <stem>.jpg images and <stem>.png label maps",
)
VOC2012 = SegLayout(
    folders=("VOCdevkit/VOC2012", "VOC2012", ""),
    img_dir="JPEGImages",
    seg_dir="SegmentationClass",
    split_file="ImageSets/Segmentation/{split}.txt",
    text="VOCdevkit/VOC2012/{JPEGImages/<id>.jpg, SegmentationClass/<id>.png (palette PNGs: 0 background, "
    "1-20 classes, 255 boundaries), ImageSets/Segmentation/<split>.txt}",
)
CONTEXT = SegLayout(
    folders=("VOCdevkit/VOC2010", "VOC2010", ""),
    img_dir="JPEGImages",
    seg_dir="SegmentationClassContext",
    split_file="ImageSets/SegmentationContext/{split}.txt",
    text="VOCdevkit/VOC2010/{JPEGImages/<id>.jpg, SegmentationClassContext/<id>.png (0 background, 1-59 "
    "classes, as mmseg's pascal_context.py writes them), ImageSets/SegmentationContext/<split>.txt}",
)
COCO_STUFF = SegLayout(
    folders=("coco_stuff164k", ""),
    img_dir="images/{split}",
    seg_dir="annotations/{split}",
    seg_suffix="_labelTrainIds.png",
    text="coco_stuff164k/{images/<split>/<id>.jpg, annotations/<split>/<id>_labelTrainIds.png (0-170, 255 "
    "unlabelled, as mmseg's coco_stuff164k.py writes them)}",
)
COCO_OBJECT = SegLayout(
    folders=("coco_object", "coco_stuff164k", ""),
    img_dir="images/{split}",
    seg_dir="annotations/{split}",
    seg_suffix="_instanceTrainIds.png",
    text="coco_object/{images/<split>/<id>.jpg, annotations/<split>/<id>_instanceTrainIds.png (0 background, "
    "1-80 things), as `silc-bench data coco-object` writes them from COCO-Stuff-164k}",
)
CITYSCAPES = SegLayout(
    folders=("cityscapes", ""),
    img_dir="leftImg8bit/{split}",
    seg_dir="gtFine/{split}",
    img_suffix="_leftImg8bit.png",
    seg_suffix="_gtFine_labelTrainIds.png",
    text="cityscapes/{leftImg8bit/<split>/<city>/<id>_leftImg8bit.png, gtFine/<split>/<city>/"
    "<id>_gtFine_labelTrainIds.png (0-18, 255 ignored, as cityscapesscripts' createTrainIdLabelImgs writes them)}",
)

# mmseg dataset class -> (its layout, whether it reduces label 0 to the ignore index)
DATASET_LAYOUTS: dict[str, tuple[SegLayout, bool]] = {
    "ADE20KDataset": (ADE, True),
    "SynthADE20KDataset": (ADE, True),
    "PascalVOCDataset": (VOC2012, False),
    "PascalVOC20Dataset": (VOC2012, True),
    "PascalContextDataset": (CONTEXT, False),
    "PascalContextDataset59": (CONTEXT, True),
    "COCOStuffDataset": (COCO_STUFF, False),
    "COCOObjectDataset": (COCO_OBJECT, False),
    "CityscapesDataset": (CITYSCAPES, False),
}


def layout_of(dataset: str) -> SegLayout:
    """The on-disk layout the mmseg dataset class ``dataset`` reads."""
    if dataset not in DATASET_LAYOUTS:
        raise UserError(f"protocol knob dataset {dataset!r}: expected one of {', '.join(DATASET_LAYOUTS)}")
    return DATASET_LAYOUTS[dataset][0]


def reduces_zero_label(dataset: str) -> bool:
    """Whether ``dataset`` ignores label 0 and shifts the others down by one (its label maps hold 0..C)."""
    layout_of(dataset)
    return DATASET_LAYOUTS[dataset][1]


@dataclass(frozen=True)
class PublicRelease:
    """The validation split of a public dataset as its release (and mmseg's converter) lays it out."""

    name: str  # what tables print for a verified folder
    layout: SegLayout
    datasets: tuple[str, ...]  # the mmseg dataset classes that score it
    split: str
    images: int


PUBLIC_RELEASES: dict[str, PublicRelease] = {
    "pascal-voc-2012": PublicRelease(
        "Pascal VOC 2012", VOC2012, ("PascalVOCDataset", "PascalVOC20Dataset"), "val", 1_449
    ),
    "pascal-context": PublicRelease(
        "Pascal Context", CONTEXT, ("PascalContextDataset", "PascalContextDataset59"), "val", 5_105
    ),
    "coco-stuff-164k": PublicRelease("COCO-Stuff-164k", COCO_STUFF, ("COCOStuffDataset",), "val2017", 5_000),
    "coco-object": PublicRelease("COCO-Object", COCO_OBJECT, ("COCOObjectDataset",), "val2017", 5_000),
    "cityscapes": PublicRelease("Cityscapes", CITYSCAPES, ("CityscapesDataset",), "val", 500),
}


def release_differences(release: PublicRelease, data_root: Path, protocol: dict[str, Any]) -> list[str]:
    """How ``data_root`` under ``protocol`` differs from ``release``: the dataset class, the class names (mmseg's
    or the dataset's shipped list), the split, and the number of images (each with its label map)."""
    out = []
    if protocol["dataset"] not in release.datasets:
        out.append(f"protocol dataset {protocol['dataset']} (expected {' or '.join(release.datasets)})")
    names = protocol.get("names", "dataset")
    if names not in standard_names(protocol["dataset"]):
        shipped = sorted(n for n in standard_names(protocol["dataset"]) if n.startswith(SHIPPED_PREFIX))
        also = f" or {', '.join(shipped)}" if shipped else ""
        out.append(f"class names from {names} (expected mmseg {protocol['dataset']}'s{also})")
    if protocol["split"] != release.split:
        out.append(f"split {protocol['split']!r} (expected {release.split})")
    root = release.layout.root(data_root)
    images = release.layout.check_pairs(root, protocol["split"])
    if images != release.images:
        out.append(f"{images:,} images with label maps (expected {release.images:,})")
    return out


def public_claims() -> dict[str, PublicDataset]:
    """The claims a suite entry may make for these releases (``dataset: <claim>``)."""
    return {
        claim: PublicDataset(release.name, partial(release_differences, release))
        for claim, release in PUBLIC_RELEASES.items()
    }
