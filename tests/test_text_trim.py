"""Text towers run on the batch's longest text: the same features as open_clip's full-context ``encode_text``."""

from __future__ import annotations

import copy
import json

import open_clip
import pytest
import torch
import torch.nn.functional as F

from adapters.openclip import OpenClipEncoder, trimmed_text_features, trims_text
from benchmarks.features import EncodeSettings, FeatureCache, encode_texts
from silc.kernel.build import build_model
from tests.conftest import TINY_MODEL_CONFIG

TEXTS = [
    "a photo of a tench.",
    "",
    "a bad photo of the great white shark, a large fish that lives in the open ocean of every continent.",
    "a dog",
    "word " * 100,  # cut at the context length: its end-of-text token is the last position
    "a rendering of a goldfish.",
]


def _tiny(**text_cfg) -> torch.nn.Module:
    cfg = json.loads(TINY_MODEL_CONFIG.read_text())
    cfg["text_cfg"] |= text_cfg
    torch.manual_seed(0)
    return build_model(cfg, "tiny").eval()


def _full(model: torch.nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return model.encode_text(tokens, normalize=True)


def _seen_lengths(model: torch.nn.Module) -> list[int]:
    seen: list[int] = []
    model.transformer.register_forward_hook(lambda _m, args, _out: seen.append(args[0].shape[1]))
    return seen


@pytest.mark.parametrize("texts", [TEXTS, TEXTS[:2] + TEXTS[3:4], ["a photo of a cat."] * 3])
def test_trimmed_features_equal_open_clips_full_context_ones(texts: list[str]) -> None:
    model = _tiny()
    tokenizer = open_clip.get_tokenizer("ViT-B-32", context_length=model.context_length)
    tokens = tokenizer(texts)
    with torch.inference_mode():
        trimmed = F.normalize(trimmed_text_features(model, tokens), dim=-1)
    assert trims_text(model)
    assert torch.allclose(trimmed, _full(model, tokens), rtol=0, atol=1e-6)


def test_the_tower_sees_only_the_longest_text_of_the_batch() -> None:
    model = _tiny()
    tokenizer = open_clip.get_tokenizer("ViT-B-32", context_length=model.context_length)
    encoder = OpenClipEncoder(
        model, name="tiny", spec="tiny", embed_dim=64, tokenizer=tokenizer, preprocess_cfg=_preprocess()
    )
    seen = _seen_lengths(model)
    tokens = tokenizer(["a dog", "a photo of a dog."])  # 2 + 2 and 6 + 2 tokens with start and end
    features = encoder.encode_text(tokens)
    assert seen == [8]
    assert torch.allclose(features, _full(model, tokens), rtol=0, atol=1e-6)


@pytest.mark.parametrize("text_cfg", [{"pool_type": "last"}, {"no_causal_mask": True}])
def test_towers_that_see_the_padding_are_not_trimmed(text_cfg: dict) -> None:
    model = _tiny(**text_cfg)
    tokenizer = open_clip.get_tokenizer("ViT-B-32", context_length=model.context_length)
    encoder = OpenClipEncoder(
        model, name="tiny", spec="tiny", embed_dim=64, tokenizer=tokenizer, preprocess_cfg=_preprocess()
    )
    seen = _seen_lengths(model)
    tokens = tokenizer(["a dog"])
    assert not trims_text(model)
    features = encoder.encode_text(tokens)
    assert seen == [model.context_length]
    assert torch.equal(features, _full(model, tokens))


def test_encode_texts_returns_rows_in_the_order_given(tiny_encoder) -> None:
    """Texts are encoded shortest first, in chunks; the rows come back in the caller's order."""
    texts = [t for t in TEXTS for _ in range(60)][::-1] + ["x"]  # 361 texts: two chunks of mixed lengths
    settings = EncodeSettings(precision="fp32", batch_size=64, workers=0, cache=FeatureCache(None))
    rows = encode_texts(copy.copy(tiny_encoder), texts, settings).tensor
    one_by_one = torch.cat([tiny_encoder.encode_text(tiny_encoder.tokenize([t])) for t in TEXTS + ["x"]])
    expected = one_by_one[[(TEXTS + ["x"]).index(t) for t in texts]]
    assert rows.shape == (len(texts), tiny_encoder.embed_dim)
    assert torch.allclose(rows, expected, rtol=0, atol=1e-6)


def _preprocess() -> dict:
    return {
        "size": 64,
        "mode": "RGB",
        "mean": open_clip.OPENAI_DATASET_MEAN,
        "std": open_clip.OPENAI_DATASET_STD,
        "interpolation": "bicubic",
        "resize_mode": "shortest",
        "fill_color": 0,
    }
