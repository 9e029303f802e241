"""A legible preview grid of a data folder: captions, class names, label maps with a legend, boxes."""

from __future__ import annotations

import colorsys
import csv
import io
import json
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from silc.errors import UserError
from silc.io import atomic_write_bytes

PANEL = 224  # target side of an upsampled image, in preview pixels
GAP = 10
TEXT = (20, 20, 20)
BASE_COLOUR, NOVEL_COLOUR, CROWD_COLOUR = (0, 200, 70), (255, 120, 0), (160, 160, 160)


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


FONT, TITLE_FONT = _font(13), _font(18)
LINE = 16


def _wrap(text: str, width: int) -> list[str]:
    lines, line = [], ""
    for word in text.split():
        trial = f"{line} {word}".strip()
        if line and FONT.getlength(trial) > width:
            lines.append(line)
            line = word
        else:
            line = trial
    return [*lines, line] if line else lines


def _upsample(image: Image.Image) -> Image.Image:
    scale = max(1, round(PANEL / max(image.size)))
    return image.convert("RGB").resize((image.width * scale, image.height * scale), Image.NEAREST)


def _panel(image: Image.Image, text: list[str], width: int | None = None) -> Image.Image:
    """The image with wrapped text lines below it, on white."""
    width = width or image.width
    lines = [wrapped for t in text for wrapped in _wrap(t, width)]
    panel = Image.new("RGB", (width, image.height + 4 + LINE * len(lines)), "white")
    panel.paste(image, (0, 0))
    draw = ImageDraw.Draw(panel)
    for i, line in enumerate(lines):
        draw.text((0, image.height + 4 + i * LINE), line, fill=TEXT, font=FONT)
    return panel


def _palette(n: int) -> list[tuple[int, int, int]]:
    """Well-separated colours for label values 1..n (index 0 = value 0, black)."""
    out = [(0, 0, 0)]
    for i in range(n):
        r, g, b = colorsys.hsv_to_rgb((i * 0.618034) % 1.0, 0.75 if i % 2 else 0.55, 0.95 if i % 3 else 0.75)
        out.append((int(r * 255), int(g * 255), int(b * 255)))
    return out


