"""Classification datasets in their public layouts: ImageNet wnid folders, any ImageFolder, clip_benchmark webdataset.

Layouts, with ROOT the folder passed as ``--data``:

- ImageFolder: ``ROOT/<split>/<class>/**/<image>``; classes in sorted folder order (as torchvision's ImageFolder);
  class names from ``ROOT/classnames.txt`` (one per line, in that order), else, for the 1000 ImageNet wnid folders
  (``n01440764`` ...), open_clip's ``IMAGENET_CLASSNAMES``, else the folder names. Templates from
  ``ROOT/templates.txt`` (one per line, ``{c}`` or ``{}`` marks the class name), else the 80 OpenAI ImageNet templates.
- clip_benchmark webdataset: ``ROOT/<split>/{0..n-1}.tar`` (``nshards.txt`` optional), samples ``<key>.webp|png|jpg``
  + ``<key>.cls`` (integer label), ``ROOT/classnames.txt`` and ``ROOT/zeroshot_classification_templates.txt``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.readers.images import ImageRef, is_image
from silc.errors import UserError
from silc.kernel import Templates, template_set

OPENAI_TEMPLATES_SOURCE = "open_clip.zero_shot_metadata.OPENAI_IMAGENET_TEMPLATES"
IMAGENET_CLASSNAMES_SOURCE = "open_clip.zero_shot_metadata.IMAGENET_CLASSNAMES"
# The protocol's prompt source: the dataset's own templates file (else openai80), or always openai80 ("openai").
TEMPLATE_CHOICES = ("dataset", "openai")
WNID = re.compile(r"^n\d{8}$")  # an ImageNet class folder name (n01440764)
_WDS_IMAGE_EXTS = ("webp", "png", "jpg", "jpeg")  # clip_benchmark's order of preference


@dataclass
class ClassMeta:
    """What a classification dataset says about its classes and prompts (read without listing images)."""

    root: Path
    split: str
    layout: str  # "imagefolder" | "imagenet" | "webdataset"
    classnames: list[str]
    classnames_source: str
    templates: list[str]
    templates_source: str
    class_dirs: list[Path] = field(default_factory=list)  # ImageFolder layouts only

    def template_set(self) -> Templates:
        """The templates as the kernel's :class:`~silc.kernel.templates.Templates` (``{c}`` form, filled with
        ``str.format(c=name)`` as clip_benchmark does)."""
        return Templates(self.templates_source, tuple(self.templates), marker="{c}")

    def pinned(self) -> dict[str, object]:
        """The facts a protocol records so that a number can be traced to its class names and prompts."""
        return {
            "layout": self.layout,
            "num_classes": len(self.classnames),
            "classnames_source": self.classnames_source,
            "classnames_sha256": text_sha256(self.classnames),
            "templates_source": self.templates_source,
            "num_templates": len(self.templates),
            "templates_sha256": text_sha256(self.templates),
        }


@dataclass
class ClassificationData:
    """One split of a classification dataset: class metadata plus every image with its label."""

    meta: ClassMeta
    refs: list[ImageRef]
    labels: list[int]


def text_sha256(lines: list[str]) -> str:
    """sha256 of a list of strings (as a JSON array), for recording class names and templates."""
    return hashlib.sha256(json.dumps(lines, ensure_ascii=False).encode()).hexdigest()


def _read_lines(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: cannot read ({e.__class__.__name__}: {e})") from e
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        raise UserError(f"{path}: empty; expected one entry per line")
    return lines


def _read_templates(path: Path) -> list[str]:
    """Templates with ``{c}`` (clip_benchmark) or ``{}`` (CLIP's notebooks) marking the class; kept as ``{c}``."""
    templates = [t if "{c}" in t else t.replace("{}", "{c}") for t in _read_lines(path)]
    for i, t in enumerate(templates, 1):
        if "{c}" not in t:
            raise UserError(f"{path}: line {i} {t!r} has no '{{c}}' or '{{}}' placeholder for the class name")
    return templates


def _split_dir(root: Path, split: str) -> Path:
    if not root.is_dir():
        raise UserError(f"{root}: folder does not exist")
    split_dir = root / split
    if not split_dir.is_dir():
        found = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
        if not found:
            raise UserError(f"{root}: empty folder; expected {split}/<class>/<image> or {split}/*.tar")
        raise UserError(
            f"{split_dir}: no {split!r} split (found folders: {', '.join(found)}); choose with --split"
        )
    return split_dir


def _shards(split_dir: Path) -> list[Path]:
    """The split's tar shards in clip_benchmark's order: ``0.tar .. n-1.tar`` (``nshards.txt`` when present)."""
    nshards_file = split_dir / "nshards.txt"
    if nshards_file.is_file():
        try:
            n = int(nshards_file.read_text().strip())
        except ValueError as e:
            raise UserError(f"{nshards_file}: expected the number of shards as an integer") from e
        shards = [split_dir / f"{i}.tar" for i in range(n)]
        missing = [s.name for s in shards if not s.is_file()]
        if missing:
            raise UserError(f"{nshards_file}: says {n} shards but {', '.join(missing[:3])} missing")
        return shards
    tars = [p for p in split_dir.iterdir() if p.suffix == ".tar" and p.is_file()]
    return sorted(tars, key=lambda p: (0, int(p.stem), "") if p.stem.isdigit() else (1, 0, p.stem))


def read_class_meta(root: str | Path, split: str, templates: str = "dataset") -> ClassMeta:
    """Class names and templates of ``root``'s ``split`` (layout detected); cheap, lists no images."""
    if templates not in TEMPLATE_CHOICES:
        raise UserError(f"templates: expected one of {', '.join(TEMPLATE_CHOICES)}, got {templates!r}")
    root = Path(root)
    split_dir = _split_dir(root, split)
    if _shards(split_dir):
        names_file = root / "classnames.txt"
        if not names_file.is_file():
            raise UserError(
                f"{names_file}: missing; the clip_benchmark webdataset layout needs one class name per line"
            )
        tmpl_file = root / "zeroshot_classification_templates.txt"
        return _with_templates(
            ClassMeta(root, split, "webdataset", _read_lines(names_file), str(names_file.name), [], ""),
            tmpl_file,
            templates,
        )
    class_dirs = sorted((d for d in split_dir.iterdir() if d.is_dir()), key=lambda d: d.name)
    if not class_dirs:
        raise UserError(
            f"{split_dir}: no class folders and no *.tar shards; expected {split}/<class>/<image>"
        )
    names_file = root / "classnames.txt"
    layout = "imagenet" if all(WNID.match(d.name) for d in class_dirs) else "imagefolder"
    if names_file.is_file():
        names, source = _read_lines(names_file), names_file.name
        if len(names) != len(class_dirs):
            raise UserError(
                f"{names_file}: {len(names)} class names but {len(class_dirs)} class folders in {split_dir}"
            )
    elif layout == "imagenet":
        from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

        if len(class_dirs) != len(IMAGENET_CLASSNAMES):
            raise UserError(
                f"{split_dir}: {len(class_dirs)} wnid folders; ImageNet-1k class names need all "
                f"{len(IMAGENET_CLASSNAMES)} (sorted-wnid order), or put a classnames.txt in {root}"
            )
        names, source = list(IMAGENET_CLASSNAMES), IMAGENET_CLASSNAMES_SOURCE
    else:
        names, source = [d.name for d in class_dirs], "folder names"
    meta = ClassMeta(root, split, layout, names, source, [], "", class_dirs)
    return _with_templates(meta, root / "templates.txt", templates)


def _with_templates(meta: ClassMeta, tmpl_file: Path, templates: str) -> ClassMeta:
    if templates == "dataset" and tmpl_file.is_file():
        meta.templates, meta.templates_source = _read_templates(tmpl_file), tmpl_file.name
    else:
        openai80 = template_set("openai80").with_marker("{c}")  # the kernel registry's openai80, in {c} form
        meta.templates, meta.templates_source = list(openai80.texts), OPENAI_TEMPLATES_SOURCE
    return meta


def read_classification(root: str | Path, split: str, templates: str = "dataset") -> ClassificationData:
    """Every image of ``root``'s ``split`` with its label, plus the class metadata; bad layouts are UserErrors."""
    meta = read_class_meta(root, split, templates)
    if meta.layout == "webdataset":
        refs, labels = _read_webdataset(meta)
    else:
        refs, labels = _read_imagefolder(meta)
    return ClassificationData(meta, refs, labels)


def _read_imagefolder(meta: ClassMeta) -> tuple[list[ImageRef], list[int]]:
    refs: list[ImageRef] = []
    labels: list[int] = []
    for label, class_dir in enumerate(meta.class_dirs):
        files = [
            os.path.join(dirpath, f)
            for dirpath, _, fnames in sorted(os.walk(class_dir, followlinks=True))
            for f in sorted(fnames)
            if is_image(f)
        ]
        if not files:
            raise UserError(f"{class_dir}: class folder has no images (.jpg/.jpeg/.png/.webp/.bmp)")
        refs.extend(ImageRef(f) for f in files)
        labels.extend([label] * len(files))
    return refs, labels


def _read_webdataset(meta: ClassMeta) -> tuple[list[ImageRef], list[int]]:
    refs: list[ImageRef] = []
    labels: list[int] = []
    for shard in _shards(meta.root / meta.split):
        samples: dict[str, dict[str, tarfile.TarInfo]] = {}
        try:
            with tarfile.open(shard, "r:") as tf:
                members = [m for m in tf.getmembers() if m.isfile()]
                for m in members:
                    match = re.match(r"^((?:.*/|)[^.]+)[.]([^/]*)$", m.name)
                    if match:
                        samples.setdefault(match.group(1), {})[match.group(2).lower()] = m
                for key, parts in samples.items():
                    ext = next((e for e in _WDS_IMAGE_EXTS if e in parts), None)
                    if ext is None or "cls" not in parts:
                        raise UserError(
                            f"{shard}: sample {key!r} needs an image (webp/png/jpg) and a .cls label"
                        )
                    raw = tf.extractfile(parts["cls"]).read()
                    try:
                        label = int(raw.decode().strip())
                    except ValueError as e:
                        raise UserError(
                            f"{shard}: {key}.cls is {raw[:20]!r}, expected an integer label"
                        ) from e
                    if not 0 <= label < len(meta.classnames):
                        raise UserError(
                            f"{meta.root / 'classnames.txt'}: {len(meta.classnames)} class names but "
                            f"{shard.name} has label {label}"
                        )
                    img = parts[ext]
                    refs.append(ImageRef(str(shard), img.offset_data, img.size))
                    labels.append(label)
        except tarfile.TarError as e:
            raise UserError(f"{shard}: not a readable tar ({e})") from e
    if not refs:
        raise UserError(f"{meta.root / meta.split}: webdataset shards hold no samples")
    return refs, labels
