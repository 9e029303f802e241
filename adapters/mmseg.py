"""A training-free zero-shot segmentor registered in mmseg's ``MODELS``: any Encoder's dense features vs text.

The slide windows of all images of a test batch go through ``encode_dense`` together (one forward per window
size, in chunks of ``max_windows_per_forward``); per image, cosine logits x logit scale at patch resolution; then
upsampling to each window, stitching (overlaps averaged, as mmseg's ``slide_inference``) and
resizing to the original image shape, all bilinear with ``align_corners=False``. Those steps are linear and
separable per axis, so they are applied as two small matrix products per image (exactly the same maps up to
float rounding) instead of full-resolution interpolations per window. With ``pamr_iterations`` set, the query
logits at the original shape are refined by PAMR (``adapters.pamr``) guided by the normalised image resized there
(bilinear, ``align_corners=False``), as NACLIP does, before the max over synonyms, the argmax and the threshold.
With ``area_threshold`` set, SCLIP's area filter (:func:`drop_small_classes`) runs on the whole image's class logits
before the argmax and the threshold.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from functools import lru_cache
from typing import Any

import torch
import torch.nn.functional as F
from mmengine.registry import DefaultScope
from mmengine.structures import PixelData
from mmseg.models.data_preprocessor import SegDataPreProcessor
from mmseg.models.segmentors.base import BaseSegmentor
from mmseg.registry import DATASETS, MODELS
from torch import Tensor

from adapters.class_queries import (
    TextEmbedder,
    as_synonym_lists,
    encoder_text_embedder,
    query_embeddings,
    read_names_file,
)
from adapters.encoder import DENSE_MODES, NACLIP_STD, Encoder, check_naclip_std
from adapters.pamr import NACLIP_DILATIONS, check_pamr, pamr
from silc.errors import UserError
from silc.kernel import resolve_templates

_CHUNK_ELEMENTS = 1 << 20  # row chunks of the full-resolution logits: 4 MB (float32), cache-sized


def window_starts(size: int, crop: int, stride: int) -> list[int]:
    """Window start offsets along one axis, placed exactly as mmseg's ``EncoderDecoder.slide_inference``."""
    crop = min(crop, size)
    count = max(size - crop + stride - 1, 0) // stride + 1
    return [max(min(i * stride + crop, size) - crop, 0) for i in range(count)]


def interpolation_matrix(n_in: int, n_out: int) -> Tensor:
    """``[n_out, n_in]`` weights of 1-D linear resizing with ``align_corners=False`` (as F.interpolate)."""
    eye = torch.eye(n_in, dtype=torch.float64)[None]
    return F.interpolate(eye, size=n_out, mode="linear", align_corners=False)[0].T


@lru_cache(maxsize=256)
def axis_operator(size: int, out_size: int, crop: int, stride: int, patch: int) -> Tensor:
    """``[out_size, windows * cells]``: patch-grid logits of every window along one axis -> upsampled to the
    (patch-padded) window, stitched into the ``size``-long axis with overlaps averaged, resized to ``out_size``."""
    starts = window_starts(size, crop, stride)
    win = min(crop, size)
    cells = math.ceil(win / patch)
    up = interpolation_matrix(cells, cells * patch)[:win]
    stitched = torch.zeros(size, len(starts) * cells, dtype=torch.float64)
    count = torch.zeros(size, 1, dtype=torch.float64)
    for k, start in enumerate(starts):
        stitched[start : start + win, k * cells : (k + 1) * cells] = up
        count[start : start + win] += 1
    return (interpolation_matrix(size, out_size) @ (stitched / count)).float()


