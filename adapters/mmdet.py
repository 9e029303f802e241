"""mmdetection glue for an F-VLM-style open-vocabulary detector on a frozen Encoder.

Registered in mmdet's registries (import this module through ``custom_imports``):

- ``FrozenEncoderPyramid`` (MODELS): a frozen encoder's ``encode_dense`` map turned into a ViTDet-style simple
  feature pyramid (deconvolutions / identity / max-pool from the stride-``p`` map).
- ``TextEmbeddingBBoxHead`` (MODELS): a shared-FC box head with class-agnostic regression whose classifier is the
  cosine similarity to the category text embeddings plus a learned background embedding; at test time its
  scores are the F-VLM geometric ensemble with the VLM's own region scores.
- ``FVLM`` (MODELS): the two-stage detector (RPN + RoI head) that owns the vocabularies: base categories while
  training, base + novel at test time.
- ``OVCocoDataset`` (DATASETS): mmdet's CocoDataset with its classes from an OV split file.
- ``PlainStateDictHook`` (HOOKS): saves the trained detector as a plain state dict (``torch.load`` with
  ``weights_only=True`` reads it back; mmengine's own checkpoints hold objects that safe loading refuses).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from mmdet.datasets import CocoDataset
from mmdet.datasets.api_wrappers import COCO
from mmdet.models.detectors import TwoStageDetector
from mmdet.models.layers import multiclass_nms
from mmdet.models.roi_heads.bbox_heads import Shared2FCBBoxHead
from mmdet.models.utils import empty_instances
from mmdet.registry import DATASETS, HOOKS, MODELS
from mmdet.structures.bbox import get_box_tensor, scale_boxes
from mmengine.hooks import Hook
from mmengine.model import BaseModule
from mmengine.structures import InstanceData
from torch import Tensor, nn

from adapters.encoder import Encoder
from adapters.open_vocab import region_embeddings, text_classifier
from silc.errors import UserError

WEIGHTS_FILE = "fvlm_detector.pt"
_ENCODERS: dict[str, Encoder] = {}  # live encoders (``live:<n>``) and encoders loaded from specs, by key


@contextlib.contextmanager
def live_encoder(encoder: Encoder) -> Iterator[str]:
    """Make an in-memory encoder usable from a config: yields the key to put in ``backbone.encoder``."""
    key = f"live:{id(encoder)}"
    _ENCODERS[key] = encoder
    try:
        yield key
    finally:
        _ENCODERS.pop(key, None)


def resolve_encoder(spec: str, device: str | None = None) -> Encoder:
    """A live encoder's key, or an encoder spec loaded once per process (frozen, on ``device``)."""
    if spec not in _ENCODERS:
        if spec.startswith("live:"):
            raise KeyError(f"{spec}: no live encoder under this key (use adapters.mmdet.live_encoder)")
        from adapters import load_encoder

        _ENCODERS[spec] = load_encoder(
            spec, device=device or ("cuda" if torch.cuda.is_available() else "cpu")
        )
    return _ENCODERS[spec]


def read_split(path: str | os.PathLike) -> tuple[list[str], list[str], list[str]]:
    """(base, novel, labels) from an OV split JSON ``{"base": [...], "novel": [...], "labels": [...]}``.

    ``labels`` is the order of the categories in the annotation files (``silc-bench data ov-coco`` writes it:
    ascending category id); without it, base then novel."""
    try:
        obj = json.loads(Path(path).read_text(encoding="utf-8"))
        base, novel = list(obj["base"]), list(obj["novel"])
        labels = list(obj.get("labels") or base + novel)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UserError(
            f"{path}: expected an OV split JSON with 'base' and 'novel' name lists ({e})"
        ) from None
    if sorted(labels) != sorted(base + novel):
        raise UserError(f"{path}: 'labels' must list the base and novel categories, each once")
    return base, novel, labels


