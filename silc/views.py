"""Multi-crop views (DINO recipe): G global and L local augmented crops per image, all randomness from one
caller-supplied ``torch.Generator`` so a sample's views depend only on its seed, never on workers or resume."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torchvision.transforms.v2.functional as F
from PIL import Image
from torchvision.transforms import InterpolationMode

from silc.errors import UserError


@dataclass
class ViewsConfig:
    """Crop counts, sizes and augmentation strengths; defaults are DINO's (2 x 224 global, 8 x 96 local).

    Per-global-view settings (``global_blur_p``, ``solarize_p``) are sequences: global view ``g`` uses entry
    ``g % len(seq)``, so DINO's asymmetric pair (blur 1.0 / 0.1, solarise 0 / 0.2) is the default.
    """

    global_crops: int = 2
    local_crops: int = 8
    global_size: int = 224
    local_size: int = 96
    global_scale: tuple[float, float] = (0.4, 1.0)
    local_scale: tuple[float, float] = (0.05, 0.4)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_p: float = 0.5
    color_jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.2, 0.1)  # brightness, contrast, sat., hue
    color_jitter_p: float = 0.8
    grayscale_p: float = 0.2
    global_blur_p: tuple[float, ...] = (1.0, 0.1)
    local_blur_p: float = 0.5
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    solarize_p: tuple[float, ...] = (0.0, 0.2)
    clean_global: bool = False

    def __post_init__(self) -> None:
        for name in (
            "global_scale",
            "local_scale",
            "ratio",
            "color_jitter",
            "global_blur_p",
            "blur_sigma",
            "solarize_p",
        ):
            setattr(self, name, tuple(float(v) for v in getattr(self, name)))
        pairs = {
            "global_scale": self.global_scale,
            "local_scale": self.local_scale,
            "ratio": self.ratio,
            "blur_sigma": self.blur_sigma,
        }
        for name, pair in pairs.items():
            if len(pair) != 2 or not 0 < pair[0] <= pair[1]:
                raise UserError(f"views.{name}: expected two numbers 0 < low <= high, got {list(pair)}")
        if self.global_crops < 1 or self.local_crops < 0:
            raise UserError(
                f"views: need global_crops >= 1 and local_crops >= 0, got {self.global_crops}, "
                f"{self.local_crops}"
            )
        if self.global_size < 1 or self.local_size < 1:
            raise UserError(f"views: crop sizes must be positive, got {self.global_size}, {self.local_size}")
        if len(self.color_jitter) != 4 or min(self.color_jitter) < 0 or self.color_jitter[3] > 0.5:
            raise UserError(
                f"views.color_jitter: expected [brightness, contrast, saturation, hue] >= 0 with hue <= 0.5, "
                f"got {list(self.color_jitter)}"
            )
        if not self.global_blur_p or not self.solarize_p:
            raise UserError("views.global_blur_p and views.solarize_p need at least one entry")


CROP_DRAWS = 22  # uniforms crop_params consumes: 10 tries x (area, aspect) + (top, left)
# per view: the crop, then flip, jitter (coin, 4 factors, 4 order keys), grayscale, blur (coin, sigma), solarize
VIEW_DRAWS = CROP_DRAWS + 14


def crop_params(
    height: int, width: int, scale: Sequence[float], ratio: Sequence[float], u: Sequence[float]
) -> tuple[int, int, int, int]:
    """RandomResizedCrop's (top, left, h, w) sampling from ``CROP_DRAWS`` uniforms ``u`` in [0, 1): 10 tries of
    area x log-uniform aspect, the position of the first crop that fits, else the largest centred crop."""
    area = height * width
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for t in range(10):
        target = area * (scale[0] + (scale[1] - scale[0]) * u[2 * t])
        aspect = math.exp(log_lo + (log_hi - log_lo) * u[2 * t + 1])
        w = round(math.sqrt(target * aspect))
        h = round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            return int(u[20] * (height - h + 1)), int(u[21] * (width - w + 1)), h, w
    in_ratio = width / height
    if in_ratio < ratio[0]:
        w, h = width, round(width / ratio[0])
    elif in_ratio > ratio[1]:
        h, w = height, round(height * ratio[1])
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def _blur_matrix(n: int, k: int, sigma: float) -> torch.Tensor:
    """[n, n] matrix applying a 1-D Gaussian of ``k`` taps along an axis of length ``n``, with reflect padding."""
    offsets = torch.arange(k) - k // 2
    taps = torch.exp(-offsets.float().pow(2) / (2 * sigma * sigma))
    taps /= taps.sum()
    cols = (torch.arange(n).unsqueeze(1) + offsets).abs()
    cols = torch.where(cols >= n, 2 * (n - 1) - cols, cols)
    return torch.zeros(n, n).scatter_add_(1, cols, taps.expand(n, k).contiguous())


def gaussian_blur(img: torch.Tensor, sigma: float) -> torch.Tensor:
    """torchvision's ``gaussian_blur`` (reflect padding, kernel ``2*ceil(3 sigma) + 1``) on a uint8 [3, H, W]
    image, as two band-matrix products: about 10x faster than its 2-D convolution on small crops."""
    h, w = img.shape[-2:]
    k = min(2 * math.ceil(3 * sigma) + 1, 2 * min(h, w) - 1)  # reflect padding needs k // 2 < size
    out = _blur_matrix(h, k, sigma) @ img.float() @ _blur_matrix(w, k, sigma).T
    return out.round_().clamp_(0, 255).to(torch.uint8)


_HUE_OFFSETS = torch.tensor([5.0, 3.0, 1.0]).view(3, 1, 1)


def adjust_hue(img: torch.Tensor, factor: float) -> torch.Tensor:
    """torchvision's ``adjust_hue`` (HSV hue rotation by ``factor`` turns) on a uint8 [3, H, W] image, with the
    closed-form HSV-to-RGB map (``V - C * clamp(min(k, 4 - k), 0, 1)``): half the operations."""
    x = F.to_dtype(img, torch.float32, scale=True)
    r, g, b = x.unbind(0)
    lo, hi = torch.aminmax(x, dim=0)
    chroma = hi - lo
    safe = torch.where(chroma > 0, chroma, torch.ones_like(chroma))
    hue6 = torch.where(hi == r, (g - b) / safe, torch.where(hi == g, (b - r) / safe + 2, (r - g) / safe + 4))
    k = (hue6 + 6 * factor).unsqueeze(0).add(_HUE_OFFSETS).remainder_(6.0)
    out = hi - chroma * torch.minimum(k, 4 - k).clamp_(0, 1)
    return F.to_dtype(out, torch.uint8, scale=True)


class MultiCropViews:
    """Turns one PIL image into normalised global/local view tensors (and optionally the clean global view)."""

    def __init__(self, cfg: ViewsConfig, mean: Sequence[float], std: Sequence[float]):
        self.cfg = cfg
        self.mean = [float(m) for m in mean]
        self.std = [float(s) for s in std]

    def __call__(self, image: Image.Image, generator: torch.Generator) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        img = F.pil_to_tensor(image.convert("RGB"))  # uint8 [3, H, W]
        glob = [
            self._view(
                img,
                cfg.global_size,
                cfg.global_scale,
                cfg.global_blur_p[i % len(cfg.global_blur_p)],
                cfg.solarize_p[i % len(cfg.solarize_p)],
                generator,
            )
            for i in range(cfg.global_crops)
        ]
        local = [
            self._view(img, cfg.local_size, cfg.local_scale, cfg.local_blur_p, 0.0, generator)
            for _ in range(cfg.local_crops)
        ]
        out = {
            "global": torch.stack(glob),
            "local": torch.stack(local) if local else torch.empty(0, 3, cfg.local_size, cfg.local_size),
        }
        if cfg.clean_global:
            clean = F.resize(img, [cfg.global_size], interpolation=InterpolationMode.BICUBIC, antialias=True)
            out["clean"] = self._normalize(F.center_crop(clean, [cfg.global_size, cfg.global_size]))
        return out

    def _view(
        self,
        img: torch.Tensor,
        size: int,
        scale: Sequence[float],
        blur_p: float,
        solarize_p: float,
        g: torch.Generator,
    ) -> torch.Tensor:
        cfg = self.cfg
        u = torch.rand(VIEW_DRAWS, generator=g, dtype=torch.float64).tolist()  # one draw per view: cheap
        top, left, h, w = crop_params(img.shape[-2], img.shape[-1], scale, cfg.ratio, u[:CROP_DRAWS])
        x = F.resized_crop(
            img, top, left, h, w, [size, size], interpolation=InterpolationMode.BICUBIC, antialias=True
        )
        flip, jitter, factors, order, gray, blur, sigma, solarize = (
            u[22],
            u[23],
            u[24:28],
            u[28:32],
            u[32],
            u[33],
            u[34],
            u[35],
        )
        if flip < cfg.flip_p:
            x = F.horizontal_flip(x)
        if jitter < cfg.color_jitter_p:
            x = self._jitter(x, factors, order)
        if gray < cfg.grayscale_p:
            x = F.rgb_to_grayscale(x, num_output_channels=3)
        if blur < blur_p:
            lo, hi = cfg.blur_sigma
            x = gaussian_blur(x, lo + (hi - lo) * sigma)
        if solarize < solarize_p:
            x = F.solarize(x, threshold=128)
        return self._normalize(x)

    def _jitter(self, x: torch.Tensor, u: Sequence[float], order: Sequence[float]) -> torch.Tensor:
        """ColorJitter: brightness/contrast/saturation/hue, factors uniform in their ranges, in the random
        order given by sorting the four ``order`` uniforms."""
        b, c, s, h = self.cfg.color_jitter
        ranges = [(max(0.0, 1 - b), 1 + b), (max(0.0, 1 - c), 1 + c), (max(0.0, 1 - s), 1 + s), (-h, h)]
        ops = [F.adjust_brightness, F.adjust_contrast, F.adjust_saturation, adjust_hue]
        for i in sorted(range(4), key=order.__getitem__):
            lo, hi = ranges[i]
            x = ops[i](x, lo + (hi - lo) * u[i])
        return x

    def _normalize(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x.float().div_(255.0), self.mean, self.std)
