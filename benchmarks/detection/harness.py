"""The ``det-ovcoco`` harness: COCO open-vocabulary detection, training-free (``boxcls``) or F-VLM (``fvlm``)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from adapters.encoder import DENSE_MODES
from benchmarks.identity import COCO_CATEGORIES, COCO_VAL_IMAGES, PublicDataset
from benchmarks.options import HarnessOptions, option
from benchmarks.ov_coco import OVSplit, check_split, load_coco, load_split
from benchmarks.registry import Evaluation, Harness, collect_problems, register
from silc.errors import UserError, listed
from silc.kernel.templates import TEMPLATE_NAMES

if TYPE_CHECKING:
    import numpy as np

    from adapters.encoder import Encoder
    from benchmarks.records import ResultRecord
    from benchmarks.uncertainty import Outcomes

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


def split_source(split: OVSplit, data_root: Path) -> str:
    """Where a split came from: relative to the data root when it lies inside it (the same protocol wherever the
    data lives), else as loaded."""
    source = Path(split.source)
    if source.is_absolute() and source.is_relative_to(data_root.resolve()):
        source = source.relative_to(data_root.resolve())
    return str(source)


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


def config_sha256(path: Path) -> str:
    """Short hash of the config mmengine builds from ``path``, its ``_base_`` files included (the shipped configs
    keep most of what they share in ``_fvlm_base.py``), so that a change to any of them changes the protocol."""
    from mmengine.config import Config  # fvlm needs the OpenMMLab stack anyway

    cfg = Config.fromfile(str(path), import_custom_modules=False).to_dict()
    return hashlib.sha256(json.dumps(cfg, sort_keys=True, default=repr).encode()).hexdigest()[:12]


def ov_coco_differences(data_root: Path, protocol: dict[str, Any]) -> list[str]:
    """How ``data_root`` under ``protocol`` differs from OV-COCO on val2017: instances_val2017.json with 5,000
    images and the 80 categories, the public 48 base / 17 novel split (whichever file holds it: the same base and
    novel names, in any order), all of its names among the categories."""
    coco = load_coco(data_root / VAL_ANNOTATIONS)
    out = []
    if len(coco["images"]) != COCO_VAL_IMAGES:
        out.append(f"{len(coco['images']):,} images in {VAL_ANNOTATIONS} (expected {COCO_VAL_IMAGES:,})")
    if len(coco["categories"]) != COCO_CATEGORIES:
        out.append(f"{len(coco['categories'])} categories (expected {COCO_CATEGORIES})")
    split, public = resolve_split(protocol, data_root), load_split(None)
    if (set(split.base), set(split.novel)) != (set(public.base), set(public.novel)):
        out.append(
            f"split {split_source(split, data_root)} (expected the public OV-COCO {len(public.base)} base / "
            f"{len(public.novel)} novel)"
        )
    known = {c["name"] for c in coco["categories"]}
    missing = [n for n in public.names if n not in known]
    if missing:
        out.append(f"{len(missing)} of the {len(public.names)} OV-COCO categories missing: {listed(missing)}")
    return out


def check_fvlm_run(protocol: dict[str, Any], device: str, trains: bool) -> None:
    """fvlm needs the OpenMMLab stack, its config, the detector weights it is given, and, when it trains, the
    device its config requires: a config declares ``silc_bench_requires = {"train_device": "cuda"}`` (read with
    its ``_base_`` files), and training it elsewhere is refused. It runs in one process: under torchrun mmengine
    would train on the ranks' process group (another batch, so another detector than one process trains), and
    it cannot run on rank 0 alone while that group exists (its sampler and broadcasts use it)."""
    from benchmarks.sharding import rank_and_world

    ranks = rank_and_world()[1]
    if ranks > 1:
        raise UserError(
            f"det-ovcoco fvlm runs in one process, not under torchrun ({ranks} ranks): run it without torchrun "
            "(a multi-GPU recipe trains with mmdet's tools/train.py under torchrun; evaluate its weights with "
            "--det-weights in one process)"
        )
    try:
        import mmdet  # noqa: F401
        import mmengine  # noqa: F401
    except ImportError as e:
        raise UserError(
            f"det-ovcoco fvlm needs the OpenMMLab stack ({e}); install it with `bash scripts/install-mm.sh`"
        ) from e
    from mmengine.config import Config

    path = resolve_config(protocol["config"])
    if protocol["det_weights"] and not Path(protocol["det_weights"]).is_file():
        raise UserError(f"{protocol['det_weights']}: detector weights not found")
    needs = dict(Config.fromfile(str(path), import_custom_modules=False).get("silc_bench_requires") or {})
    wanted = needs.get("train_device")
    if trains and wanted and not str(device).startswith(wanted):
        raise UserError(
            f"{path.name}: a {wanted} training recipe (its silc_bench_requires), not for {device}: run it with "
            f"--device {wanted} on a machine that has one, or evaluate trained weights with --det-weights FILE"
        )


@dataclass
class DetOptions(HarnessOptions):
    """Options of ``det-ovcoco`` (``batch_size``: images per encoder batch for boxcls, default 8)."""

    split: str | None = option(None, "OV split JSON {base: [...], novel: [...]} (default: auto)", knob=True)
    vocabulary: str | None = option(
        None, "boxcls: classify among base+novel or all", knob=True, choices=("ov", "all")
    )
    templates: str | None = option(
        None, "prompt templates for the category names", knob=True, choices=TEMPLATE_NAMES
    )
    dense_mode: str | None = option(None, "encode_dense mode", knob=True, choices=DENSE_MODES)
    input_size: int | None = option(None, "boxcls: square input size for encode_dense", knob=True)
    config: str | None = option(None, "fvlm: mmdet config (shipped name or path)", knob=True)
    max_iters: int | None = option(None, "fvlm: training iterations (default: the config's)", knob=True)
    alpha: float | None = option(None, "fvlm: VLM score weight for base categories", knob=True)
    beta: float | None = option(None, "fvlm: VLM score weight for novel categories", knob=True)
    det_weights: str | None = option(
        None, "fvlm: evaluate this plain detector state dict instead of training", knob=True
    )
    visualize: int = option(0, "write N PNGs with labelled boxes into the record's folder", metavar="N")
    work_dir: str | None = option(None, "fvlm: where mmdet writes its files (default: a temporary folder)")


class DetOVCocoHarness(Harness):
    name = "det-ovcoco"
    description = "COCO open-vocabulary detection (48 base / 17 novel): box classification or F-VLM detector"
    protocols = PROTOCOLS
    default_protocol = "boxcls"
    options_type = DetOptions
    key_metrics = (
        "dense_top1_novel",
        "dense_top1_base",
        "crop_top1_novel",
        "crop_top1_base",
        "AP50_novel",
        "AP50_base",
        "AP50",
    )
    table_order = 50
    metric_scale = "percent"
    public_datasets = {"coco-ov": PublicDataset("OV-COCO (val2017)", ov_coco_differences)}

    def pin_protocol(self, protocol: dict[str, Any], encoder: Encoder, data_root: Path) -> dict[str, Any]:
        pinned = dict(protocol)
        split = resolve_split(protocol, data_root)
        pinned["split"], pinned["split_hash"] = split_source(split, data_root), split_hash(split)
        if "config" in protocol:
            path = resolve_config(protocol["config"])
            pinned["config"] = str(path)
            pinned["config_sha256"] = config_sha256(path)
        if protocol.get("det_weights"):
            weights = Path(protocol["det_weights"])
            if not weights.is_file():
                raise UserError(f"{weights}: detector weights not found")
            pinned["det_weights_sha256"] = hashlib.sha256(weights.read_bytes()).hexdigest()[:12]
        return pinned

    def preflight(
        self, data_root: Path, protocol: dict[str, Any], options: HarnessOptions, device: str
    ) -> list[str]:
        """The COCO files (fvlm training: the train set too), the annotation schema, the OV split against the
        file's categories, the images on disk, the knobs; fvlm: the OpenMMLab stack, the config and the device it
        requires (its ``silc_bench_requires``), the detector weights."""
        trains = "config" in protocol and not protocol["det_weights"]
        needed = [data_root / VAL_ANNOTATIONS, data_root / "val2017"]
        needed += [data_root / TRAIN_ANNOTATIONS, data_root / "train2017"] if trains else []
        problems = [f"{p}: not found (expected a COCO root)" for p in needed if not p.exists()]
        if protocol["templates"] not in TEMPLATE_NAMES:
            problems.append(
                f"templates {protocol['templates']!r}: expected one of {', '.join(TEMPLATE_NAMES)}"
            )
        if protocol.get("vocabulary", "ov") not in ("ov", "all"):
            problems.append(f"vocabulary {protocol['vocabulary']!r}: expected 'ov' or 'all'")
        if "config" in protocol:
            problems += collect_problems(lambda: check_fvlm_run(protocol, device, trains))
        if not (data_root / VAL_ANNOTATIONS).is_file():
            return problems
        try:
            coco = load_coco(data_root / VAL_ANNOTATIONS)
        except UserError as e:
            return [*problems, str(e)]
        problems += collect_problems(
            lambda: check_split(resolve_split(protocol, data_root), coco, data_root / VAL_ANNOTATIONS)
        )
        images = [img["file_name"] for img in coco["images"]] if (data_root / "val2017").is_dir() else []
        missing = [f for f in images if not (data_root / "val2017" / f).is_file()]
        if missing:
            problems.append(
                f"{data_root / 'val2017'}: {len(missing):,} of the {len(images):,} images of {VAL_ANNOTATIONS} "
                f"missing: {listed(missing)}"
            )
        return problems

    def evaluate(
        self,
        encoder: Encoder,
        data_root: Path,
        protocol: dict[str, Any],
        options: DetOptions,
        artefacts: Path,
    ) -> Evaluation:
        if encoder.patch_size is None:
            raise UserError(f"{encoder.name}: the encoder has no dense features (needed by det-ovcoco)")
        if protocol["templates"] not in TEMPLATE_NAMES:
            raise UserError(
                f"templates {protocol['templates']!r}: expected one of {', '.join(TEMPLATE_NAMES)}"
            )
        for problem in self.preflight(data_root, protocol, options, str(encoder.device)):
            raise UserError(problem)
        split = resolve_split(protocol, data_root)
        if "config" in protocol:
            from benchmarks.detection import fvlm  # needs the OpenMMLab stack

            protocol = {**protocol, "config": str(resolve_config(protocol["config"]))}
            return fvlm.evaluate_fvlm(
                encoder,
                data_root,
                split,
                protocol,
                artefacts,
                options.work_dir,
                options.visualize,
                options.skip_bad_images,
            )
        return self._evaluate_boxcls(encoder, data_root, split, protocol, options, artefacts)

    def _evaluate_boxcls(
        self,
        encoder: Encoder,
        data_root: Path,
        split: OVSplit,
        protocol: dict[str, Any],
        options: DetOptions,
        artefacts: Path,
    ) -> Evaluation:
        from adapters.open_vocab import text_classifier
        from benchmarks import sharding
        from benchmarks.detection import boxcls
        from benchmarks.uncertainty import Outcomes

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
        samples, skipped = boxcls.without_bad_images(samples, data_root, options.skip_bad_images)
        text = text_classifier(encoder, vocabulary, protocol["templates"])
        batch = options.batch_size or 8
        mine = sharding.shard(len(samples), batch)  # under torchrun each rank its batches, gathered in order
        part = boxcls.classify_boxes(
            encoder,
            samples[mine.start : mine.stop],
            text,
            protocol["dense_mode"],
            protocol["input_size"],
            protocol["roi_size"],
            batch_size=batch,
            first=mine.start,
        )
        counts = boxcls.merged(sharding.gather_objects(part))
        metrics, detail = boxcls.summarize(counts, vocabulary, split.base, split.novel)
        num_boxes = int(counts.totals.sum())
        if options.visualize:  # drawn by rank 0
            detail["visualizations"] = sharding.on_main(
                lambda: self._visualize_boxcls(
                    samples, counts, vocabulary, set(split.novel), options.visualize, artefacts / "visualize"
                )
            )
        detail.update(boxes=num_boxes, images=len(samples), base=list(split.base), novel=list(split.novel))
        outcomes = Outcomes(
            "image with its boxes",
            [os.path.relpath(s.path, data_root) for s in samples],
            boxcls.box_outcomes(counts, vocabulary, split.base, split.novel),
        )
        log.info(
            "boxcls: %d boxes in %d images; dense top-1 base %s novel %s",
            num_boxes,
            len(samples),
            metrics["dense_top1_base"],
            metrics["dense_top1_novel"],
        )
        return Evaluation(
            metrics,
            split="val2017",
            num_samples=num_boxes,
            images_processed=len(samples),
            extra=detail,
            outcomes=outcomes,
            skipped_images=skipped,
        )

    def metrics_from_counts(self, arrays: dict[str, np.ndarray], counts: np.ndarray) -> dict[str, np.ndarray]:
        """boxcls: mean per-class accuracy over the drawn images' boxes (:func:`boxcls.metrics_from_counts`);
        fvlm: COCOeval re-accumulated over the drawn images (:func:`cocoeval.metrics_from_counts`)."""
        if "box_class" in arrays:
            from benchmarks.detection import boxcls

            return boxcls.metrics_from_counts(arrays, counts)
        from benchmarks.detection import cocoeval

        return cocoeval.metrics_from_counts(arrays, counts)

    def chance(self, record: ResultRecord, outcomes: Outcomes | None) -> dict[str, float]:
        """boxcls: every box classified among the V classes of the vocabulary (``class_base`` of the outcomes:
        base + novel for ``vocabulary: ov``, every annotated category for ``all``), so each class's top-k
        accuracy, and any mean of them, is min(k, V)/V (percent); AP (fvlm) has no chance level."""
        if outcomes is None or "box_class" not in outcomes.arrays:
            return {}
        size = len(outcomes.arrays["class_base"])
        out = {}
        for name, value in record.metrics.items():
            match = re.fullmatch(r"(?:dense|crop)_top(\d+)_(?:base|novel|all)", name)
            if match and value is not None:
                out[name] = min(int(match.group(1)), size) / size * 100
        return out

    def max_resamples(self, arrays: dict[str, np.ndarray]) -> int | None:
        """AP re-accumulates COCOeval per resample (seconds each on real COCO): at most
        :data:`cocoeval.MAX_RESAMPLES` for fvlm; boxcls takes every resample asked for."""
        if "box_class" in arrays:
            return None
        from benchmarks.detection.cocoeval import MAX_RESAMPLES

        return MAX_RESAMPLES

    def _visualize_boxcls(
        self, samples, counts, vocabulary, novel: set[str], count: int, out_dir: Path
    ) -> list[str]:
        from benchmarks.detection import boxcls
        from benchmarks.detection.visualize import draw_boxes, save_png

        written = []
        for s in samples[:count]:
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


register(DetOVCocoHarness())
