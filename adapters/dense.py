"""Dense (per-patch) features of an open_clip ViT image tower in the joint image-text space: five named protocols.

Common prefix, for an input of H x W pixels (multiples of the patch size p; grid h = H/p, w = W/p), exactly
open_clip's ``VisionTransformer`` up to the last block, with the kernel's ViT token prefix
(``silc.kernel.vit.vit_tokens``, the one the trainer uses too):

    x = [class_embedding; conv1(image) as h*w tokens] + pos(h, w);  x = ln_pre(x);  x = blocks[0 .. L-2](x)

``pos(h, w)``: the class token's position embedding unchanged, the patch position embeddings laid out on the
native grid and resized bicubically (``align_corners=False``, no antialiasing) to h x w; at the native grid it is
the learned table itself. Resized tables are cached per grid size (weights are frozen after loading).

The last block (``ResidualAttentionBlock``) is then run according to the mode. Notation: ``y = ln_1(x)``;
``q, k, v`` = the block's ``in_proj`` of ``y`` split into ``heads`` heads of width d = width / heads;
``s = d ** -0.5``; ``Attn(A) = out_proj(concat_heads(A @ v))``; ``ls_1``/``ls_2`` the block's LayerScales
(identity in CLIP ViTs). Attention runs over all h*w + 1 tokens, class token included.

- ``naive``: the unmodified block: ``z = x + ls_1(Attn(softmax(s q k^T)))``, ``x_L = z + ls_2(mlp(ln_2(z)))``.
- ``maskclip``: MaskCLIP (Zhou, Loy, Dai, ECCV 2022) as its released code does it (``TransformerEncoderLayer``
  with ``return_qkv`` in MaskCLIP's ``mmseg/models/backbones/vit.py``): no query-key attention, each token takes
  its own value path, and the block's residuals and FFN are kept:
  ``z = x + ls_1(out_proj(v))``, ``x_L = z + ls_2(mlp(ln_2(z)))``. (ClearCLIP's re-implementation named
  "MaskCLIP" drops the residual and FFN instead; that variant is not this mode.)
- ``sclip``: SCLIP (Wang, Mei, Yuille, 2023) correlative self-attention as its released code does it
  (``custom_attn(..., csa=True)`` in SCLIP's ``clip/model.py``): ``A = softmax(s q q^T) + softmax(s k k^T)``
  (a sum: rows add up to 2), residuals and FFN kept: ``z = x + ls_1(Attn(A))``, ``x_L = z + ls_2(mlp(ln_2(z)))``.
- ``clearclip``: ClearCLIP (Lan et al., ECCV 2024) as its released code's default (``model_type='ClearCLIP'``,
  ``ignore_residual=True``, last block only): self-self q-q attention, residual connection and FFN dropped:
  ``x_L = ls_1(Attn(softmax(s q q^T)))``.
- ``naclip``: NACLIP (Hajimiri, Ben Ayed, Dolz, WACV 2025) as its released code's default
  (``attn_strategy='naclip'``, ``arch='reduced'``, ``gaussian_std=5``: ``custom_attn`` and
  ``get_attention_addition`` in NACLIP's ``clip/model.py``; earlier blocks unchanged): key-key attention plus a
  fixed Gaussian neighbourhood prior, residual connection and FFN dropped:
  ``x_L = ls_1(Attn(softmax(s k k^T + G)))``, the same G in every head:
  ``G[i, j] = exp(-((r_i - r_j)^2 + (c_i - c_j)^2) / (2 std^2))`` for patch tokens i, j at grid row r and column
  c (in patches; 1 on the diagonal, not normalised), and 0 in the class token's row and column (the class token
  attends and is attended by the key-key logits alone: neither masked nor given a position). ``std``:
  ``naclip_std``, 5 patches by default. The prefix is the common one above (NACLIP's own code resizes position
  embeddings by a scale factor of (grid + 0.1) / native grid, which samples slightly differently off the native
  grid).

Output of every mode: the patch tokens of ``x_L`` (class token dropped) through ``ln_post`` and ``@ proj``,
laid out as ``[B, D, h, w]``; the Encoder L2-normalises each location.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from open_clip.transformer import ResidualAttentionBlock, VisionTransformer
from torch import nn

from adapters.encoder import NACLIP_STD
from silc.errors import UserError
from silc.kernel import vit_tokens


def unsupported_reason(visual: nn.Module) -> str | None:
    """Why dense modes cannot run on this image tower, or None for a standard open_clip CLIP ViT."""
    if not isinstance(visual, VisionTransformer):
        return (
            f"the {type(visual).__name__} image tower has no patch tokens (dense modes need an open_clip ViT)"
        )
    if visual.attn_pool is not None:
        return "ViTs with an attentional pooler are not supported"
    if visual.proj is None:
        return "the ViT has no output projection into the joint space"
    for block in visual.transformer.resblocks:
        if not isinstance(block, ResidualAttentionBlock):
            return f"{type(block).__name__} blocks (qk-norm, scaled cosine attention, ...) are not supported"
        attn = block.attn
        if (
            not isinstance(attn, nn.MultiheadAttention)
            or not attn._qkv_same_embed_dim
            or attn.bias_k is not None
            or attn.add_zero_attn
        ):
            return "only standard nn.MultiheadAttention blocks are supported"
    return None


def _run_blocks(visual: VisionTransformer, blocks, x: torch.Tensor) -> torch.Tensor:
    """Run ``blocks`` on NLD tokens, honouring the transformer's batch_first layout."""
    batch_first = visual.transformer.batch_first
    x = x if batch_first else x.transpose(0, 1)
    for block in blocks:
        x = block(x)
    return x if batch_first else x.transpose(0, 1)


