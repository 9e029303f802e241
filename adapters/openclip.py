"""The open_clip implementation of the Encoder contract, and building open_clip models from config dicts.

Models are built from an open_clip model-config dict (a built-in config, a config JSON file or the ``model_cfg``
of a SiLC checkpoint) with open_clip's own classes, tokenizers and eval transform, so their outputs are exactly
open_clip's (``encode_image``/``encode_text`` equal ``model.encode_image/encode_text(normalize=True)``).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import open_clip
import torch
import torch.nn.functional as F
from open_clip.transform import PreprocessCfg, image_transform_v2, merge_preprocess_dict
from open_clip.transformer import VisionTransformer
from torch import nn

from adapters import dense
from adapters.encoder import DENSE_MODES, Encoder
from silc.errors import UserError


def first_line(error: BaseException) -> str:
    """The first non-empty line of an exception's message (CLI errors are one line)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


def check_model_cfg(model_cfg: Any, source: str) -> dict:
    """Validate the outline of an open_clip model config (the keys every CLIP config has)."""
    if not isinstance(model_cfg, dict) or not all(
        k in model_cfg for k in ("embed_dim", "vision_cfg", "text_cfg")
    ):
        raise UserError(
            f"{source}: expected an open_clip model config with embed_dim, vision_cfg and text_cfg"
        )
    return model_cfg


def build_model(model_cfg: dict, source: str) -> nn.Module:
    """Instantiate the open_clip model class a config asks for (as ``open_clip.create_model`` picks it), random init."""
    cfg = copy.deepcopy(check_model_cfg(model_cfg, source))
    text_cfg = cfg["text_cfg"]
    is_hf_text = "hf_model_name" in text_cfg
    if is_hf_text:
        text_cfg["hf_model_pretrained"] = False  # the CLIP weights loaded next replace them; never download
    custom_text = cfg.pop("custom_text", False) or is_hf_text
    if custom_text:
        model_class = open_clip.CoCa if "multimodal_cfg" in cfg else open_clip.CustomTextCLIP
    else:
        model_class = open_clip.CLIP
    try:
        return model_class(**cfg)
    except Exception as e:  # any failure here comes from the user's config (bad key, value, missing HF files)
        raise UserError(
            f"{source}: cannot build an open_clip model from this config ({first_line(e)})"
        ) from e


def make_tokenizer(model_cfg: dict, builtin_name: str | None, source: str):
    """open_clip's tokenizer for the model: ``get_tokenizer`` for built-in names, else from the config's text_cfg."""
    try:
        if builtin_name is not None:
            return open_clip.get_tokenizer(builtin_name)
        text_cfg = model_cfg["text_cfg"]
        context_length = text_cfg.get("context_length", open_clip.tokenizer.DEFAULT_CONTEXT_LENGTH)
        kwargs = dict(text_cfg.get("tokenizer_kwargs") or {})
        if text_cfg.get("hf_tokenizer_name"):
            return open_clip.tokenizer.HFTokenizer(
                text_cfg["hf_tokenizer_name"],
                context_length=context_length,
                tokenizer_mode=text_cfg.get("tokenizer_mode"),
                **kwargs,
            )
        return open_clip.SimpleTokenizer(context_length=context_length, **kwargs)
    except Exception as e:  # e.g. a Hugging Face tokenizer that is not in the local cache
        raise UserError(f"{source}: cannot create the model's tokenizer ({first_line(e)})") from e


def preprocess_cfg_for(model: nn.Module, overlay: dict | None = None) -> dict:
    """open_clip's eval preprocessing config: defaults, then ``overlay`` (a config file's preprocess_cfg), model size."""
    cfg = merge_preprocess_dict(PreprocessCfg(), overlay or {})
    cfg["size"] = model.visual.image_size
    # JSON gives lists where open_clip's defaults are tuples: one form, so the recorded transform is the same text.
    return {k: tuple(v) if isinstance(v, list) else v for k, v in cfg.items()}


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
