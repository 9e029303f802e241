"""Open-vocabulary building blocks on the Encoder contract: text classifiers and region embeddings."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torchvision.ops import roi_align

from adapters.encoder import Encoder

TEMPLATE_SETS = ("openai80", "simple", "photo")


def templates(name: str) -> list[Callable[[str], str]]:
    """Prompt templates by name: open_clip's 80 OpenAI ImageNet templates, its simple set, or one photo prompt."""
    from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES, SIMPLE_IMAGENET_TEMPLATES

    if name == "openai80":
        return list(OPENAI_IMAGENET_TEMPLATES)
    if name == "simple":
        return list(SIMPLE_IMAGENET_TEMPLATES)
    if name == "photo":
        return [lambda c: f"a photo of a {c}."]
    raise ValueError(f"unknown template set {name!r}; known: {', '.join(TEMPLATE_SETS)}")


@torch.no_grad()
def text_classifier(encoder: Encoder, names: Sequence[str], template_set: str = "openai80") -> torch.Tensor:
    """``[C, D]`` class embeddings: the mean of each name's normalised template embeddings, renormalised."""
    fill = templates(template_set)
    rows = []
    for name in names:
        tokens = encoder.tokenize([t(name) for t in fill]).to(encoder.device)
        emb = encoder.encode_text(tokens).float().mean(dim=0)
        rows.append(F.normalize(emb, dim=-1))
    return torch.stack(rows)


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
