"""Zero-shot semantic segmentation on ADE20K (benchmark ``seg-ade20k``) through mmsegmentation; its protocols also
cover the ovss8 suite's Pascal VOC, Pascal Context, COCO-Object, COCO-Stuff and Cityscapes, each read from its
public layout (``benchmarks/seg_layouts.py``).

Loads the protocol's shipped mmseg config (``benchmarks/configs/mmseg/``: mmseg's ``ADE20KDataset`` with
``reduce_zero_label``, its test pipeline, our registered ``ZeroShotSegmentor``, ``IoUMetric``) with mmengine's
``Config.fromfile``, sets the protocol's knobs, the model, the data root and the run options on it as overrides
(``Config.merge_from_dict``), and runs ``mmengine.runner.Runner.test()``. The same files run under mmengine directly.

The harness is this module; its parts live beside it: the protocols and their knobs
(``benchmarks/seg_protocols.py``), the dataset on disk and its checks (``benchmarks/seg_dataset.py``), the mmseg
config and its run (``benchmarks/seg_config.py``), and the per-image areas and the metrics computed from them
(``benchmarks/seg_areas.py``).
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from adapters.encoder import DENSE_MODES, NACLIP_STD
from benchmarks.identity import PublicDataset
from benchmarks.options import HarnessOptions, option
from benchmarks.registry import Evaluation, Harness, collect_problems, register
from benchmarks.seg_areas import metrics_from_areas, per_class_extra, per_class_from_areas, seg_outcomes
from benchmarks.seg_config import images_per_batch, load_config, mm_missing, run_config
from benchmarks.seg_dataset import (
    ade20k_differences,
    check_label_sample,
    check_names_match,
    check_pairs,
    check_vocabulary,
    class_names_source,
    dataset_classes,
    dataset_root,
    decode_check,
    subset_ann_file,
)
from benchmarks.seg_layouts import layout_of, public_claims, reduces_zero_label
from benchmarks.seg_names import SHIPPED_NAMES, SHIPPED_PREFIX
from benchmarks.seg_protocols import PROTOCOLS, check_knobs, pinned_knobs
from silc.errors import UserError

if TYPE_CHECKING:
    import numpy as np

    from adapters.encoder import Encoder
    from benchmarks.records import ResultRecord
    from benchmarks.uncertainty import Outcomes


def _require_mm() -> None:
    missing = mm_missing()
    if missing:
        raise UserError(missing)


def run_timing(timing: dict[str, Any], check_s: float, text_s: float, loop_s: float) -> dict[str, Any]:
    """The record's ``extra.timing``: the decode check, the prompt embeddings and mmengine's test loop (seconds),
    and the segmentor's own ``timing`` inside the loop (encoder, decode, predict, windows, images)."""
    return {
        "decode_check_s": round(check_s, 3),
        "text_embeddings_s": round(text_s, 3),
        "test_loop_s": round(loop_s, 3),
        "encoder_s": round(timing["encoder_s"], 3),
        "decode_s": round(timing["decode_s"], 3),
        "predict_s": round(timing["predict_s"], 3),
        "encoder_share_of_loop": round(timing["encoder_s"] / loop_s, 4) if loop_s else None,
        "windows": timing["windows"],
        "images_per_s_loop": round(timing["images"] / loop_s, 3) if loop_s else None,
    }


@dataclass
class SegOptions(HarnessOptions):
    """Options of ``seg-ade20k`` (``batch_size``: slide windows per encoder forward, default 64)."""

    dense_mode: str | None = option(None, "dense feature mode", knob=True, choices=DENSE_MODES)
    naclip_std: float | None = option(
        None,
        f"std in patches of dense mode naclip's Gaussian attention prior (default {NACLIP_STD:g})",
        knob=True,
    )
    pamr_iterations: int | None = option(
        None,
        "refine the logits with N PAMR steps guided by the image (NACLIP: 10; default: no PAMR)",
        knob=True,
        metavar="N",
    )
    pamr_dilations: list[int] | None = option(
        None, "PAMR neighbourhood dilations in pixels (default 8 16)", knob=True, metavar="D"
    )
    names: str | None = option(
        None,
        "class names file, one class per line, synonyms comma-separated, or a shipped list: "
        + ", ".join(f"{SHIPPED_PREFIX}{name}" for name in SHIPPED_NAMES),
        knob=True,
        metavar="FILE",
    )
    templates: str | None = option(None, "openai80, simple7, identity or a templates file", knob=True)
    short_side: int | None = option(None, "resize the short side to this", knob=True)
    crop: int | None = option(None, "slide window size in pixels", knob=True)
    stride: int | None = option(None, "slide window step in pixels", knob=True)
    logit_scale: float | None = option(None, "cosine logit multiplier", knob=True)
    bg_threshold: float | None = option(
        None, "top-class probability below which a pixel is class 0", knob=True
    )
    area_threshold: float | None = option(
        None,
        "SCLIP's area filter (protocols with a background class): a class predicted on at most this fraction of "
        "the non-background pixels is dropped",
        knob=True,
        metavar="F",
    )
    visualize: int = option(
        0, "write N image | ground truth | prediction PNGs into the record's folder", metavar="N"
    )
    save_predictions: bool = option(
        False, "write every prediction as a label PNG (dataset label values) into the record's folder"
    )