def drop_small_classes(class_logits: Tensor, threshold: float, bg_index: int = 0) -> Tensor:
    """SCLIP's area filter (``area_thd`` of its ``postprocess_result``) on one image's class logits ``[H, W, C]``:
    a class other than ``bg_index`` that is the argmax of at most ``threshold`` times the pixels whose argmax is
    not ``bg_index`` gets logit -inf everywhere, so that its pixels take the best class left (background or a kept
    class) and a background threshold then applies to that class's probability (SCLIP zeroes its probabilities)."""
    classes = class_logits.shape[2]
    area = torch.bincount(class_logits.argmax(dim=2).flatten(), minlength=classes).double()
    foreground = torch.arange(classes, device=area.device) != bg_index
    kept = ~foreground | (area > threshold * area[foreground].sum())
    return class_logits.masked_fill(~kept, -math.inf)


def class_names_from(source: str | Sequence | dict) -> list[list[str]]:
    """Class synonym lists from ``dict(dataset='ADE20KDataset')`` (an mmseg dataset's METAINFO), a names file
    path (one class per line, comma-separated synonyms) or a list of names / synonym lists."""
    if isinstance(source, dict):
        if set(source) != {"dataset"}:
            raise UserError(f"class_names: expected dict(dataset=<mmseg dataset type>), got {source!r}")
        dataset_cls = DATASETS.get(source["dataset"])
        if dataset_cls is None or not dataset_cls.METAINFO.get("classes"):
            raise UserError(
                f"class_names: {source['dataset']!r} is not an mmseg dataset with METAINFO classes"
            )
        return as_synonym_lists(dataset_cls.METAINFO["classes"])
    if isinstance(source, str):
        return read_names_file(source)
    return as_synonym_lists(source)


@MODELS.register_module()
class PaddedSegDataPreProcessor(SegDataPreProcessor):
    """mmseg's SegDataPreProcessor that also takes test batches of differently sized images: they are padded
    (bottom/right) to the largest; ``img_shape`` keeps each image's own size, which the segmentor crops back to."""

    def forward(self, data: dict, training: bool = False) -> dict:
        if not training:
            height = max(x.shape[-2] for x in data["inputs"])
            width = max(x.shape[-1] for x in data["inputs"])
            padded = [F.pad(x, (0, width - x.shape[-1], 0, height - x.shape[-2])) for x in data["inputs"]]
            data = {**data, "inputs": padded}
        return super().forward(data, training)


def encoder_preprocessor(cfg: dict | None, encoder: Encoder) -> torch.nn.Module:
    """A (Padded)SegDataPreProcessor normalising with the encoder's own mean/std (given values must agree)."""
    cfg = {"type": "PaddedSegDataPreProcessor", **(cfg or {})}
    for key, values in (("mean", encoder.mean), ("std", encoder.std)):
        want = [255.0 * v for v in values]
        given = cfg.get(key)
        if given is not None and (
            len(given) != 3 or any(abs(float(g) - w) > 0.01 for g, w in zip(given, want, strict=True))
        ):
            raise UserError(
                f"model.data_preprocessor.{key}: {list(given)} differs from encoder {encoder.name!r} "
                f"{key} x 255 = {[round(w, 3) for w in want]}; leave it out to use the encoder's"
            )
        cfg[key] = want
    cfg.setdefault("bgr_to_rgb", True)  # mmcv's LoadImageFromFile decodes BGR
    # Build in mmseg's scope whatever scope ran last in this process (mmdet's Runner leaves its own current).
    with DefaultScope.overwrite_default_scope("mmseg"):
        return MODELS.build(cfg)


