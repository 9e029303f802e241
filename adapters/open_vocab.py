"""Open-vocabulary building blocks on the Encoder contract: text classifiers and region embeddings."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torchvision.ops import roi_align

from adapters.encoder import Encoder
from silc.kernel import build_class_embeddings, template_set


@torch.no_grad()
def text_classifier(encoder: Encoder, names: Sequence[str], templates: str = "openai80") -> torch.Tensor:
    """``[C, D]`` class embeddings (on ``encoder.device``) of ``names`` under the named template set (the
    kernel's registry): the mean of each name's normalised template embeddings, renormalised; the prompts of one
    name per ``encode_text`` call."""

    def embed(texts: list[str]) -> torch.Tensor:
        return encoder.encode_text(encoder.tokenize(texts).to(encoder.device))

    return build_class_embeddings(
        embed, list(names), template_set(templates), classes_per_batch=1, normalize_texts=False
    )


def region_embeddings(
    dense: torch.Tensor, boxes: Sequence[torch.Tensor], stride: float, output_size: int = 7
) -> torch.Tensor:
    """Mean-pooled RoIAlign of a dense map ``[B, D, h, w]`` over per-image ``xyxy`` boxes (input pixels),
    renormalised: one ``[N, D]`` embedding per box, boxes concatenated in image order."""
    if sum(len(b) for b in boxes) == 0:
        return dense.new_zeros((0, dense.shape[1]))
    pooled = roi_align(
        dense.float(),
        [b.to(dense.device, torch.float32) for b in boxes],
        output_size=output_size,
        spatial_scale=1.0 / stride,
        sampling_ratio=-1,
        aligned=True,
    )
    return F.normalize(pooled.mean(dim=(2, 3)), dim=-1)