def _split_heads(t: torch.Tensor, heads: int) -> torch.Tensor:
    b, n, c = t.shape
    return t.reshape(b, n, heads, c // heads).transpose(1, 2)


def _qkv(block: ResidualAttentionBlock, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The block's ``q, k, v`` of ``y = ln_1(x)`` (NLD, heads not split)."""
    attn = block.attn
    return F.linear(block.ln_1(x), attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)


def _last_block(block: ResidualAttentionBlock, x: torch.Tensor, mode: str) -> torch.Tensor:
    """The last block's output under a modified-attention mode (maskclip, sclip, clearclip) on NLD tokens."""
    attn = block.attn
    q, k, v = _qkv(block, x)
    if mode == "maskclip":
        mixed = v
    else:
        heads = attn.num_heads
        scale = (q.shape[-1] // heads) ** -0.5
        q, k, v = (_split_heads(t, heads) for t in (q, k, v))
        weights = torch.softmax(scale * q @ q.transpose(-1, -2), dim=-1)
        if mode == "sclip":
            weights = weights + torch.softmax(scale * k @ k.transpose(-1, -2), dim=-1)
        mixed = (weights @ v).transpose(1, 2).flatten(2)
    out = block.ls_1(attn.out_proj(mixed))
    if mode == "clearclip":
        return out
    z = x + out
    return z + block.ls_2(block.mlp(block.ln_2(z)))


def gaussian_prior(
    grid: tuple[int, int], std: float, dtype: torch.dtype, device: torch.device | None = None
) -> torch.Tensor:
    """``[h*w + 1, h*w + 1]``: NACLIP's additive attention prior ``G`` on a grid of h x w patches (tokens in
    ``vit_tokens``' order: the class token, then the patches row by row); see the module docstring."""
    h, w = grid
    rows, cols = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
    rows, cols = rows.flatten(), cols.flatten()
    squared = (rows[:, None] - rows[None]) ** 2 + (cols[:, None] - cols[None]) ** 2  # exact integers
    prior = torch.zeros(h * w + 1, h * w + 1, dtype=dtype, device=device)
    prior[1:, 1:] = torch.exp(squared.to(dtype) / (-2 * std**2))
    return prior


def _naclip_block(
    block: ResidualAttentionBlock, x: torch.Tensor, grid: tuple[int, int], std: float
) -> torch.Tensor:
    """The last block's output in mode ``naclip`` on NLD tokens of a ``grid`` of patches."""
    attn = block.attn
    _, k, v = _qkv(block, x)
    heads = attn.num_heads
    scale = (k.shape[-1] // heads) ** -0.5
    k, v = _split_heads(k, heads), _split_heads(v, heads)
    logits = scale * k @ k.transpose(-1, -2) + gaussian_prior(grid, std, k.dtype, k.device)
    mixed = (torch.softmax(logits, dim=-1) @ v).transpose(1, 2).flatten(2)
    return block.ls_1(attn.out_proj(mixed))


def dense_tokens(
    visual: VisionTransformer,
    images: torch.Tensor,
    mode: str,
    cache: dict[tuple[int, int], torch.Tensor],
    naclip_std: float = NACLIP_STD,
) -> torch.Tensor:
    """``[B, 3, H, W]`` -> ``[B, D, H/p, W/p]`` un-normalised joint-space patch features of ``mode``
    (``naclip_std``: the std of mode naclip's prior, in patches)."""
    b, _, height, width = images.shape
    ph, pw = visual.patch_size
    if height % ph or width % pw:
        raise UserError(
            f"dense input of {height}x{width} pixels: height and width must be multiples of {ph}x{pw}"
        )
    x, grid = vit_tokens(visual, images, cache)
    blocks = visual.transformer.resblocks
    if mode == "naive":
        x = _run_blocks(visual, blocks, x)
    elif mode == "naclip":
        x = _naclip_block(blocks[-1], _run_blocks(visual, blocks[:-1], x), grid, naclip_std)
    else:
        x = _last_block(blocks[-1], _run_blocks(visual, blocks[:-1], x), mode)
    tokens = visual.ln_post(x[:, 1:]) @ visual.proj
    return tokens.transpose(1, 2).reshape(b, -1, *grid)
