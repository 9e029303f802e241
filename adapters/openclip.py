"""The open_clip implementation of the Encoder contract.

Models are built by the open_clip kernel (``silc.kernel``: open_clip's own classes, tokenizers and eval transform)
from an open_clip model-config dict (a built-in config, a config JSON file or the ``model_cfg`` of a SiLC
checkpoint), so their outputs are exactly open_clip's (``encode_image``/``encode_text`` equal
``model.encode_image/encode_text(normalize=True)``).
"""

from __future__ import annotations

from collections.abc import Sequence

import open_clip
import torch
import torch.nn.functional as F
from open_clip.transform import PreprocessCfg, image_transform_v2
from open_clip.transformer import VisionTransformer
from torch import nn

from adapters import dense
from adapters.encoder import DENSE_MODES, Encoder
from silc.errors import UserError


class OpenClipEncoder(Encoder):
    """An open_clip CLIP model behind the Encoder contract (frozen, eval mode, on ``device``)."""

    def __init__(
        self,
        model: nn.Module,
        *,
        name: str,
        spec: str,
        embed_dim: int,
        tokenizer,
        preprocess_cfg: dict,
        device: str | torch.device = "cpu",
    ) -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval().requires_grad_(False)
        open_clip.set_model_preprocess_cfg(self.model, preprocess_cfg)
        self.name = name
        self.spec = spec
        self.tokenizer = tokenizer
        self.preprocess = image_transform_v2(PreprocessCfg(**preprocess_cfg), is_train=False)
        self.mean = tuple(float(m) for m in preprocess_cfg["mean"])
        self.std = tuple(float(s) for s in preprocess_cfg["std"])
        size = preprocess_cfg["size"]
        self.image_size = int(size if isinstance(size, int) else size[0])
        self.embed_dim = int(embed_dim)
        self._dense_problem = dense.unsupported_reason(self.model.visual)
        is_vit = isinstance(self.model.visual, VisionTransformer)
        self.patch_size = int(self.model.visual.patch_size[0]) if is_vit else None
        self._pos_cache: dict[tuple[int, int], torch.Tensor] = {}

    @property
    def dense_modes(self) -> tuple[str, ...]:
        """The dense modes this model supports: all of DENSE_MODES for a standard ViT, none otherwise."""
        return () if self._dense_problem else DENSE_MODES

    @property
    def logit_scale(self) -> float:
        """exp of the model's learned logit scale (the temperature CLIP's logits use)."""
        return float(self.model.logit_scale.detach().exp().item())

    def state_dict_for_fingerprint(self) -> dict[str, torch.Tensor]:
        """The CLIP state_dict (the keys a SiLC checkpoint stores under ``state_dict``)."""
        return self.model.state_dict()

    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        """Texts -> ``[B, L]`` token ids with the model's own tokenizer and context length."""
        return self.tokenizer(list(texts))

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W]`` preprocessed images -> ``[B, D]`` L2-normalised embeddings."""
        with torch.inference_mode():
            return self.model.encode_image(images.to(self.device), normalize=True)

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        """``[B, L]`` tokens -> ``[B, D]`` L2-normalised embeddings."""
        with torch.inference_mode():
            return self.model.encode_text(tokens.to(self.device), normalize=True)

    def encode_dense(self, images: torch.Tensor, mode: str = "naive") -> torch.Tensor:
        """``[B, 3, H, W]`` -> ``[B, D, H/p, W/p]`` features of the named dense mode (see adapters.dense)."""
        if mode not in DENSE_MODES:
            raise UserError(f"dense mode {mode!r}: expected one of {', '.join(DENSE_MODES)}")
        if self._dense_problem:
            raise UserError(f"{self.name}: dense modes are unsupported: {self._dense_problem}")
        with torch.inference_mode():
            tokens = dense.dense_tokens(self.model.visual, images.to(self.device), mode, self._pos_cache)
            return F.normalize(tokens, dim=1)