def _lines(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _pretrain(root: Path, count: int = 6) -> list[Image.Image]:
    folder = root / "pretrain"
    pairs: list[tuple[Image.Image, str]] = []
    if (folder / "pairs.csv").is_file():
        with open(folder / "pairs.csv", newline="", encoding="utf-8") as f:
            for row in list(csv.DictReader(f))[:count]:
                pairs.append((Image.open(folder / row["filepath"]), row["caption"]))
    else:
        shards = sorted((folder / "shards").glob("*.tar"))
        if not shards:
            return []
        with tarfile.open(shards[0]) as tar:
            members = {m.name: m for m in tar.getmembers()}
            for name in sorted(n for n in members if n.endswith(".png"))[:count]:
                text = tar.extractfile(members[name[:-4] + ".txt"]).read().decode("utf-8")
                pairs.append((Image.open(io.BytesIO(tar.extractfile(members[name]).read())), text))
    return [_panel(_upsample(im), [f'"{text}"']) for im, text in pairs]


def _imagenet(root: Path, count: int = 8) -> list[Image.Image]:
    folder = root / "imagenet"
    split = next((folder / s for s in ("val", "train") if (folder / s).is_dir()), None)
    if split is None:
        return []
    classes = sorted(p.name for p in split.iterdir() if p.is_dir())
    names = _lines(folder / "classnames.txt") if (folder / "classnames.txt").is_file() else classes
    picks = sorted(
        {round(i * (len(classes) - 1) / max(1, count - 1)) for i in range(min(count, len(classes)))}
    )
    panels = []
    for k in picks:
        files = sorted(p for p in (split / classes[k]).iterdir() if p.is_file())
        if files:
            panels.append(
                _panel(_upsample(Image.open(files[0])), [f"{names[k]}", f"({classes[k]}, index {k})"])
            )
    return panels


def _flickr(root: Path, count: int = 2) -> list[Image.Image]:
    folder = root / "flickr30k"
    if not (folder / "dataset_flickr30k.json").is_file():
        return []
    images = json.loads((folder / "dataset_flickr30k.json").read_text(encoding="utf-8"))["images"]
    test = [im for im in images if im["split"] == "test"] or images
    panels = []
    for entry in test[:count]:
        image = _upsample(Image.open(folder / "images" / entry["filename"]))
        text = [f"{i + 1}. {s['raw']}" for i, s in enumerate(entry["sentences"])]
        panels.append(
            _panel(image, [f"{entry['filename']} ({entry['split']})", *text], width=2 * image.width)
        )
    return panels


def _ade(root: Path, count: int = 3) -> list[Image.Image]:
    folder = root / "ADEChallengeData2016"
    split = next((s for s in ("validation", "training") if (folder / "annotations" / s).is_dir()), None)
    if split is None:
        return []
    names = _lines(folder / "classnames.txt") if (folder / "classnames.txt").is_file() else []
    palette = np.array(_palette(max(len(names), 255)), np.uint8)
    panels, seen = [], set()
    for ann in sorted((folder / "annotations" / split).glob("*.png"))[:count]:
        labels = np.asarray(Image.open(ann))
        image = Image.open(folder / "images" / split / f"{ann.stem}.jpg").convert("RGB")
        coloured = Image.fromarray(palette[labels])
        blend = Image.blend(image, coloured, 0.75)
        panels.append(_panel(_upsample(image), [ann.stem]))
        panels.append(_panel(_upsample(blend), ["label map"]))
        seen.update(int(v) for v in np.unique(labels))
    legend = _legend(
        [(palette[v], "0 other (ignored)" if v == 0 else f"{v} {_name(names, v - 1)}") for v in sorted(seen)]
    )
    return [*panels, legend]


def _name(names: list[str], i: int) -> str:
    return names[i] if 0 <= i < len(names) else "?"


def _legend(entries: list[tuple[tuple[int, int, int] | np.ndarray, str]]) -> Image.Image:
    rows = max(1, (PANEL + 40) // LINE)
    cols = -(-len(entries) // rows)
    panel = Image.new("RGB", (150 * cols, LINE * min(rows, len(entries)) + 4), "white")
    draw = ImageDraw.Draw(panel)
    for i, (colour, text) in enumerate(entries):
        x, y = 150 * (i // rows), LINE * (i % rows)
        draw.rectangle((x, y + 2, x + 12, y + 13), fill=tuple(int(c) for c in colour), outline=(0, 0, 0))
        draw.text((x + 17, y), text, fill=TEXT, font=FONT)
    return panel


def _coco(root: Path, count: int = 4) -> list[Image.Image]:
    folder = root / "coco"
    ann_file = folder / "annotations" / "instances_val2017.json"
    if not ann_file.is_file():
        return []
    doc = json.loads(ann_file.read_text(encoding="utf-8"))
    split_file = folder / "annotations" / "ov_split.json"
    novel = (
        set(json.loads(split_file.read_text(encoding="utf-8"))["novel"]) if split_file.is_file() else set()
    )
    names = {c["id"]: c["name"] for c in doc["categories"]}
    by_image: dict[int, list[dict]] = {}
    for a in doc["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)

    # Prefer images that show a crowd region and novel categories, then any annotated image.
    def interest(im: dict) -> tuple[int, int]:
        anns = by_image.get(im["id"], [])
        return (-any(a["iscrowd"] for a in anns), -sum(names[a["category_id"]] in novel for a in anns))

    picks = sorted((im for im in doc["images"] if im["id"] in by_image), key=interest)[:count]
    panels = []
    for im in sorted(picks, key=lambda im: im["id"]):
        image = _upsample(Image.open(folder / "val2017" / im["file_name"]))
        scale = image.width / im["width"]
        draw = ImageDraw.Draw(image)
        for a in by_image[im["id"]]:
            x, y, w, h = (v * scale for v in a["bbox"])
            name = names[a["category_id"]]
            colour = CROWD_COLOUR if a["iscrowd"] else NOVEL_COLOUR if name in novel else BASE_COLOUR
            draw.rectangle((x, y, x + w - 1, y + h - 1), outline=colour, width=2)
            label = f"{name} (crowd)" if a["iscrowd"] else name
            tw = FONT.getlength(label)
            ty = max(0, y - LINE)
            draw.rectangle((x, ty, x + tw + 4, ty + LINE - 1), fill=colour)
            draw.text((x + 2, ty), label, fill=(0, 0, 0), font=FONT)
        panels.append(_panel(image, [f"{im['file_name']}: {len(by_image[im['id']])} boxes"]))
    legend = _legend(
        [(BASE_COLOUR, "base category"), (NOVEL_COLOUR, "novel category"), (CROWD_COLOUR, "iscrowd")]
    )
    return [*panels, legend]


SECTIONS = (
    ("Pretraining pairs: pretrain/pairs.csv (the same pairs as pretrain/shards/*.tar)", _pretrain),
    ("Classification: imagenet/val/<class-id>/ with imagenet/classnames.txt", _imagenet),
    ("Retrieval: flickr30k/dataset_flickr30k.json (5 captions per image)", _flickr),
    ("Segmentation: ADEChallengeData2016 validation images and label maps", _ade),
    ("Detection: coco/val2017 boxes (open-vocabulary split from ov_split.json)", _coco),
)


def _row(panels: list[Image.Image], max_width: int) -> list[list[Image.Image]]:
    rows, row, width = [], [], 0
    for p in panels:
        if row and width + GAP + p.width > max_width:
            rows.append(row)
            row, width = [], 0
        row.append(p)
        width += p.width + (GAP if width else 0)
    return [*rows, row] if row else rows


def preview(root: str | Path, out: str | Path, max_width: int = 1700) -> Path:
    """Draw samples of every dataset found under ``root`` into one PNG at ``out``; returns its path."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root}: no such folder (expected a data folder written by 'silc-bench data synth')")
    blocks: list[tuple[str, list[list[Image.Image]]]] = []
    for title, build in SECTIONS:
        try:
            panels = build(root)
        except (OSError, ValueError, KeyError, IndexError) as e:  # unreadable image, malformed JSON/CSV
            section = title.split(":")[0].lower()
            raise UserError(f"{root}: cannot read the {section} data ({type(e).__name__}: {e})") from e
        if panels:
            blocks.append((title, _row(panels, max_width - 2 * GAP)))
    if not blocks:
        raise UserError(
            f"{root}: no dataset found (expected pretrain/, imagenet/, flickr30k/, "
            "ADEChallengeData2016/ or coco/)"
        )
    title_h = 28
    width = max(sum(p.width for p in row) + GAP * (len(row) + 1) for _, rows in blocks for row in rows)
    height = GAP + sum(title_h + sum(max(p.height for p in row) + GAP for row in rows) for _, rows in blocks)
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    y = GAP
    for title, rows in blocks:
        draw.text((GAP, y), title, fill=(0, 0, 120), font=TITLE_FONT)
        y += title_h
        for row in rows:
            x = GAP
            for p in row:
                canvas.paste(p, (x, y))
                x += p.width + GAP
            y += max(p.height for p in row) + GAP
    buf = io.BytesIO()
    canvas.save(buf, format="PNG")
    try:
        return atomic_write_bytes(out, buf.getvalue())
    except OSError as e:
        raise UserError(f"{out}: cannot write the preview ({e.strerror or e})") from e