class _LayerNorm2d(nn.Module):
    """LayerNorm over the channels of a ``[B, C, H, W]`` map (ViTDet's pyramid norm)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


@MODELS.register_module()
class FrozenEncoderPyramid(BaseModule):
    """A frozen encoder's dense map ``[B, D, H/p, W/p]`` -> feature maps at strides ``p / scale``.

    ``scales`` as in ViTDet's simple pyramid: 4 and 2 upsample by transposed convolutions, 1 is the map itself,
    0.5 max-pools; each level then gets a 1x1 and a 3x3 convolution with channel LayerNorm. The encoder's
    weights are never part of this module's parameters or state dict."""

    def __init__(
        self,
        encoder: str,
        dense_mode: str = "naive",
        out_channels: int = 256,
        scales: tuple[float, ...] = (4.0, 2.0, 1.0, 0.5),
        device: str | None = None,
        init_cfg: dict | None = None,
    ) -> None:
        super().__init__(init_cfg=init_cfg)
        self.encoder = resolve_encoder(encoder, device)
        if self.encoder.patch_size is None:
            raise UserError(
                f"{self.encoder.name}: the encoder has no dense features (needed by the detector)"
            )
        self.dense_mode = dense_mode
        self.patch_size = self.encoder.patch_size
        self.strides = [self.patch_size / s for s in scales]
        dim = self.encoder.embed_dim
        self.levels = nn.ModuleList(self._level(dim, scale, out_channels) for scale in scales)

    @staticmethod
    def _level(dim: int, scale: float, out_channels: int) -> nn.Sequential:
        if scale == 4.0:
            half = max(dim // 2, 1)
            quarter = max(dim // 4, 1)
            resample = [nn.ConvTranspose2d(dim, half, 2, 2), _LayerNorm2d(half), nn.GELU(),
                        nn.ConvTranspose2d(half, quarter, 2, 2)]  # fmt: skip
            width = quarter
        elif scale == 2.0:
            resample, width = [nn.ConvTranspose2d(dim, max(dim // 2, 1), 2, 2)], max(dim // 2, 1)
        elif scale == 1.0:
            resample, width = [], dim
        elif scale == 0.5:
            resample, width = [nn.MaxPool2d(2, 2)], dim
        else:
            raise ValueError(f"pyramid scale {scale}: expected 4, 2, 1 or 0.5")
        return nn.Sequential(
            *resample,
            nn.Conv2d(width, out_channels, 1, bias=False),
            _LayerNorm2d(out_channels),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            _LayerNorm2d(out_channels),
        )

    @torch.no_grad()
    def dense(self, images: Tensor) -> Tensor:
        """The frozen encoder's dense map of a batch of normalised images, on the images' device."""
        out = self.encoder.encode_dense(images.to(self.encoder.device), mode=self.dense_mode)
        return out.to(images.device, torch.float32).clone()  # a normal tensor, even from inference mode

    def pyramid(self, dense: Tensor) -> tuple[Tensor, ...]:
        return tuple(level(dense) for level in self.levels)

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        return self.pyramid(self.dense(images))


@MODELS.register_module()
class TextEmbeddingBBoxHead(Shared2FCBBoxHead):
    """Shared-FC RoI head whose class logits are cosine similarities to text embeddings (and a learned
    background embedding) divided by ``temperature``; ``fc_cls`` projects RoI features into the joint space.

    The detector sets the vocabulary (:meth:`use_vocabulary`) and, while predicting, the VLM context (the
    frozen dense map) used for the F-VLM ensemble: ``s = s_det^(1-w) * s_vlm^w``, ``w`` = alpha for base and
    beta for novel categories."""

    def __init__(self, embed_dim: int, temperature: float = 0.01, **kwargs: Any) -> None:
        kwargs.setdefault("reg_class_agnostic", True)
        super().__init__(**kwargs)
        self.temperature = temperature
        self.fc_cls = nn.Linear(self.cls_last_dim, embed_dim)
        self.background = nn.Parameter(F.normalize(torch.randn(embed_dim), dim=0))
        self.vocabulary: Tensor | None = None
        self.vlm: dict[str, Any] | None = None

    def use_vocabulary(self, embeddings: Tensor, vlm: dict[str, Any] | None = None) -> None:
        """Classify against ``embeddings [C, D]``; ``vlm`` (dense, stride, novel mask, alpha, beta, scale) turns
        on the test-time ensemble."""
        self.vocabulary = embeddings
        self.num_classes = embeddings.shape[0]
        self.vlm = vlm

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        projected, bbox_pred = super().forward(x)
        classes = torch.cat([self.vocabulary, F.normalize(self.background, dim=0)[None]], dim=0)
        return F.normalize(projected, dim=-1) @ classes.T / self.temperature, bbox_pred

    def _predict_by_feat_single(
        self,
        roi: Tensor,
        cls_score: Tensor,
        bbox_pred: Tensor,
        img_meta: dict,
        rescale: bool = False,
        rcnn_test_cfg: Any = None,
    ) -> InstanceData:
        if roi.shape[0] == 0:
            return empty_instances([img_meta], roi.device, task_type="bbox", num_classes=self.num_classes,
                                   score_per_cls=rcnn_test_cfg is None)[0]  # fmt: skip
        scores = F.softmax(cls_score, dim=-1)
        bboxes = get_box_tensor(
            self.bbox_coder.decode(roi[:, 1:], bbox_pred, max_shape=img_meta["img_shape"])
        )
        if self.vlm is not None:
            scores = self._ensemble(scores, bboxes, int(roi[0, 0]))
        if rescale and bboxes.size(0) > 0:
            bboxes = scale_boxes(bboxes, [1 / s for s in img_meta["scale_factor"]])
        results = InstanceData()
        if rcnn_test_cfg is None:
            results.bboxes, results.scores = bboxes, scores
            return results
        det_bboxes, det_labels = multiclass_nms(
            bboxes, scores, rcnn_test_cfg.score_thr, rcnn_test_cfg.nms, rcnn_test_cfg.max_per_img
        )
        results.bboxes, results.scores, results.labels = det_bboxes[:, :-1], det_bboxes[:, -1], det_labels
        return results

    def _ensemble(self, scores: Tensor, bboxes: Tensor, image_index: int) -> Tensor:
        """F-VLM: geometric mean of detector and VLM class scores (the VLM pools the frozen map on the boxes)."""
        vlm = self.vlm
        region = region_embeddings(vlm["dense"][image_index : image_index + 1], [bboxes], vlm["stride"])
        vlm_scores = F.softmax(region @ self.vocabulary.T * vlm["logit_scale"], dim=-1)
        weight = torch.where(vlm["novel"], vlm["beta"], vlm["alpha"]).to(scores)
        foreground = scores[:, :-1] ** (1 - weight) * vlm_scores**weight
        return torch.cat([foreground, scores[:, -1:]], dim=1)


@MODELS.register_module()
class FVLM(TwoStageDetector):
    """F-VLM on a frozen encoder: simple pyramid + RPN + text-embedding RoI head, open-vocabulary scoring.

    ``split_file`` names the base (training) and novel categories and the label order (see :func:`read_split`),
    shared with :class:`OVCocoDataset`. Filled in from the encoder: anchor and RoI strides (its patch size),
    the RoI head's embedding size, and the data preprocessor's mean/std and padding."""

    def __init__(
        self,
        backbone: dict,
        rpn_head: dict,
        roi_head: dict,
        train_cfg: dict,
        test_cfg: dict,
        split_file: str,
        templates: str = "openai80",
        alpha: float = 0.35,
        beta: float = 0.65,
        data_preprocessor: dict | None = None,
        init_cfg: dict | None = None,
    ) -> None:
        encoder = resolve_encoder(backbone["encoder"], backbone.get("device"))
        if encoder.patch_size is None:
            raise UserError(f"{encoder.name}: the encoder has no dense features (needed by the detector)")
        base, novel, labels = read_split(split_file)
        strides = [encoder.patch_size / s for s in backbone.get("scales", (4.0, 2.0, 1.0, 0.5))]
        rpn_head["anchor_generator"]["strides"] = strides
        roi_head["bbox_roi_extractor"]["featmap_strides"] = strides
        roi_head["bbox_head"].update(embed_dim=encoder.embed_dim, num_classes=len(base))
        data_preprocessor = dict(data_preprocessor or dict(type="DetDataPreprocessor"))
        data_preprocessor.update(  # the frozen encoder fixes the normalisation; pad to the coarsest stride
            mean=[255 * m for m in encoder.mean],
            std=[255 * s for s in encoder.std],
            bgr_to_rgb=True,
            pad_size_divisor=int(max(strides)),
        )
        super().__init__(
            backbone=backbone,
            rpn_head=rpn_head,
            roi_head=roi_head,
            train_cfg=train_cfg,
            test_cfg=test_cfg,
            data_preprocessor=data_preprocessor,
            init_cfg=init_cfg,
        )
        self.alpha, self.beta = alpha, beta
        self.logit_scale = encoder.logit_scale
        # Text embeddings come from the frozen encoder: buffers that move with the model, not saved. Label
        # order is the annotation files' (labels); training sees only the base categories, in that order.
        is_base = torch.tensor([name in base for name in labels])
        self.register_buffer("test_text", text_classifier(encoder, labels, templates), persistent=False)
        self.register_buffer("train_text", self.test_text[is_base].clone(), persistent=False)
        self.register_buffer("novel", ~is_base, persistent=False)
        self.base_classes, self.novel_classes = tuple(base), tuple(novel)
        self.roi_head.bbox_head.use_vocabulary(self.train_text)

    def loss(self, batch_inputs: Tensor, batch_data_samples: list) -> dict:
        self.roi_head.bbox_head.use_vocabulary(self.train_text)
        return super().loss(batch_inputs, batch_data_samples)

    def predict(self, batch_inputs: Tensor, batch_data_samples: list, rescale: bool = True) -> list:
        dense = self.backbone.dense(batch_inputs)
        x = self.backbone.pyramid(dense)
        head = self.roi_head.bbox_head
        vlm = dict(dense=dense, stride=float(self.backbone.patch_size), novel=self.novel, alpha=self.alpha,
                   beta=self.beta, logit_scale=self.logit_scale)  # fmt: skip
        head.use_vocabulary(self.test_text, vlm)
        try:
            proposals = self.rpn_head.predict(x, batch_data_samples, rescale=False)
            results = self.roi_head.predict(x, proposals, batch_data_samples, rescale=rescale)
        finally:
            head.use_vocabulary(self.train_text)
        return self.add_pred_to_datasample(batch_data_samples, results)

    def _forward(self, batch_inputs: Tensor, batch_data_samples: list | None = None) -> tuple:
        self.roi_head.bbox_head.use_vocabulary(self.test_text)
        return super()._forward(batch_inputs, batch_data_samples)


class _SplitOrderCOCO(COCO):
    """mmdet's COCO whose category ids for ``cat_names`` must come in that order (the split file's labels)."""

    def __init__(self, annotation_file: str | None = None) -> None:
        self.source = annotation_file
        super().__init__(annotation_file)

    def get_cat_ids(self, cat_names=(), sup_names=(), cat_ids=()):  # noqa: B006 - mirrors mmdet's signature
        ids = super().get_cat_ids(list(cat_names), list(sup_names), list(cat_ids))
        found = [self.cats[i]["name"] for i in ids]
        if cat_names and found != list(cat_names):
            raise UserError(
                f"{self.source}: categories must be the split's, in the order of its 'labels' "
                f"(write both with 'silc-bench data ov-coco'); found {found}, expected {list(cat_names)}"
            )
        return ids


@DATASETS.register_module()
class OVCocoDataset(CocoDataset):
    """CocoDataset over an OV-COCO annotation file: classes = the split's labels (``subset='all'``) or its base
    categories in that order (``subset='base'``), with ``base_classes``/``novel_classes`` in the metainfo for
    OVCocoMetric. The file must list its categories in that order (as ``silc-bench data ov-coco`` writes it)."""

    COCOAPI = _SplitOrderCOCO

    def __init__(self, split_file: str, subset: str = "all", **kwargs: Any) -> None:
        base, novel, labels = read_split(split_file)
        if subset not in ("base", "all"):
            raise ValueError(f"subset {subset!r}: expected 'base' or 'all'")
        classes = tuple(n for n in labels if subset == "all" or n in base)
        metainfo = dict(kwargs.pop("metainfo", None) or {})
        metainfo.update(classes=classes, base_classes=tuple(base), novel_classes=tuple(novel))
        super().__init__(metainfo=metainfo, **kwargs)


@HOOKS.register_module()
class PlainStateDictHook(Hook):
    """After training, write ``work_dir/fvlm_detector.pt``: ``{"state_dict", "meta"}`` of plain tensors and
    numbers (the per-iteration losses and seconds), loadable with ``torch.load(..., weights_only=True)``."""

    priority = "LOW"

    def __init__(self, filename: str = WEIGHTS_FILE) -> None:
        self.filename = filename
        self.losses: list[float] = []
        self.seconds: list[float] = []
        self._start = 0.0

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        self._start = time.perf_counter()

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        self.seconds.append(time.perf_counter() - self._start)
        if outputs is not None and "loss" in outputs:
            self.losses.append(float(torch.as_tensor(outputs["loss"]).detach()))

    def after_train(self, runner) -> None:
        from silc.io import atomic_write

        model = runner.model.module if hasattr(runner.model, "module") else runner.model
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        meta = {"iters": runner.iter, "losses": self.losses, "seconds_per_iter": self.seconds}
        atomic_write(
            Path(runner.work_dir) / self.filename,
            lambda f: torch.save({"state_dict": state, "meta": meta}, f),
        )


def load_detector_weights(model: nn.Module, path: str | os.PathLike) -> dict[str, Any]:
    """Load a :class:`PlainStateDictHook` file into ``model`` (safe loading, exact keys); returns its meta."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # unreadable, or objects that safe loading refuses
        raise UserError(f"{path}: not a plain detector state dict ({type(e).__name__})") from None
    if not isinstance(obj, dict) or "state_dict" not in obj:
        raise UserError(f"{path}: expected a dict with 'state_dict' (written by PlainStateDictHook)")
    missing, unexpected = model.load_state_dict(obj["state_dict"], strict=False)
    if missing or unexpected:
        raise UserError(
            f"{path}: weights do not fit this detector (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    return obj.get("meta", {})
