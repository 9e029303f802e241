"""A linear probe on frozen dense features, registered in mmseg's ``MODELS``: DINOv2's linear segmentation protocol.

- ``FrozenDenseEncoder``: a backbone that returns an Encoder's ``encode_dense`` features (one level), computed
  without gradients; the Encoder is held outside the module tree, so its weights are neither trained nor switched
  to training mode by the Runner.
- ``BNHead``: the linear decode head (BatchNorm on the features, then ``BaseDecodeHead``'s 1x1 ``conv_seg``), as
  DINOv2's ``BNHead`` with one feature level.
- ``LinearProbeSegmentor``: mmseg's ``EncoderDecoder`` (its loss, slide/whole inference and post-processing) whose
  ``encode_decode`` pads a window to whole patches and crops the upsampled logits back, as the zero-shot segmentor.
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch
import torch.nn.functional as F
from mmcv.cnn import build_norm_layer
from mmengine.model import BaseModule
from mmseg.models.decode_heads.decode_head import BaseDecodeHead
from mmseg.models.segmentors import EncoderDecoder
from mmseg.registry import MODELS
from torch import Tensor

from adapters.encoder import Encoder
from adapters.mmseg import encoder_preprocessor
from silc.errors import UserError


@MODELS.register_module()
class FrozenDenseEncoder(BaseModule):
    """Backbone: ``(encode_dense(x, dense_mode),)`` of a frozen Encoder (a SPEC for ``adapters.load_encoder`` or an
    instance), float32 on the input's device. Inputs must be whole patches (the segmentor pads them)."""

    def __init__(
        self, encoder: str | Encoder, dense_mode: str = "naive", device: str | None = None, init_cfg=None
    ) -> None:
        super().__init__(init_cfg=init_cfg)
        if isinstance(encoder, str):
            from mmengine.device import get_device

            from adapters import load_encoder

            encoder = load_encoder(encoder, device=device or get_device())
        if encoder.patch_size is None or dense_mode not in encoder.dense_modes:
            raise UserError(f"encoder {encoder.name!r} does not support dense mode {dense_mode!r}")
        self.__dict__["encoder"] = encoder  # not a submodule: frozen, never trained, never in train mode
        self.dense_mode = dense_mode
        self.timing = {"encoder_s": 0.0, "images": 0}

    @property
    def patch_size(self) -> int:
        return int(self.encoder.patch_size)

    def forward(self, inputs: Tensor) -> tuple[Tensor]:
        start = time.perf_counter()
        with torch.no_grad():
            feats = self.encoder.encode_dense(inputs.to(self.encoder.device), self.dense_mode)
        self.timing["encoder_s"] += time.perf_counter() - start
        self.timing["images"] += len(inputs)
        feats = feats.float().to(inputs.device)
        return (
            feats.clone() if feats.is_inference() else feats,
        )  # an inference tensor cannot enter autograd


@MODELS.register_module()
class BNHead(BaseDecodeHead):
    """Linear decode head: a norm layer (``norm_cfg``, default BatchNorm; SyncBN across GPUs) on the input features,
    then the 1x1 ``conv_seg`` classifier (``channels`` must equal ``in_channels``)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("norm_cfg", {"type": "BN", "requires_grad": True})
        super().__init__(**kwargs)
        if self.channels != self.in_channels:
            raise UserError(f"BNHead: channels {self.channels} must equal in_channels {self.in_channels}")
        _, self.bn = build_norm_layer(self.norm_cfg, self.in_channels)

    def forward(self, inputs: list[Tensor]) -> Tensor:
        return self.cls_seg(self.bn(self._transform_inputs(inputs)))


@MODELS.register_module()
class LinearProbeSegmentor(EncoderDecoder):
    """``EncoderDecoder`` over a :class:`FrozenDenseEncoder` backbone and a :class:`BNHead`; the data preprocessor
    normalises with the encoder's mean/std (:func:`adapters.mmseg.encoder_preprocessor`)."""

    def __init__(
        self, backbone: dict, decode_head: dict, data_preprocessor: dict | None = None, **kwargs: Any
    ) -> None:
        from mmengine.config import ConfigDict

        if kwargs.get("test_cfg") is not None:  # EncoderDecoder reads it by attribute
            kwargs["test_cfg"] = ConfigDict(kwargs["test_cfg"])
        backbone = dict(backbone)
        encoder = MODELS.build(backbone)  # load a SPEC once, then hand the instance to EncoderDecoder
        backbone["encoder"] = encoder.encoder
        super().__init__(
            backbone=backbone,
            decode_head=decode_head,
            data_preprocessor=encoder_preprocessor(data_preprocessor, encoder.encoder),
            **kwargs,
        )

    def encode_decode(self, inputs: Tensor, batch_img_metas: list[dict]) -> Tensor:
        """``[B, C, H, W]`` logits of ``inputs`` (padded to whole patches, upsampled, cropped back)."""
        height, width = inputs.shape[-2:]
        patch = self.backbone.patch_size
        padded = F.pad(
            inputs,
            (0, math.ceil(width / patch) * patch - width, 0, math.ceil(height / patch) * patch - height),
        )
        logits = self.decode_head(self.extract_feat(padded))
        logits = F.interpolate(
            logits, size=padded.shape[-2:], mode="bilinear", align_corners=self.align_corners
        )
        return logits[..., :height, :width]
