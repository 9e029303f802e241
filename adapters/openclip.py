"""The open_clip implementation of the Encoder contract.

Models are built by the open_clip kernel (``silc.kernel``: open_clip's own classes, tokenizers and eval transform)
from an open_clip model-config dict (a built-in config, a config JSON file or the ``model_cfg`` of a SiLC
checkpoint), so their outputs are exactly open_clip's (``encode_image``/``encode_text`` equal
``model.encode_image/encode_text(normalize=True)``; text features within 1e-6, see :func:`trimmed_text_features`).
"""

from __future__ import annotations

from collections.abc import Sequence

import open_clip
import torch
import torch.nn.functional as F
from open_clip.transform import PreprocessCfg, image_transform_v2
from open_clip.transformer import VisionTransformer, text_global_pool
from torch import nn

from adapters import dense
from adapters.encoder import DENSE_MODES, NACLIP_STD, Encoder, check_naclip_std
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
        """``[B, L]`` tokens -> ``[B, D]`` L2-normalised embeddings (causal towers run on the batch's longest
        text only: :func:`trimmed_text_features`)."""
        with torch.inference_mode():
            tokens = tokens.to(self.device)
            if trims_text(self.model):
                return F.normalize(trimmed_text_features(self.model, tokens), dim=-1)
            return self.model.encode_text(tokens, normalize=True)

    def encode_dense(
        self, images: torch.Tensor, mode: str = "naive", *, naclip_std: float = NACLIP_STD
    ) -> torch.Tensor:
        """``[B, 3, H, W]`` -> ``[B, D, H/p, W/p]`` features of the named dense mode (see adapters.dense)."""
        if mode not in DENSE_MODES:
            raise UserError(f"dense mode {mode!r}: expected one of {', '.join(DENSE_MODES)}")
        if self._dense_problem:
            raise UserError(f"{self.name}: dense modes are unsupported: {self._dense_problem}")
        std = check_naclip_std(naclip_std)
        with torch.inference_mode():
            tokens = dense.dense_tokens(self.model.visual, images.to(self.device), mode, self._pos_cache, std)
            return F.normalize(tokens, dim=1)


def trims_text(model: nn.Module) -> bool:
    """Whether ``model``'s text tower gives the same features on its tokens cut after the longest text: an
    open_clip ``CLIP`` with a causal mask and end-of-text pooling (``argmax``: the end-of-text id is the largest)."""
    return (
        isinstance(model, open_clip.CLIP)
        and model.text_pool_type == "argmax"
        and getattr(model, "attn_mask", None) is not None
    )


def trimmed_text_features(model: open_clip.CLIP, tokens: torch.Tensor) -> torch.Tensor:
    """``model.encode_text(tokens)`` computed on the first ``n`` positions only, ``n`` the batch's longest text up
    to its end-of-text token. Under the causal mask a position sees only those before it, and the pooled
    end-of-text position lies inside the ``n``, so the padding after it changes nothing: the same features (up to
    the summation order of shorter matrix products), at ``n / context_length`` of the cost. Captions and prompts
    are 10-25 tokens of the 77."""
    n = int(tokens.argmax(dim=-1).max()) + 1
    tokens = tokens[:, :n]
    cast_dtype = model.transformer.get_cast_dtype()
    x = model.token_embedding(tokens).to(cast_dtype) + model.positional_embedding[:n].to(cast_dtype)
    x = model.ln_final(model.transformer(x, attn_mask=model.attn_mask[:n, :n]))
    pooled = text_global_pool(x, tokens, pool_type="argmax")
    if isinstance(model.text_projection, nn.Linear):
        return model.text_projection(pooled)
    return pooled if model.text_projection is None else pooled @ model.text_projection