class SegADE20K(Harness):
    name = "seg-ade20k"
    description = (
        "semantic segmentation, zero-shot or dense linear probing: mIoU, aAcc, mAcc (mmseg IoUMetric)"
    )
    protocols = PROTOCOLS
    default_protocol = "ade-448"
    options_type = SegOptions
    key_metrics = ("mIoU", "aAcc", "mAcc")
    table_order = 40
    metric_scale = "percent"
    public_datasets = {"ade20k": PublicDataset("ADE20K-150", ade20k_differences), **public_claims()}

    def preflight(
        self, data_root: Path, protocol: dict[str, Any], options: HarnessOptions, device: str
    ) -> list[str]:
        """The knobs, the OpenMMLab stack, the templates, the image/label pairs, the class names (never ADE20K's on a
        folder with its own vocabulary) and the label values of a sample of label maps (a probe protocol: also of
        its training split)."""
        from silc.kernel import resolve_templates

        if protocol.get("method"):
            from benchmarks.seg_linear import preflight_probe

            return preflight_probe(data_root, protocol)

        mm = mm_missing()
        problems = collect_problems(lambda: check_knobs(protocol)) + ([mm] if mm else [])
        problems += collect_problems(lambda: resolve_templates(protocol["templates"]))
        try:
            layout = layout_of(protocol["dataset"])
            root = layout.root(data_root)
            check_pairs(root, protocol["split"], layout)
        except UserError as e:
            return [*problems, str(e)]
        if mm:  # the class lists below come from mmseg
            return problems
        try:
            classes = dataset_classes(protocol, root)
        except UserError as e:
            return [*problems, str(e)]
        return problems + collect_problems(
            lambda: check_vocabulary(protocol, root),
            lambda: check_names_match(protocol, root, classes),
            lambda: check_label_sample(
                root,
                protocol["split"],
                len(classes),
                layout=layout,
                reduce_zero_label=reduces_zero_label(protocol["dataset"]),
            ),
        )

    def pin_protocol(self, protocol: dict[str, Any], encoder: Encoder, data_root: Path) -> dict[str, Any]:
        """Add the template and class-name hashes (what the prompts were) to the protocol (a probe protocol: the
        hash of the classes its head is trained on)."""
        _require_mm()
        if protocol.get("method"):
            from benchmarks.seg_linear import pin_probe

            return pin_probe(protocol, encoder, data_root)
        from adapters.class_queries import names_sha256
        from adapters.mmseg import class_names_from
        from silc.kernel import resolve_templates

        check_knobs(protocol)
        root = dataset_root(data_root, protocol)
        check_vocabulary(protocol, root)
        classes = class_names_from(class_names_source(protocol, root))
        templates = resolve_templates(protocol["templates"])
        return {
            **pinned_knobs(protocol),
            "templates_count": len(templates.texts),
            "templates_sha256": templates.sha256,
            "names_count": len(classes),
            "names_sha256": names_sha256(classes),
        }

    def evaluate(
        self,
        encoder: Encoder,
        data_root: Path,
        protocol: dict[str, Any],
        options: SegOptions,
        artefacts: Path,
    ) -> Evaluation:
        _require_mm()
        if protocol.get("method"):
            from benchmarks.seg_linear import evaluate_probe

            return evaluate_probe(
                encoder, data_root, self.pin_protocol(protocol, encoder, data_root), options
            )
        import adapters.mmseg  # noqa: F401  (registers ZeroShotSegmentor)
        import benchmarks.seg_mmseg  # noqa: F401  (registers datasets, metric, hook)
        from adapters.mmseg import ZeroShotSegmentor
        from benchmarks import sharding
        from benchmarks.features import encode_texts, settings_from_options
        from benchmarks.seg_mmseg import SegPanelHook, write_panels

        protocol = self.pin_protocol(protocol, encoder, data_root)
        layout = layout_of(protocol["dataset"])
        root = layout.root(data_root)
        check_pairs(root, protocol["split"], layout)
        if protocol["dense_mode"] not in encoder.dense_modes:
            raise UserError(
                f"encoder {encoder.name!r} does not support dense mode {protocol['dense_mode']!r}"
            )
        classes = dataset_classes(protocol, root)
        check_names_match(protocol, root, classes)
        kept, skipped, check_s = decode_check(root, protocol["split"], options.skip_bad_images, layout)
        workers = options.workers
        windows = options.batch_size or 64
        cfg = load_config(
            protocol,
            encoder.spec,
            root,
            workers=int(workers) if workers is not None else min(4, os.cpu_count() or 1),
            max_windows_per_forward=windows,
            images_per_batch=images_per_batch(protocol, windows),
            output_dir=str(artefacts / "predictions") if options.save_predictions else None,
        )
        if skipped:  # written by rank 0, read by every rank
            cfg["test_dataloader"]["dataset"]["ann_file"] = sharding.on_main(
                lambda: subset_ann_file(artefacts, kept)
            )
        settings = settings_from_options(options, "fp32")  # prompt embeddings come from the shared cache
        start = time.perf_counter()
        model = ZeroShotSegmentor(
            **{k: v for k, v in cfg["model"].items() if k not in ("type", "encoder")},
            encoder=encoder,
            text_embedder=lambda texts: encode_texts(encoder, texts, settings, desc="prompts").tensor,
        )
        text_s = time.perf_counter() - start
        hooks = [SegPanelHook(options.visualize)] if options.visualize else []
        with tempfile.TemporaryDirectory(prefix="silc-seg-") as work_dir:
            start = time.perf_counter()
            metrics, runner = run_config(cfg, model, work_dir, hooks)
            loop_s = time.perf_counter() - start
        # under torchrun each rank ran its share of the images: their panels and counts are gathered
        panels = (
            [panel for part in sharding.gather_objects(hooks[0].panels) for panel in part] if hooks else None
        )
        counted = sharding.gather_objects({key: model.timing[key] for key in ("images", "windows")})
        timing = {**model.timing, **{key: sum(part[key] for part in counted) for key in counted[0]}}
        # rank 0's metric holds every image's areas (mmengine collects them there): every rank takes a copy
        metric = sharding.on_main(lambda: runner.test_evaluator.metrics[0])
        names = [synonyms[0] for synonyms in classes]
        outcomes = seg_outcomes(metric, root, names)
        if len(outcomes.units) != len(kept):
            raise RuntimeError(
                f"{self.name}: {len(outcomes.units)} per-image outcomes for {len(kept)} images"
            )
        extra = {
            **per_class_extra(names, metric.per_class),
            "iou_metric_rounded": {key: float(metrics[key]) for key in ("mIoU", "aAcc", "mAcc")},
            "mmseg_config": cfg,
            "timing": run_timing(timing, check_s=check_s, text_s=text_s, loop_s=loop_s),
        }
        if panels is not None:  # of every rank, drawn by rank 0
            meta = runner.test_dataloader.dataset.metainfo
            written = sharding.on_main(
                lambda: write_panels(panels, artefacts / "visualize", meta["classes"], meta["palette"])
            )
            extra["visualizations"] = [str(p) for p in written]
        if options.save_predictions:
            extra["predictions_dir"] = str(artefacts / "predictions")
        return Evaluation(
            metrics={key: metric.unrounded[key] for key in ("mIoU", "aAcc", "mAcc")},
            split=protocol["split"],
            num_samples=len(kept),
            images_processed=timing["images"],
            extra=extra,
            outcomes=outcomes,
            skipped_images=skipped,
        )

    def metrics_from_counts(self, arrays: dict[str, np.ndarray], counts: np.ndarray) -> dict[str, np.ndarray]:
        """mIoU, aAcc and mAcc (percent, unrounded: mmseg's IoUMetric values before its 2-decimal rounding) of
        each resample, from the count-weighted sums over images of the intersection, union and label areas (see
        :func:`metrics_from_areas`; not a mean of per-image IoUs)."""
        return metrics_from_areas(arrays, counts)

    def per_class_from_counts(
        self, arrays: dict[str, np.ndarray], counts: np.ndarray, metric: str = "IoU"
    ) -> np.ndarray:
        """Per-class IoU (``metric="Acc"``: accuracy) in percent, unrounded, of each resample: ``[B, C]`` with
        NaN where a class's denominator is 0, classes in the order of ``arrays["classes"]``. With all counts 1
        it equals the record's ``extra["per_class_iou"]`` (``per_class_acc``), None there being NaN here. For
        per-class intervals and paired per-class deltas (same ``counts`` for both models)."""
        return per_class_from_areas(arrays, counts, metric)

    def chance(self, record: ResultRecord, outcomes: Outcomes | None) -> dict[str, float]:
        """Uniform random labels for the valid pixels, in percent: with C classes and p_c each class's share of
        the label pixels (the outcomes' summed label areas), aAcc = 1/C; mAcc = 1/C (the mean over the labelled
        classes; the metric's ``nan_to_num`` for the others when it has one); mIoU = the mean over all C classes
        of E[I]/E[U] = p_c / (C p_c + 1 - p_c), 0 for a class with predictions but no label pixels."""
        import numpy as np

        if outcomes is None:
            return {}
        label = outcomes.arrays["label"].astype(np.float64).sum(axis=0)
        if label.sum() == 0:
            return {}
        c, share = label.size, label / label.sum()
        acc = np.where(share > 0, 1 / c, float(outcomes.arrays["nan_to_num"]))
        return {
            "mIoU": float(np.mean(share / (c * share + 1 - share))) * 100,
            "aAcc": 100 / c,
            "mAcc": float(np.nanmean(acc)) * 100,
        }


register(SegADE20K())
