"""The ``det-ovcoco`` harness: COCO open-vocabulary detection, training-free (``boxcls``) or F-VLM (``fvlm``)."""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from adapters.encoder import Encoder
from adapters.open_vocab import TEMPLATE_SETS, text_classifier
from benchmarks.detection import boxcls
from benchmarks.detection.visualize import draw_boxes, save_png
from benchmarks.ov_coco import OVSplit, check_split, load_coco, load_split
from benchmarks.registry import Evaluation, Harness, register
from silc.errors import UserError

log = logging.getLogger(__name__)

VAL_ANNOTATIONS = "annotations/instances_val2017.json"
TRAIN_ANNOTATIONS = "annotations/instances_train2017.json"
DATA_SPLIT_FILE = "annotations/ov_split.json"  # the synthetic world ships its own split here
CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs" / "mmdet"

PROTOCOLS: dict[str, dict[str, Any]] = {
    "boxcls": {
        "split": "auto",  # auto: <data>/annotations/ov_split.json if present, else the public OV-COCO 48/17
        "vocabulary": "ov",  # ov: base + novel names; all: every category of the annotation file
        "templates": "openai80",
        "dense_mode": "naive",
        "input_size": 448,  # whole image resized to this square for encode_dense
        "roi_size": 7,  # RoIAlign output (mean-pooled)
    },
    "fvlm": {
        "split": "auto",
        "config": "fvlm_synth_cpu.py",  # a config in benchmarks/configs/mmdet/ or a path
        "templates": "openai80",
        "dense_mode": "naive",
        "max_iters": None,  # None: the config's schedule
        "alpha": 0.35,  # VLM weight in the geometric ensemble for base categories (F-VLM)
        "beta": 0.65,  # ... and for novel categories
        "det_weights": None,  # a plain detector state dict (fvlm_detector.pt): evaluate it instead of training
    },
}


def resolve_split(protocol: dict[str, Any], data_root: Path) -> OVSplit:
    """The split a protocol names: a file, or ``auto`` (the data's own split file, else the public one)."""
    choice = protocol["split"]
    if choice == "auto":
        own = data_root / DATA_SPLIT_FILE
        return load_split(own if own.is_file() else None)
    if choice == "public:ov-coco-48-17":
        return load_split(None)
    path = Path(choice)
    # A pinned split inside the dataset is recorded relative to it; otherwise relative to the working directory.
    return load_split(data_root / path if not path.is_absolute() and (data_root / path).is_file() else path)


def split_hash(split: OVSplit) -> str:
    """Short hash of the split's names (base then novel), for the recorded protocol."""
    blob = json.dumps({"base": split.base, "novel": split.novel}).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def resolve_config(name: str) -> Path:
    """A shipped config by file name, or a path to a config."""
    path = CONFIG_DIR / name if (CONFIG_DIR / name).is_file() else Path(name)
    if not path.is_file():
        shipped = ", ".join(sorted(p.name for p in CONFIG_DIR.glob("*.py") if not p.name.startswith("_")))
        raise UserError(f"{name}: mmdet config not found (shipped: {shipped})")
    return path.resolve()


