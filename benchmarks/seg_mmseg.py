"""mmseg registrations for the segmentation harness: datasets with derived metainfo, a per-class IoU metric
that rejects out-of-range labels, and a hook writing image | ground truth | prediction panels."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
from mmengine.hooks import Hook
from mmseg.datasets import BaseSegDataset, COCOStuffDataset, PascalVOCDataset
from mmseg.evaluation import IoUMetric
from mmseg.registry import DATASETS, HOOKS, METRICS

from adapters.class_queries import read_names_file
from benchmarks.seg_areas import AREA_KEYS
from silc.errors import UserError
from silc.io import atomic_write


@DATASETS.register_module()
class SynthADE20KDataset(BaseSegDataset):
    """The ADE20K layout with the class list of ``<data_root>/classnames.txt`` (the synthetic world writes one
    name per line, label value k+1 = line k); 0 is "other" and ignored (``reduce_zero_label``)."""

    def __init__(
        self,
        data_root: str,
        classnames_file: str = "classnames.txt",
        img_suffix: str = ".jpg",
        seg_map_suffix: str = ".png",
        reduce_zero_label: bool = True,
        metainfo: dict | None = None,
        **kwargs: Any,
    ) -> None:
        names = read_names_file(Path(data_root) / classnames_file)
        metainfo = {"classes": tuple(synonyms[0] for synonyms in names), **(metainfo or {})}
        super().__init__(
            data_root=data_root,
            img_suffix=img_suffix,
            seg_map_suffix=seg_map_suffix,
            reduce_zero_label=reduce_zero_label,
            metainfo=metainfo,
            **kwargs,
        )


@DATASETS.register_module()
class PascalVOC20Dataset(PascalVOCDataset):
    """Pascal VOC 2012 without its background class (VOC-20): mmseg's classes/palette minus ``background``,
    so label 0 (background) and 255 (boundary) are ignored and k becomes k-1 (``reduce_zero_label``)."""

    METAINFO = {
        "classes": PascalVOCDataset.METAINFO["classes"][1:],
        "palette": PascalVOCDataset.METAINFO["palette"][1:],
    }

    def __init__(self, ann_file: str, reduce_zero_label: bool = True, **kwargs: Any) -> None:
        super().__init__(ann_file=ann_file, reduce_zero_label=reduce_zero_label, **kwargs)


@DATASETS.register_module()
class COCOObjectDataset(BaseSegDataset):
    """COCO-Object: COCO-Stuff-164k's 80 thing classes (mmseg's COCOStuffDataset classes/palette, first 80) after a
    ``background`` class that is scored (label 0: every stuff and unlabelled pixel), in the label maps
    ``<id>_instanceTrainIds.png`` that ``silc-bench data coco-object`` writes (``benchmarks/coco_object.py``)."""

    METAINFO = {
        "classes": ("background", *COCOStuffDataset.METAINFO["classes"][:80]),
        "palette": [[0, 0, 0], *COCOStuffDataset.METAINFO["palette"][:80]],
    }

    def __init__(
        self,
        img_suffix: str = ".jpg",
        seg_map_suffix: str = "_instanceTrainIds.png",
        reduce_zero_label: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            img_suffix=img_suffix,
            seg_map_suffix=seg_map_suffix,
            reduce_zero_label=reduce_zero_label,
            **kwargs,
        )


@METRICS.register_module()
class PerClassIoUMetric(IoUMetric):
    """mmseg's IoUMetric (same mIoU/aAcc/mAcc, and in ``unrounded`` their values before its 2-decimal rounding)
    that also keeps per-class IoU/Acc in ``per_class``, the per-image areas it summed in ``per_image``
    (:func:`per_image_areas`) with the images' paths in ``image_paths``, and fails with a UserError on ground-truth
    values outside ``[0, classes) + {ignore_index}`` (IoUMetric would drop them) and on label maps whose size
    differs from their image's. Each result carries its image's path, so that under a distributed test loop
    (each rank its images, mmengine's ``collect_results`` in dataset order) rank 0 knows every image's."""

    default_prefix = "seg"  # mmengine warns on every run when a metric has no prefix; run_config strips it

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.image_paths: list[str] = []  # of the images in ``results`` (set by ``compute_metrics``)
        self.per_image: dict[str, np.ndarray] = {}
        self.unrounded: dict[str, float] = {}

    def process(self, data_batch: Any, data_samples: Any) -> None:
        num_classes = len(self.dataset_meta["classes"])
        for sample in data_samples:
            label = sample["gt_sem_seg"]["data"]
            pred_shape = tuple(sample["pred_sem_seg"]["data"].shape[-2:])
            if tuple(label.shape[-2:]) != pred_shape:
                raise UserError(
                    f"{sample.get('seg_map_path', '<annotation>')}: label map is {tuple(label.shape[-2:])} "
                    f"(H, W) but its image is {pred_shape}"
                )
            bad = (label >= num_classes) & (label != self.ignore_index) | (label < 0)
            if bad.any():
                values = sorted({int(v) for v in label[bad].unique()[:5]})
                raise UserError(
                    f"{sample.get('seg_map_path', '<annotation>')}: label value(s) {values} out of range for "
                    f"{num_classes} classes (after reduce_zero_label={sample.get('reduce_zero_label')}; "
                    f"ignore index {self.ignore_index})"
                )
        super().process(data_batch, data_samples)
        if not self.format_only:  # IoUMetric appended one areas tuple per sample: add the sample's path
            added = self.results[len(self.results) - len(data_samples) :]
            self.results[len(self.results) - len(data_samples) :] = [
                (*areas, str(sample.get("img_path", "")))
                for areas, sample in zip(added, data_samples, strict=True)
            ]

    def compute_metrics(self, results: list) -> dict[str, float]:
        # mmengine clears ``results`` after this call: keep the per-image areas (the per-sample outcomes)
        self.image_paths = [result[-1] for result in results]
        results = [result[:-1] for result in results]
        self.per_image = per_image_areas(results)
        metrics = super().compute_metrics(results)
        intersect, union, pred_area, label_area = (sum(column) for column in zip(*results, strict=True))
        per_class = self.total_area_to_metrics(
            intersect, union, pred_area, label_area, ["mIoU"], self.nan_to_num, self.beta
        )
        self.per_class = {
            key: [None if np.isnan(v) else float(v) * 100 for v in np.asarray(per_class[key], dtype=float)]
            for key in ("IoU", "Acc")
        }
        # IoUMetric's summary before its np.round(..., 2): the same nanmean over the same per-class values
        self.unrounded = {
            key if key == "aAcc" else f"m{key}": float(np.nanmean(value) * 100)
            for key, value in per_class.items()
        }
        self.per_class["pixels"] = [int(v) for v in label_area]
        return metrics


def per_image_areas(results: list) -> dict[str, np.ndarray]:
    """IoUMetric's per-image results (one ``intersect_and_union`` tuple of float32 ``[C]`` histograms per image)
    as integer arrays ``[n_images, C]`` named by ``AREA_KEYS``: int32 when every count fits, else int64. The
    float32 histograms hold integers, so the arrays are exactly what mmseg sums (checked)."""
    if not results:
        return {}
    out = {}
    for key, column in zip(AREA_KEYS, zip(*results, strict=True), strict=True):
        values = np.stack([np.asarray(v.cpu() if hasattr(v, "cpu") else v) for v in column])
        if not (np.isfinite(values).all() and (values == np.floor(values)).all()):
            raise RuntimeError(f"IoUMetric's per-image {key} areas are not whole pixel counts")
        fits = np.abs(values).max(initial=0) <= np.iinfo(np.int32).max
        out[key] = values.astype(np.int32 if fits else np.int64)
    return out


@HOOKS.register_module()
class SegPanelHook(Hook):
    """Keep the ground truth and prediction of the first ``count`` test images (by dataset position, whichever rank
    runs them) in ``panels``, for :func:`write_panels`."""

    def __init__(self, count: int) -> None:
        self.count = count
        # (dataset position, image path, ground truth, prediction)
        self.panels: list[tuple[int, str, np.ndarray, np.ndarray]] = []
        self._positions: dict[str, int] | None = None

    def after_test_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if self._positions is None:
            dataset = runner.test_dataloader.dataset
            first = range(min(self.count, len(dataset)))
            self._positions = {dataset.get_data_info(i)["img_path"]: i for i in first}
        for sample in outputs or []:
            position = self._positions.get(sample.img_path)
            if position is not None:
                gt = sample.gt_sem_seg.data[0].cpu().numpy()
                pred = sample.pred_sem_seg.data[0].cpu().numpy()
                self.panels.append((position, sample.img_path, gt, pred))


def write_panels(
    panels: list[tuple[int, str, np.ndarray, np.ndarray]],
    out_dir: Path,
    classes,
    palette,
    max_legend: int = 24,
) -> list[Path]:
    """``<position>_<image stem>.png`` in ``out_dir`` for each of :class:`SegPanelHook`'s ``panels`` (of every
    rank), in dataset order: image | ground truth | prediction (:func:`render_panel`)."""
    unique = {position: rest for position, *rest in panels}  # mmengine's sampler may pad a rank with repeats
    return [
        render_panel(out_dir / f"{p:03d}_{Path(path).stem}.png", path, gt, pred, classes, palette, max_legend)
        for p, (path, gt, pred) in sorted(unique.items())
    ]


def render_panel(
    path: Path, image_path: str, gt: np.ndarray, pred: np.ndarray, classes, palette, max_legend: int = 24
) -> Path:
    """One PNG: the image, the ground truth and the prediction in the dataset palette (ignored pixels black),
    and a legend of the classes present (by pixel count)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch
    from PIL import Image

    colors = np.zeros((256, 3), dtype=np.uint8)
    colors[: len(palette)] = np.asarray(palette, dtype=np.uint8)
    image = np.asarray(Image.open(image_path).convert("RGB"))
    present = np.bincount(np.concatenate([gt[gt < len(classes)], pred.ravel()]), minlength=len(classes))
    shown = [k for k in np.argsort(-present, kind="stable") if present[k] > 0][:max_legend]
    fig = Figure(figsize=(12, 4.6), dpi=100)
    FigureCanvasAgg(fig)
    for ax, (title, array) in zip(
        fig.subplots(1, 3),
        (("image", image), ("ground truth", colors[gt]), ("prediction", colors[pred])),
        strict=True,
    ):
        ax.imshow(array, interpolation="nearest")
        ax.set_title(title)
        ax.axis("off")
    handles = [Patch(color=colors[k] / 255.0, label=str(classes[k]).strip()) for k in shown]
    fig.legend(
        handles=handles, loc="lower center", ncol=min(8, max(1, len(handles))), fontsize=8, frameon=False
    )
    fig.subplots_adjust(left=0.01, right=0.99, top=0.93, bottom=0.05 + 0.04 * (1 + len(handles) // 8))
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return atomic_write(path, lambda f: f.write(buffer.getvalue()))
