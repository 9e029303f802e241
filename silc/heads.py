"""The DINO projection head: MLP → L2-normalised bottleneck → weight-normalised prototype layer."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

# Name of the weight-norm magnitude (g) of the prototype layer; it gets no weight decay and may be frozen at 1.
LAST_LAYER_SCALE = "last_layer.parametrizations.weight.original0"


@dataclass
class HeadConfig:
    """Sizes of the DINO head (DINO: hidden 2048, bottleneck 256, K = 65536 prototypes)."""

    out_dim: int = 65536
    hidden_dim: int = 2048
    bottleneck_dim: int = 256
    nlayers: int = 3
    norm_last_layer: bool = True


class DINOHead(nn.Module):
    """``nlayers``-layer GELU MLP to a bottleneck, L2-normalise, then a weight-normalised linear over K prototypes."""

    def __init__(self, in_dim: int, cfg: HeadConfig):
        super().__init__()
        if cfg.nlayers < 1:
            raise ValueError("head.nlayers must be >= 1")
        if cfg.nlayers == 1:
            self.mlp = nn.Linear(in_dim, cfg.bottleneck_dim)
        else:
            layers: list[nn.Module] = [nn.Linear(in_dim, cfg.hidden_dim), nn.GELU()]
            for _ in range(cfg.nlayers - 2):
                layers += [nn.Linear(cfg.hidden_dim, cfg.hidden_dim), nn.GELU()]
            layers.append(nn.Linear(cfg.hidden_dim, cfg.bottleneck_dim))
            self.mlp = nn.Sequential(*layers)
        self.mlp.apply(_init_linear)
        self.last_layer = weight_norm(nn.Linear(cfg.bottleneck_dim, cfg.out_dim, bias=False))
        scale = self.last_layer.parametrizations.weight.original0
        with torch.no_grad():
            scale.fill_(1.0)
        scale.requires_grad_(not cfg.norm_last_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.normalize(self.mlp(x), dim=-1, p=2)
        return self.last_layer(x)


def _init_linear(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