@MODELS.register_module()
class ZeroShotSegmentor(BaseSegmentor):
    """Dense zero-shot segmentation from an Encoder: ``encode_dense(mode)`` vs class text embeddings.

    Args:
        encoder: an Encoder SPEC for ``adapters.load_encoder`` or an Encoder instance.
        class_names: see :func:`class_names_from`; a class with synonyms scores the max over them.
        templates: a named set of the kernel's registry (``openai80``, ``simple7``, ``photo``, ``identity``), a
            templates file, or a list of templates.
        dense_mode: one of ``adapters.encoder.DENSE_MODES``.
        naclip_std: the std (patches) of dense mode ``naclip``'s Gaussian prior (only with that mode).
        pamr_iterations: PAMR steps on the logits at the original image shape (None: no PAMR).
        pamr_dilations: PAMR's neighbourhood dilations (only with ``pamr_iterations``).
        crop_size, stride: slide-window size and step, in pixels of the resized image.
        logit_scale: multiplies the cosine logits (default: the encoder's); matters for ``bg_threshold``.
        bg_threshold: pixels whose top class probability (softmax over all queries) is below it get
            ``bg_index`` (datasets with a background class).
        area_threshold: SCLIP's area filter before the argmax and ``bg_threshold`` (see
            :func:`drop_small_classes`; datasets with a background class ``bg_index``; None: off).
        max_windows_per_forward: cap on windows per encoder call (default: all windows of the batch at once).
        device: where a SPEC is loaded (default: mmengine's ``get_device()``); windows run on the encoder's device.
        text_embedder: prompts -> embeddings (default: the encoder's tokenize + encode_text), e.g. a cached one.
    """

    def __init__(
        self,
        encoder: str | Encoder,
        class_names: str | Sequence | dict,
        templates: str | Sequence[str] = "openai80",
        dense_mode: str = "naive",
        naclip_std: float = NACLIP_STD,
        pamr_iterations: int | None = None,
        pamr_dilations: Sequence[int] = NACLIP_DILATIONS,
        crop_size: int = 448,
        stride: int = 224,
        logit_scale: float | None = None,
        bg_threshold: float | None = None,
        area_threshold: float | None = None,
        bg_index: int = 0,
        max_windows_per_forward: int | None = None,
        device: str | None = None,
        text_embedder: TextEmbedder | None = None,
        data_preprocessor: dict | None = None,
        init_cfg: dict | None = None,
    ) -> None:
        if isinstance(encoder, str):
            from mmengine.device import get_device

            from adapters import load_encoder

            encoder = load_encoder(encoder, device=device or get_device())
        if dense_mode not in DENSE_MODES:
            raise UserError(f"dense mode {dense_mode!r}: expected one of {', '.join(DENSE_MODES)}")
        if encoder.patch_size is None:
            raise UserError(f"encoder {encoder.name!r} has no patch grid: dense modes are unsupported")
        if crop_size < 1 or stride < 1:
            raise UserError(f"crop_size and stride must be positive, got {crop_size} and {stride}")
        if area_threshold is not None and not 0 < area_threshold < 1:
            raise UserError(f"area_threshold: expected a fraction in (0, 1), got {area_threshold!r}")
        # encode_dense's keyword for the mode's own knob (the only one: naclip's std)
        dense_options = {"naclip_std": check_naclip_std(naclip_std)} if dense_mode == "naclip" else {}
        refine = None if pamr_iterations is None else check_pamr(pamr_iterations, pamr_dilations)
        super().__init__(
            data_preprocessor=encoder_preprocessor(data_preprocessor, encoder), init_cfg=init_cfg
        )
        self.encoder = encoder
        self.dense_mode = dense_mode
        self.dense_options = dense_options
        self.pamr = refine  # (iterations, dilations) or None
        self.crop_size = int(crop_size)
        self.stride = int(stride)
        self.logit_scale = float(encoder.logit_scale if logit_scale is None else logit_scale)
        self.bg_threshold = bg_threshold
        self.area_threshold = area_threshold
        self.bg_index = bg_index
        self.max_windows_per_forward = max_windows_per_forward
        self.classes = class_names_from(class_names)
        self.templates = resolve_templates(templates)
        embed = text_embedder or encoder_text_embedder(encoder)
        queries, owner = query_embeddings(self.classes, self.templates, embed)
        self.register_buffer("queries", queries, persistent=False)
        self.register_buffer("query_owner", owner, persistent=False)
        self.has_synonyms = len(owner) > len(self.classes)
        self.timing = {"encoder_s": 0.0, "decode_s": 0.0, "predict_s": 0.0, "images": 0, "windows": 0}

    @property
    def num_classes(self) -> int:
        """Number of output classes (the dataset's)."""
        return len(self.classes)

    # -- encoder side ------------------------------------------------------------------------------------

    def _windows(self, image: Tensor) -> tuple[Tensor, int, int]:
        """All slide windows of ``[3, H, W]`` zero-padded to whole patches: ``([n, 3, h, w], rows, cols)``."""
        _, height, width = image.shape
        ys = window_starts(height, self.crop_size, self.stride)
        xs = window_starts(width, self.crop_size, self.stride)
        win_h, win_w = min(self.crop_size, height), min(self.crop_size, width)
        patch = self.encoder.patch_size
        pad = (0, math.ceil(win_w / patch) * patch - win_w, 0, math.ceil(win_h / patch) * patch - win_h)
        crops = [image[:, y : y + win_h, x : x + win_w] for y in ys for x in xs]
        return F.pad(torch.stack(crops), pad), len(ys), len(xs)

    def _encode(self, windows: Tensor) -> Tensor:
        """Dense features of ``windows`` through the encoder, timed (in chunks only when capped)."""
        step = self.max_windows_per_forward or len(windows)
        start = time.perf_counter()
        feats = torch.cat(
            [
                self.encoder.encode_dense(windows[i : i + step], self.dense_mode, **self.dense_options)
                for i in range(0, len(windows), step)
            ]
        )
        if feats.is_cuda:
            torch.cuda.synchronize(feats.device)
        self.timing["encoder_s"] += time.perf_counter() - start
        self.timing["windows"] += len(windows)
        expected = tuple(s // self.encoder.patch_size for s in windows.shape[-2:])
        if feats.dim() != 4 or tuple(feats.shape[-2:]) != expected:
            raise RuntimeError(
                f"encoder {self.encoder.name!r}.encode_dense returned {tuple(feats.shape)} for windows "
                f"{tuple(windows.shape)}; expected [n, D, {expected[0]}, {expected[1]}]"
            )
        return feats

    @torch.no_grad()
    def grid_logits(self, inputs: Tensor, img_shapes: Sequence[tuple[int, int]]) -> list[Tensor]:
        """Per image, ``[Q, rows * cells_h, cols * cells_w]``: the scaled cosine logits of every window at
        patch resolution, windows laid side by side in their grid order."""
        device = self.encoder.device
        images = [inputs[i, :, :h, :w].to(device) for i, (h, w) in enumerate(img_shapes)]
        per_image = [self._windows(image) for image in images]
        by_size: dict[tuple[int, ...], list[int]] = {}  # images whose windows have one size share forwards
        for i, (windows, _, _) in enumerate(per_image):
            by_size.setdefault(tuple(windows.shape[1:]), []).append(i)
        feats: dict[int, Tensor] = {}
        for members in by_size.values():
            encoded = self._encode(torch.cat([per_image[i][0] for i in members]))
            feats.update(zip(members, encoded.split([len(per_image[i][0]) for i in members]), strict=True))
        queries = self.queries.to(device=device, dtype=feats[0].dtype)
        grids = []
        for i, (_, rows, cols) in enumerate(per_image):
            logits = torch.einsum("ndhw,qd->nqhw", feats[i], queries).float() * self.logit_scale
            _, q, ch, cw = logits.shape
            grids.append(
                logits.view(rows, cols, q, ch, cw).permute(2, 0, 3, 1, 4).reshape(q, rows * ch, cols * cw)
            )
        return grids

    # -- decoding ----------------------------------------------------------------------------------------

    @staticmethod
    def _row_slices(queries: int, out_size: tuple[int, int]) -> Iterator[slice]:
        """Row chunks of the ``out_size`` logits of ``queries`` queries that stay in cache."""
        step = max(1, _CHUNK_ELEMENTS // (queries * out_size[1]))
        for top in range(0, out_size[0], step):
            yield slice(top, min(top + step, out_size[0]))

    def _query_rows(
        self, grid: Tensor, size: tuple[int, int], out_size: tuple[int, int]
    ) -> Iterator[tuple[slice, Tensor]]:
        """Yield ``(rows, query logits [r, W0, Q])`` of the image resized to ``out_size``, in row chunks."""
        patch = self.encoder.patch_size
        op_y = axis_operator(size[0], out_size[0], self.crop_size, self.stride, patch).to(grid.device)
        op_x = axis_operator(size[1], out_size[1], self.crop_size, self.stride, patch).to(grid.device)
        across = torch.matmul(grid, op_x.T).permute(1, 2, 0).contiguous()  # [rows*cells_h, W0, Q]
        queries = grid.shape[0]
        for rows in self._row_slices(queries, out_size):
            block = op_y[rows]
            used = block.any(dim=0).nonzero().squeeze(1)  # the few grid rows these output rows blend
            yield rows, torch.matmul(block[:, used], across[used].flatten(1)).view(-1, out_size[1], queries)

    def _refined_rows(
        self, grid: Tensor, image: Tensor, size: tuple[int, int], out_size: tuple[int, int]
    ) -> Iterator[tuple[slice, Tensor]]:
        """:meth:`_query_rows` after PAMR on the whole image's query logits, guided by ``image`` (``[3, h, w]``,
        the normalised pixels at ``size``) resized to ``out_size`` as the logits are."""
        logits = torch.cat([q for _, q in self._query_rows(grid, size, out_size)]).permute(2, 0, 1)
        guide = F.interpolate(image[None].to(logits), size=out_size, mode="bilinear", align_corners=False)[0]
        refined = pamr(guide, logits, *self.pamr).permute(1, 2, 0).contiguous()
        for rows in self._row_slices(grid.shape[0], out_size):
            yield rows, refined[rows]

    def _row_chunks(
        self, grid: Tensor, size: tuple[int, int], out_size: tuple[int, int], image: Tensor | None = None
    ) -> Iterator[tuple[slice, Tensor, Tensor]]:
        """Yield ``(rows, class logits [r, W0, C], query logits [r, W0, Q])`` of the image resized to
        ``out_size``, in row chunks that stay in cache; classes innermost, so that the per-pixel max over them
        reads contiguous memory (a max with indices over an outer dimension is several times slower on CPU).
        With PAMR the query logits are refined first, guided by ``image`` (see :meth:`_refined_rows`)."""
        if self.pamr is None:
            chunks = self._query_rows(grid, size, out_size)
        elif image is None:
            raise ValueError("ZeroShotSegmentor with PAMR: the image is needed to refine its logits")
        else:
            chunks = self._refined_rows(grid, image, size, out_size)
        owner = self.query_owner.to(grid.device)
        for rows, query_logits in chunks:
            if self.has_synonyms:
                class_logits = query_logits.new_empty((*query_logits.shape[:2], self.num_classes))
                index = owner.expand_as(query_logits)
                class_logits.scatter_reduce_(2, index, query_logits, "amax", include_self=False)
            else:
                class_logits = query_logits
            yield rows, class_logits, query_logits

    def _predict_labels(
        self, grid: Tensor, size: tuple[int, int], out_size: tuple[int, int], image: Tensor | None = None
    ) -> Tensor:
        """``[H0, W0]`` class indices (area filter and background threshold applied when set); ``image``: for
        PAMR."""
        labels = torch.empty(out_size, dtype=torch.long, device=grid.device)
        chunks = self._row_chunks(grid, size, out_size, image)
        if self.area_threshold is not None:
            chunks = [self._without_small_classes(chunks)]
        for rows, class_logits, query_logits in chunks:
            best, labels[rows] = class_logits.max(dim=2)
            if self.bg_threshold is not None:
                top_prob = torch.exp(best - torch.logsumexp(query_logits, dim=2))
                labels[rows][top_prob < self.bg_threshold] = self.bg_index
        return labels

    def _without_small_classes(
        self, chunks: Iterator[tuple[slice, Tensor, Tensor]]
    ) -> tuple[slice, Tensor, Tensor]:
        """The row ``chunks`` of :meth:`_row_chunks` as one chunk of the whole image, its class logits through
        :func:`drop_small_classes` (which counts every pixel of the image)."""
        parts = list(chunks)
        class_logits = torch.cat([c for _, c, _ in parts])
        query_logits = torch.cat([q for _, _, q in parts])
        return slice(None), drop_small_classes(class_logits, self.area_threshold, self.bg_index), query_logits

    def class_logits(self, inputs: Tensor, img_shapes: Sequence[tuple[int, int]], out_sizes) -> list[Tensor]:
        """Per image ``[C, H0, W0]`` class logits (max over synonyms) resized to ``out_sizes`` (refined by PAMR
        when set)."""
        grids = self.grid_logits(inputs, img_shapes)
        out = []
        for i, (grid, size, out_size) in enumerate(zip(grids, img_shapes, out_sizes, strict=True)):
            image = inputs[i, :, : size[0], : size[1]]
            chunks = self._row_chunks(grid, tuple(size), tuple(out_size), image)
            out.append(torch.cat([c for _, c, _ in chunks]).permute(2, 0, 1))
        return out

    # -- mmseg BaseSegmentor API -------------------------------------------------------------------------

    @staticmethod
    def _metas(inputs: Tensor, data_samples) -> list[dict[str, Any]]:
        if data_samples is None:
            shape = tuple(inputs.shape[-2:])
            return [{"img_shape": shape, "ori_shape": shape}] * inputs.shape[0]
        metas = [s.metainfo for s in data_samples]
        if any(m.get("flip") for m in metas):
            raise UserError("ZeroShotSegmentor: flip test-time augmentation is not supported")
        return metas

    @torch.no_grad()
    def predict(self, inputs: Tensor, data_samples=None):
        """Predicted labels at each image's original shape, as ``pred_sem_seg`` of SegDataSamples."""
        from mmseg.structures import SegDataSample

        start = time.perf_counter()
        metas = self._metas(inputs, data_samples)
        shapes = [tuple(m["img_shape"][:2]) for m in metas]
        grids = self.grid_logits(inputs, shapes)
        data_samples = data_samples if data_samples is not None else [SegDataSample() for _ in metas]
        for i, (sample, grid, shape, meta) in enumerate(zip(data_samples, grids, shapes, metas, strict=True)):
            decode_start = time.perf_counter()
            image = inputs[i, :, : shape[0], : shape[1]]
            labels = self._predict_labels(grid, shape, tuple(meta["ori_shape"][:2]), image)
            self.timing["decode_s"] += time.perf_counter() - decode_start
            sample.set_data({"pred_sem_seg": PixelData(data=labels[None])})
        self.timing["images"] += len(metas)
        self.timing["predict_s"] += time.perf_counter() - start
        return data_samples

    def encode_decode(self, inputs: Tensor, batch_img_metas: list[dict]) -> Tensor:
        """``[B, C, H, W]`` class logits at the input (resized image) resolution."""
        shapes = [tuple(m["img_shape"][:2]) for m in batch_img_metas]
        return torch.stack(self.class_logits(inputs, shapes, shapes))

    def _forward(self, inputs: Tensor, data_samples=None) -> Tensor:
        return self.encode_decode(inputs, self._metas(inputs, data_samples))

    def extract_feat(self, inputs: Tensor) -> Tensor:
        """The encoder's dense features of ``inputs`` in this segmentor's mode."""
        return self.encoder.encode_dense(
            inputs.to(self.encoder.device), self.dense_mode, **self.dense_options
        )

    def loss(self, inputs: Tensor, data_samples) -> dict:
        raise NotImplementedError("ZeroShotSegmentor is training-free: it has no loss")
