"""The Encoder contract: the only interface through which benchmarks talk to a model."""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from silc.errors import UserError

if TYPE_CHECKING:
    import torch

DENSE_MODES = ("naive", "maskclip", "sclip", "clearclip", "naclip")
NACLIP_STD = 5.0  # NACLIP's default std of its Gaussian neighbourhood prior, in patches


def check_naclip_std(std: float) -> float:
    """``std`` as a float when it is a usable std of NACLIP's Gaussian prior (a positive, finite number of
    patches); a one-line UserError otherwise."""
    if isinstance(std, bool) or not isinstance(std, int | float) or not 0 < std < float("inf"):
        raise UserError(f"naclip_std: expected a positive number of patches, got {std!r}")
    return float(std)


class Encoder(ABC):
    """A vision-language encoder: global image/text embeddings and dense patch features in one joint space.

    All outputs are L2-normalised. ``encode_dense`` returns ``[B, D, H/p, W/p]`` for any input size, in any of
    the modes listed by :attr:`dense_modes`.
    """

    name: str  # alias or model name, shown in results
    spec: str  # the spec string it was loaded from
    embed_dim: int
    patch_size: int | None  # None for towers without patches (dense modes unsupported)
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    preprocess: Callable  # PIL image -> [3, H, W] tensor, the model's eval transform
    device: torch.device

    @property
    @abstractmethod
    def dense_modes(self) -> tuple[str, ...]:
        """The dense modes (names from ``DENSE_MODES``) that :meth:`encode_dense` supports; ``()`` when it has none.

        Implementations may define it as a property or as a plain (class) attribute."""

    @abstractmethod
    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W]`` preprocessed images -> ``[B, D]`` normalised embeddings."""

    @abstractmethod
    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        """``[B, L]`` tokens from :meth:`tokenize` -> ``[B, D]`` normalised embeddings."""

    @abstractmethod
    def encode_dense(
        self, images: torch.Tensor, mode: str = "naive", *, naclip_std: float = NACLIP_STD
    ) -> torch.Tensor:
        """``[B, 3, H, W]`` -> ``[B, D, H/p, W/p]`` patch features in the joint space, normalised per location.
        ``naclip_std``: the std (in patches) of mode ``naclip``'s Gaussian prior; callers pass it only with that
        mode."""

    @abstractmethod
    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        """Texts -> ``[B, L]`` token ids for :meth:`encode_text`."""

    @abstractmethod
    def state_dict_for_fingerprint(self) -> dict[str, torch.Tensor]:
        """The tensors that define the weights (for :attr:`fingerprint`)."""

    @property
    def logit_scale(self) -> float:
        """The model's learned (exp'd) logit scale, or CLIP's 100 when it has none."""
        return 100.0

    @property
    def fingerprint(self) -> str:
        """sha256 over the sorted state_dict (names, dtypes, shapes and bytes): weights provenance."""
        cached = getattr(self, "_fingerprint", None)
        if cached is None:
            cached = weights_fingerprint(self.state_dict_for_fingerprint())
            self._fingerprint = cached
        return cached


def weights_fingerprint(state_dict: dict[str, torch.Tensor]) -> str:
    """sha256 hex digest of a state_dict, independent of device and insertion order."""
    import torch

    h = hashlib.sha256()
    for key in sorted(state_dict):
        t = state_dict[key].detach().to("cpu").contiguous()
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()
