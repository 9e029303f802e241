"""Multi-crop views: shapes, seeded determinism without global RNG, crop sampling, and each augmentation wired."""

from __future__ import annotations

import random

import numpy as np
import open_clip
import pytest
import torch
import torchvision.transforms.v2.functional as F
from PIL import Image
from torchvision.transforms import InterpolationMode

from silc.errors import UserError
from silc.views import CROP_DRAWS, MultiCropViews, ViewsConfig, adjust_hue, crop_params, gaussian_blur

MEAN, STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
# Every augmentation off: a full-image, square crop is then just a resize.
PLAIN = dict(
    global_scale=(1.0, 1.0),
    ratio=(1.0, 1.0),
    flip_p=0.0,
    color_jitter_p=0.0,
    grayscale_p=0.0,
    global_blur_p=(0.0,),
    local_blur_p=0.0,
    solarize_p=(0.0,),
)


def _image(h: int = 40, w: int = 40, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _unnormalize(x: torch.Tensor) -> torch.Tensor:
    return x * torch.tensor(STD).view(3, 1, 1) + torch.tensor(MEAN).view(3, 1, 1)


def test_shapes_and_clean_view():
    views = MultiCropViews(ViewsConfig(global_size=32, local_size=16, clean_global=True), MEAN, STD)
    out = views(_image(50, 30), _gen(0))
    assert out["global"].shape == (2, 3, 32, 32) and out["global"].dtype == torch.float32
    assert out["local"].shape == (8, 3, 16, 16)
    assert out["clean"].shape == (3, 32, 32)
    # The clean view is open_clip's eval transform (bicubic resize of the short side + centre crop).
    ref = open_clip.image_transform(32, is_train=False, mean=MEAN, std=STD)(_image(50, 30))
    assert (out["clean"] - ref).abs().mean() < 0.03


def test_zero_local_views_and_one_global():
    views = MultiCropViews(
        ViewsConfig(global_crops=1, local_crops=0, global_size=24, local_size=12), MEAN, STD
    )
    out = views(_image(), _gen(0))
    assert out["global"].shape == (1, 3, 24, 24)
    assert out["local"].shape == (0, 3, 12, 12)
    assert "clean" not in out


def test_seeded_and_independent_of_global_rng():
    views = MultiCropViews(ViewsConfig(global_size=32, local_size=16), MEAN, STD)
    img = _image()
    torch.manual_seed(1)
    random.seed(1)
    torch_state, py_state = torch.get_rng_state(), random.getstate()
    a = views(img, _gen(5))
    assert torch.equal(torch.get_rng_state(), torch_state) and random.getstate() == py_state
    torch.manual_seed(2)
    b = views(img, _gen(5))
    c = views(img, _gen(6))
    assert torch.equal(a["global"], b["global"]) and torch.equal(a["local"], b["local"])
    assert not torch.equal(a["global"], c["global"])
    assert not torch.equal(a["global"][0], a["global"][1])  # the two global views differ


def test_crop_params_follow_scale_and_ratio():
    g = _gen(0)
    crops = [
        crop_params(60, 80, (0.05, 0.4), (3 / 4, 4 / 3), torch.rand(CROP_DRAWS, generator=g).tolist())
        for _ in range(300)
    ]
    for top, left, h, w in crops:
        assert top >= 0 and top + h <= 60 and left >= 0 and left + w <= 80
        assert 0.05 * 0.9 <= h * w / (60 * 80) <= 0.4 * 1.1
        assert 3 / 4 * 0.85 <= w / h <= 4 / 3 * 1.15
    # Positions are uniform over the free range: crops touch every border and the centres spread out.
    assert min(c[0] for c in crops) == 0 and max(c[0] + c[2] for c in crops) == 60
    assert min(c[1] for c in crops) == 0 and max(c[1] + c[3] for c in crops) == 80
    centres = torch.tensor([[c[0] + c[2] / 2, c[1] + c[3] / 2] for c in crops])
    assert (centres.mean(0) - torch.tensor([30.0, 40.0])).abs().max() < 3
    # Impossible aspect ranges fall back to the largest centred crop within the ratio.
    assert crop_params(10, 100, (0.99, 1.0), (1.0, 1.0), [0.5] * CROP_DRAWS) == (0, 45, 10, 10)


@pytest.mark.parametrize("size", [(9, 31), (32, 32), (64, 48)])
def test_fast_blur_and_hue_match_torchvision(size):
    img = F.pil_to_tensor(_image(*size, seed=size[0]))
    img[:, :3, :3] = 90  # a grey patch (zero chroma)
    for sigma in (0.1, 0.7, 2.0):
        k = min(2 * int(np.ceil(3 * sigma)) + 1, 2 * min(size) - 1)
        ref = F.gaussian_blur(img, [k, k], [sigma, sigma])
        assert (gaussian_blur(img, sigma).int() - ref.int()).abs().max() <= 1
    for factor in (-0.5, -0.1, 0.03, 0.25, 0.5):
        diff = (adjust_hue(img, factor).int() - F.adjust_hue(img, factor).int()).abs()
        assert diff.max() <= 1 and (diff > 0).float().mean() < 0.01


def test_plain_view_is_resize_and_normalize():
    views = MultiCropViews(ViewsConfig(global_crops=1, local_crops=0, global_size=20, **PLAIN), MEAN, STD)
    img = _image(40, 40)
    out = views(img, _gen(0))["global"][0]
    ref = F.resize(F.pil_to_tensor(img), [20, 20], interpolation=InterpolationMode.BICUBIC, antialias=True)
    assert torch.allclose(_unnormalize(out), ref.float() / 255, atol=1e-5)


@pytest.mark.parametrize(
    ("override", "check"),
    [
        ({"flip_p": 1.0}, lambda x, base: torch.allclose(x, base.flip(-1), atol=1e-5)),
        (
            {"grayscale_p": 1.0},
            lambda x, base: torch.allclose(x[0], x[1], atol=1e-5) and torch.allclose(x[1], x[2], atol=1e-5),
        ),
        (
            {"solarize_p": (1.0,)},
            lambda x, base: torch.allclose(x, torch.where(base >= 128 / 255, 1 - base, base), atol=1e-5),
        ),
        (
            {"global_blur_p": (1.0,)},
            lambda x, base: (x.diff(dim=-1).abs().mean() < 0.8 * base.diff(dim=-1).abs().mean()).item(),
        ),
        ({"color_jitter_p": 1.0}, lambda x, base: not torch.allclose(x, base, atol=1e-2)),
    ],
)
def test_each_augmentation_applies_with_probability_one(override, check):
    img = _image(40, 40)
    base = _unnormalize(
        MultiCropViews(ViewsConfig(global_crops=1, local_crops=0, global_size=20, **PLAIN), MEAN, STD)(
            img, _gen(0)
        )["global"][0]
    )
    cfg = ViewsConfig(global_crops=1, local_crops=0, global_size=20, **{**PLAIN, **override})
    x = _unnormalize(MultiCropViews(cfg, MEAN, STD)(img, _gen(0))["global"][0])
    assert check(x, base)


def test_dino_per_view_probabilities():
    """Global view 1 always blurred and never solarised, view 2 solarised ~20% of the time (DINO)."""
    cfg = ViewsConfig(
        global_crops=2,
        local_crops=0,
        global_size=8,
        global_scale=(1.0, 1.0),
        ratio=(1.0, 1.0),
        flip_p=0.0,
        color_jitter_p=0.0,
        grayscale_p=0.0,
        global_blur_p=(0.0,),
    )
    views = MultiCropViews(cfg, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    bright = Image.new("RGB", (8, 8), (220, 220, 220))  # solarising inverts values >= 128: dark
    solarised = torch.tensor(
        [[views(bright, _gen(s))["global"][v].mean() < 0.5 for v in range(2)] for s in range(300)]
    )
    assert not solarised[:, 0].any()
    assert 0.13 < solarised[:, 1].float().mean() < 0.27


def test_bad_config_is_a_user_error():
    with pytest.raises(UserError, match="views.local_scale"):
        ViewsConfig(local_scale=(0.5, 0.1))
    with pytest.raises(UserError, match="global_crops"):
        ViewsConfig(global_crops=0)
