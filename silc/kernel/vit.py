"""An open_clip ViT image tower at any input size: tokens with resized position embeddings, pooled output.

One implementation of the token prefix, used by the trainer (local crops smaller than the model's image size)
and by the dense features of the Encoder:

    x = [class_embedding; conv1(image) as h*w tokens] + pos(h, w);  tokens = ln_pre(patch_dropout(x))

``pos(h, w)``: the class token's position embedding unchanged, the patch position embeddings laid out on the
native grid and resized bicubically (``align_corners=False``, no antialiasing) to h x w; at the native grid it is
the learned table itself. The resize runs in float32 and is cast back to the table's dtype: for a float32 table
(the trainer's and the encoders' case, autocast included, since autocast leaves parameters in float32) the casts
are no-ops and every operation is the plain bicubic resize.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from open_clip.transformer import VisionTransformer
from torch import nn


def resize_pos_embed(table: torch.Tensor, native: tuple[int, int], grid: tuple[int, int]) -> torch.Tensor:
    """``[1 + h*w, width]``: the ``[1 + H*W, width]`` position table of a ``native`` = (H, W) token grid resized
    bicubically to ``grid`` = (h, w), class-token row kept (computed in float32, returned in the table's dtype)."""
    if tuple(grid) == tuple(native):
        return table
    patches = table[1:].reshape(1, native[0], native[1], -1).permute(0, 3, 1, 2)
    patches = F.interpolate(patches.float(), size=grid, mode="bicubic", align_corners=False)
    patches = patches.permute(0, 2, 3, 1).reshape(grid[0] * grid[1], -1).to(table.dtype)
    return torch.cat([table[:1], patches], dim=0)


def position_embedding(
    visual: VisionTransformer,
    grid: tuple[int, int],
    cache: dict[tuple[int, int], torch.Tensor] | None = None,
) -> torch.Tensor:
    """``[1 + h*w, width]`` position embeddings for a token grid ``grid`` = (h, w).

    ``cache`` (grid -> table) keeps resized tables for frozen weights; leave it None while the weights train.
    """
    table = visual.positional_embedding
    native = tuple(visual.grid_size)
    if tuple(grid) == native:
        return table
    if cache is None:
        return resize_pos_embed(table, native, grid)
    if grid not in cache:
        cache[grid] = resize_pos_embed(table, native, grid)
    return cache[grid]


def vit_tokens(
    visual: VisionTransformer,
    images: torch.Tensor,
    cache: dict[tuple[int, int], torch.Tensor] | None = None,
    mask: torch.Tensor | None = None,
    mask_token: torch.Tensor | None = None,
) -> tuple[torch.Tensor, tuple[int, int]]:
    """``[B, 3, H, W]`` -> (``[B, 1 + h*w, width]`` tokens after ``ln_pre``, the token grid (h, w)): the input of
    the ViT's transformer blocks for any input size (see the module docstring). ``mask`` ([B, h*w] bool, row-major
    patches) replaces the masked patch embeddings by ``mask_token`` ([width]) before the position embeddings are
    added, as iBOT does."""
    x = visual.conv1(images.to(visual.conv1.weight.dtype))
    grid = (x.shape[-2], x.shape[-1])
    x = x.flatten(2).transpose(1, 2)
    if mask is not None:
        x = torch.where(mask.unsqueeze(-1), mask_token.to(x.dtype), x)
    cls = visual.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
    x = torch.cat([cls, x], dim=1) + position_embedding(visual, grid, cache).to(x.dtype)
    return visual.ln_pre(visual.patch_dropout(x)), grid


def encode_visual(visual: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The vision tower's pooled, projected output for any input size (ViT position embeddings resized).

    At the tower's own image size, or for non-ViT towers, this is ``visual(x)`` itself.
    """
    if not isinstance(visual, VisionTransformer) or tuple(x.shape[-2:]) == tuple(visual.image_size):
        return visual(x)
    tokens, _ = vit_tokens(visual, x)
    pooled, _ = visual._pool(visual.transformer(tokens))
    return pooled @ visual.proj if visual.proj is not None else pooled


def encode_visual_tokens(
    visual: VisionTransformer,
    x: torch.Tensor,
    mask: torch.Tensor | None = None,
    mask_token: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(pooled ``[B, D]`` as :func:`encode_visual`, patches ``[B, h*w, D]``) of one forward of a ViT tower, the
    patches as the dense features' ``naive`` mode makes them (``ln_post`` then ``proj``), optionally with masked
    patch embeddings (:func:`vit_tokens`). Needs a tower without patch dropout (the patches must stay in place)."""
    if visual.patch_dropout.training and getattr(visual.patch_dropout, "prob", 0.0) > 0:
        raise ValueError("patch tokens with patch dropout on: the tokens would not stay on their grid")
    tokens, _ = vit_tokens(visual, x, mask=mask, mask_token=mask_token)
    out = visual.transformer(tokens)
    pooled, _ = visual._pool(out)
    patches = visual.ln_post(out[:, 1:])
    if visual.proj is not None:
        pooled, patches = pooled @ visual.proj, patches @ visual.proj
    return pooled, patches
