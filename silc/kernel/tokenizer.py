"""The model's tokenizer, with ``open_clip.get_tokenizer``'s semantics; the trainer and the encoders share it, so
captions are tokenized in training exactly as prompts and captions are in evaluation."""

from __future__ import annotations

from collections.abc import Callable

import open_clip
import torch
from open_clip.tokenizer import DEFAULT_CONTEXT_LENGTH, HFTokenizer, SimpleTokenizer

from silc.errors import UserError, first_line

Tokenizer = Callable[[list[str]], torch.Tensor]


def make_tokenizer(model_cfg: dict, builtin_name: str | None = None, source: str = "model") -> Tokenizer:
    """open_clip's tokenizer for a model.

    For an open_clip built-in model name, ``open_clip.get_tokenizer(builtin_name)`` itself. Otherwise what
    ``get_tokenizer`` builds from a config's ``text_cfg``: an ``HFTokenizer`` when ``hf_tokenizer_name`` is set
    (with ``tokenizer_mode``), else the CLIP BPE ``SimpleTokenizer``; both at the config's ``context_length``
    (default 77) and with its ``tokenizer_kwargs`` (e.g. ``{"clean": "canonicalize"}`` for SigLIP configs).
    A tokenizer that cannot be created (e.g. a Hugging Face tokenizer not in the local cache) raises a one-line
    UserError naming ``source``.
    """
    try:
        if builtin_name is not None:
            return open_clip.get_tokenizer(builtin_name)
        text_cfg = model_cfg["text_cfg"]
        context_length = text_cfg.get("context_length", DEFAULT_CONTEXT_LENGTH)
        kwargs = dict(text_cfg.get("tokenizer_kwargs") or {})
        if text_cfg.get("hf_tokenizer_name"):
            return HFTokenizer(
                text_cfg["hf_tokenizer_name"],
                context_length=context_length,
                tokenizer_mode=text_cfg.get("tokenizer_mode"),
                **kwargs,
            )
        return SimpleTokenizer(context_length=context_length, **kwargs)
    except Exception as e:
        raise UserError(f"{source}: cannot create the model's tokenizer ({first_line(e)})") from e
