"""Dense modes against an independent float64, per-head computation through open_clip's own modules."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch
import torch.nn.functional as F

from adapters import DENSE_MODES
from silc.errors import UserError

SIZES = [(64, 64), (96, 64), (128, 128)]


def _cubic(t: float, a: float = -0.75) -> list[float]:
    """Cubic-convolution weights of the 4 taps around a sample at fractional offset t (Keys, a = -0.75)."""

    def w(x: float) -> float:
        x = abs(x)
        if x <= 1:
            return (a + 2) * x**3 - (a + 3) * x**2 + 1
        if x < 2:
            return a * x**3 - 5 * a * x**2 + 8 * a * x - 4 * a
        return 0.0

    return [w(t + 1), w(t), w(1 - t), w(2 - t)]


def _resize_axis(grid: torch.Tensor, out: int, axis: int) -> torch.Tensor:
    """Bicubic resampling along one axis with half-pixel centres and clamped borders, written out by hand."""
    size = grid.shape[axis]
    rows = []
    for i in range(out):
        src = (i + 0.5) * size / out - 0.5
        base = math.floor(src)
        weights = _cubic(src - base)
        taps = [min(max(base - 1 + j, 0), size - 1) for j in range(4)]
        rows.append(sum(wt * grid.select(axis, tap) for wt, tap in zip(weights, taps, strict=True)))
    return torch.stack(rows, dim=axis)


def _reference_pos(visual, h: int, w: int) -> torch.Tensor:
    table = visual.positional_embedding
    gh, gw = visual.grid_size
    patches = table[1:].reshape(gh, gw, -1)
    patches = _resize_axis(_resize_axis(patches, h, 0), w, 1).reshape(h * w, -1)
    return torch.cat([table[:1], patches])


def naclip_prior(h: int, w: int, std: float) -> torch.Tensor:
    """NACLIP's additive attention prior written out: patch (i, j) is token 1 + i * w + j; exp(-squared grid
    distance / (2 std^2)) between patches, 0 in the class token's row and column."""
    n = h * w + 1
    prior = [[0.0] * n for _ in range(n)]
    for i in range(h):
        for j in range(w):
            for k in range(h):
                for m in range(w):
                    prior[1 + i * w + j][1 + k * w + m] = math.exp(
                        -((i - k) ** 2 + (j - m) ** 2) / (2 * std**2)
                    )
    return torch.tensor(prior, dtype=torch.float64)


def _reference_dense(visual, images: torch.Tensor, mode: str, naclip_std: float = 5.0) -> torch.Tensor:
    """Step-by-step dense features: open_clip modules for the fixed parts, the last block's attention by hand."""
    b, _, height, width = images.shape
    p = visual.conv1.kernel_size[0]
    h, w = height // p, width // p
    x = visual.conv1(images).flatten(2).transpose(1, 2)
    x = torch.cat([visual.class_embedding.expand(b, 1, -1), x], dim=1) + _reference_pos(visual, h, w)
    x = visual.ln_pre(x)
    for block in visual.transformer.resblocks[:-1]:
        x = block(x)
    block = visual.transformer.resblocks[-1]
    if mode == "naive":
        x = block(x)
    else:
        attn = block.attn
        c = x.shape[-1]
        y = block.ln_1(x)
        wq, wk, wv = attn.in_proj_weight[:c], attn.in_proj_weight[c : 2 * c], attn.in_proj_weight[2 * c :]
        bq, bk, bv = attn.in_proj_bias[:c], attn.in_proj_bias[c : 2 * c], attn.in_proj_bias[2 * c :]
        q, k, v = y @ wq.T + bq, y @ wk.T + bk, y @ wv.T + bv
        d = c // attn.num_heads
        n = x.shape[1]
        heads = []
        for i in range(attn.num_heads):
            qh, kh, vh = (t[..., i * d : (i + 1) * d] for t in (q, k, v))
            if mode == "vanilla":
                a = torch.softmax(qh @ kh.transpose(1, 2) / math.sqrt(d), dim=-1)
            elif mode == "maskclip":
                a = torch.eye(n, dtype=x.dtype).expand(b, n, n)
            elif mode == "sclip":
                a = torch.softmax(qh @ qh.transpose(1, 2) / math.sqrt(d), dim=-1) + torch.softmax(
                    kh @ kh.transpose(1, 2) / math.sqrt(d), dim=-1
                )
            elif mode == "naclip":
                logits = kh @ kh.transpose(1, 2) / math.sqrt(d) + naclip_prior(h, w, naclip_std)
                a = torch.softmax(logits, dim=-1)
            else:
                assert mode == "clearclip"
                a = torch.softmax(qh @ qh.transpose(1, 2) / math.sqrt(d), dim=-1)
            heads.append(a @ vh)
        o = torch.cat(heads, dim=-1) @ attn.out_proj.weight.T + attn.out_proj.bias
        if mode in ("clearclip", "naclip"):  # residual and FFN dropped
            x = o
        else:
            z = x + o
            x = z + block.mlp(block.ln_2(z))
    tokens = visual.ln_post(x[:, 1:]) @ visual.proj
    tokens = tokens / tokens.norm(dim=-1, keepdim=True)
    return tokens.reshape(b, h, w, -1).permute(0, 3, 1, 2)