class DetOVCocoHarness(Harness):
    name = "det-ovcoco"
    description = "COCO open-vocabulary detection (48 base / 17 novel): box classification or F-VLM detector"
    protocols = PROTOCOLS
    default_protocol = "boxcls"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        g = parser.add_argument_group("det-ovcoco")
        g.add_argument("--split", help="OV split JSON {base: [...], novel: [...]} (default: auto)")
        g.add_argument("--vocabulary", choices=("ov", "all"), help="boxcls: classify among base+novel or all")
        g.add_argument("--templates", choices=TEMPLATE_SETS, help="prompt templates for the category names")
        g.add_argument("--dense-mode", help="encode_dense mode (naive, maskclip, sclip, clearclip)")
        g.add_argument("--input-size", type=int, help="boxcls: square input size for encode_dense")
        g.add_argument("--config", help="fvlm: mmdet config (shipped name or path)")
        g.add_argument("--max-iters", type=int, help="fvlm: training iterations (default: the config's)")
        g.add_argument("--alpha", type=float, help="fvlm: VLM score weight for base categories")
        g.add_argument("--beta", type=float, help="fvlm: VLM score weight for novel categories")
        g.add_argument(
            "--det-weights", help="fvlm: evaluate this plain detector state dict instead of training"
        )
        g.add_argument(
            "--visualize", type=int, default=0, metavar="N", help="write N PNGs with labelled boxes"
        )
        g.add_argument(
            "--visualize-dir", help="where --visualize writes (default: det-ovcoco-vis/MODEL.PROTOCOL)"
        )
        g.add_argument("--work-dir", help="fvlm: where mmdet writes its files (default: a temporary folder)")

    def protocol_overrides(self, args: argparse.Namespace) -> dict[str, Any]:
        knobs = {k for protocol in PROTOCOLS.values() for k in protocol}
        return {k: getattr(args, k, None) for k in sorted(knobs)}

    def pin_protocol(self, protocol: dict[str, Any], encoder: Encoder, data_root: Path) -> dict[str, Any]:
        pinned = dict(protocol)
        split = resolve_split(protocol, data_root)
        source = Path(split.source)
        if source.is_absolute() and source.is_relative_to(data_root.resolve()):
            source = source.relative_to(data_root.resolve())  # the same protocol wherever the data lives
        pinned["split"], pinned["split_hash"] = str(source), split_hash(split)
        if "config" in protocol:
            path = resolve_config(protocol["config"])
            pinned["config"] = str(path)
            pinned["config_sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
        if protocol.get("det_weights"):
            weights = Path(protocol["det_weights"])
            if not weights.is_file():
                raise UserError(f"{weights}: detector weights not found")
            pinned["det_weights_sha256"] = hashlib.sha256(weights.read_bytes()).hexdigest()[:12]
        return pinned

    def preflight(self, data_root: Path) -> list[str]:
        needed = [data_root / VAL_ANNOTATIONS, data_root / "val2017"]
        return [f"{p}: not found (expected a COCO root)" for p in needed if not p.exists()]

    def evaluate(
        self, encoder: Encoder, data_root: Path, protocol: dict[str, Any], options: dict[str, Any]
    ) -> Evaluation:
        if encoder.patch_size is None:
            raise UserError(f"{encoder.name}: the encoder has no dense features (needed by det-ovcoco)")
        if protocol["templates"] not in TEMPLATE_SETS:
            raise UserError(
                f"templates {protocol['templates']!r}: expected one of {', '.join(TEMPLATE_SETS)}"
            )
        for problem in self.preflight(data_root):
            raise UserError(problem)
        split = resolve_split(protocol, data_root)
        if "config" in protocol:
            from benchmarks.detection import fvlm  # needs the OpenMMLab stack

            protocol = {**protocol, "config": str(resolve_config(protocol["config"]))}
            return fvlm.evaluate_fvlm(encoder, data_root, split, protocol, options)
        return self._evaluate_boxcls(encoder, data_root, split, protocol, options)

    def _evaluate_boxcls(
        self,
        encoder: Encoder,
        data_root: Path,
        split: OVSplit,
        protocol: dict[str, Any],
        options: dict[str, Any],
    ) -> Evaluation:
        val_path = data_root / VAL_ANNOTATIONS
        coco = load_coco(val_path)
        check_split(split, coco, val_path)
        if protocol["vocabulary"] not in ("ov", "all"):
            raise UserError(f"vocabulary {protocol['vocabulary']!r}: expected 'ov' or 'all'")
        vocabulary = (
            split.names if protocol["vocabulary"] == "ov" else tuple(c["name"] for c in coco["categories"])
        )
        samples = boxcls.gather_boxes(coco, data_root / "val2017", vocabulary)
        if not samples:
            raise UserError(
                f"{val_path}: no non-crowd box of a {protocol['vocabulary']} category to classify"
            )
        text = text_classifier(encoder, vocabulary, protocol["templates"])
        counts = boxcls.classify_boxes(
            encoder,
            samples,
            text,
            protocol["dense_mode"],
            protocol["input_size"],
            protocol["roi_size"],
            batch_size=int(options.get("batch_size") or 8),
        )
        metrics, detail = boxcls.summarize(counts, vocabulary, split.base, split.novel)
        num_boxes = int(counts.totals.sum())
        if options.get("visualize"):
            detail["visualizations"] = self._visualize_boxcls(
                samples, counts, vocabulary, set(split.novel), options, encoder.name
            )
        detail.update(boxes=num_boxes, images=len(samples), base=list(split.base), novel=list(split.novel))
        log.info(
            "boxcls: %d boxes in %d images; dense top-1 base %s novel %s",
            num_boxes,
            len(samples),
            metrics["dense_top1_base"],
            metrics["dense_top1_novel"],
        )
        return Evaluation(
            metrics, split="val2017", num_samples=num_boxes, images_processed=len(samples), extra=detail
        )

    def _visualize_boxcls(
        self, samples, counts, vocabulary, novel: set[str], options: dict[str, Any], model: str
    ) -> list[str]:
        out_dir = visualize_dir(options, model, "boxcls")
        written = []
        for s in samples[: int(options["visualize"])]:
            predicted = [vocabulary[i] for i in counts.predictions[s.image_id]]
            labels = [
                p if p == vocabulary[t] else f"{p} (gt {vocabulary[t]})"
                for p, t in zip(predicted, s.labels, strict=True)
            ]
            image = draw_boxes(
                boxcls.load_rgb(s.path), s.boxes.tolist(), labels, [p in novel for p in predicted]
            )
            written.append(str(save_png(image, out_dir / f"{s.image_id:012d}.png")))
        log.info("wrote %d visualizations to %s", len(written), out_dir)
        return written


def visualize_dir(options: dict[str, Any], model: str, protocol_name: str) -> Path:
    """Where ``--visualize`` PNGs go: ``options['visualize_dir']`` or ``det-ovcoco-vis/<model>.<protocol>``."""
    if options.get("visualize_dir"):
        return Path(options["visualize_dir"])
    return Path("det-ovcoco-vis") / f"{model}.{protocol_name}"


register(DetOVCocoHarness())