@pytest.fixture(scope="module")
def visual64(tiny_encoder):
    return copy.deepcopy(tiny_encoder.model.visual).double()


def test_hand_written_attention_matches_open_clip_block(visual64):
    """The per-head reference reproduces nn.MultiheadAttention, so its head split is the one open_clip uses."""
    torch.manual_seed(1)
    images = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    assert visual64.transformer.resblocks[-1].attn.num_heads == 4
    torch.testing.assert_close(
        _reference_dense(visual64, images, "vanilla"),
        _reference_dense(visual64, images, "naive"),
        rtol=0,
        atol=1e-10,
    )


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("mode", DENSE_MODES)
def test_dense_mode_matches_step_by_step_reference(tiny_encoder, visual64, mode, size):
    torch.manual_seed(2)
    images = torch.randn(2, 3, *size)
    out = tiny_encoder.encode_dense(images, mode)
    h, w = size[0] // 8, size[1] // 8
    assert out.shape == (2, 64, h, w)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out.norm(dim=1), torch.ones(2, h, w), rtol=0, atol=1e-5)
    ref = _reference_dense(visual64, images.double(), mode).float()
    torch.testing.assert_close(out, ref, rtol=0, atol=2e-5)


def test_modes_are_different_protocols(tiny_encoder):
    torch.manual_seed(3)
    images = torch.randn(1, 3, 64, 64)
    outs = {mode: tiny_encoder.encode_dense(images, mode) for mode in DENSE_MODES}
    for i, a in enumerate(DENSE_MODES):
        for b in DENSE_MODES[i + 1 :]:
            assert (outs[a] - outs[b]).abs().max() > 1e-3, (a, b)


def test_naive_at_native_size_equals_open_clip_forward_intermediates(tiny_encoder):
    torch.manual_seed(4)
    images = torch.randn(3, 3, 64, 64)
    visual = tiny_encoder.model.visual
    with torch.inference_mode():
        out = visual.forward_intermediates(
            images, indices=1, normalize_intermediates=True, intermediates_only=True
        )
    tokens = out["image_intermediates"][-1]  # [B, width, h, w] after ln_post
    expected = F.normalize(torch.einsum("bchw,cd->bdhw", tokens, visual.proj), dim=1)
    torch.testing.assert_close(tiny_encoder.encode_dense(images, "naive"), expected, rtol=0, atol=1e-5)


def test_position_embeddings_are_cached_per_grid(tiny_encoder):
    images = torch.randn(1, 3, 96, 64)
    first = tiny_encoder.encode_dense(images, "sclip")
    assert (12, 8) in tiny_encoder._pos_cache
    torch.testing.assert_close(tiny_encoder.encode_dense(images, "sclip"), first, rtol=0, atol=0)


def test_dense_runs_under_inference_mode_without_grad(tiny_encoder):
    out = tiny_encoder.encode_dense(torch.randn(1, 3, 64, 64, requires_grad=True), "maskclip")
    assert not out.requires_grad
    assert not tiny_encoder.model.training


def test_unknown_mode_and_bad_size_are_user_errors(tiny_encoder):
    with pytest.raises(UserError, match="naive, maskclip, sclip, clearclip") as err:
        tiny_encoder.encode_dense(torch.randn(1, 3, 64, 64), "gem")
    assert "\n" not in str(err.value)
    with pytest.raises(UserError, match="multiples of 8x8"):
        tiny_encoder.encode_dense(torch.randn(1, 3, 60, 64), "naive")


@pytest.mark.parametrize(
    ("vision_extra", "message"),
    [
        ({"qk_norm": True}, "CustomResidualAttentionBlock blocks"),
        ({"attentional_pool": True}, "attentional pooler"),
    ],
)
def test_unsupported_vit_variants_fail_clearly(tmp_path, vision_extra, message):
    from adapters import load_encoder

    vision = {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 8, **vision_extra}
    text = {"context_length": 8, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}
    config = tmp_path / "variant.json"
    config.write_text(json.dumps({"embed_dim": 16, "vision_cfg": vision, "text_cfg": text}))
    enc = load_encoder(f"openclip:{config}")
    assert enc.patch_size == 8 and enc.dense_modes == ()
    assert enc.encode_image(torch.randn(1, 3, 32, 32)).shape == (1, 16)
    with pytest.raises(UserError, match=message):
        enc.encode_dense(torch.randn(1, 3, 32, 32), "naive")
