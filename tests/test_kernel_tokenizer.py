"""The open_clip kernel: train and evaluation tokenize alike (tokenizer_kwargs included), one ViT token path,
one class-embedding builder with open_clip's semantics, one precision vocabulary."""

from __future__ import annotations

import csv

import open_clip
import pytest
import torch
import torch.nn.functional as F

from adapters import load_encoder
from silc.config import config_from_dict
from silc.errors import UserError
from silc.kernel import (
    Templates,
    build_class_embeddings,
    build_model,
    encode_visual,
    make_tokenizer,
    normalize_precision,
    resolve_model_config,
    resolve_precision,
    resolve_templates,
    template_set,
)
from silc.train import Trainer
from tests.train_fixtures import tiny_config, write_pairs_csv

# SigLIP-style: sigmoid loss, a logit bias, a text tower without causal mask, and open_clip's SigLIP cleaning.
SIGLIP_MODEL = {
    "name": "silc-tiny-vit",
    "overrides": {
        "init_logit_bias": -10,
        "vision_cfg": {"image_size": 32, "layers": 2},
        "text_cfg": {
            "layers": 1,
            "context_length": 16,
            "no_causal_mask": True,
            "tokenizer_kwargs": {"clean": "canonicalize"},
        },
    },
}
CAPTIONS = [
    "A Photo of a RED circle.",
    "two_dogs, playing!",
    "a photo of a blue square",
    "Hello,   World -- (it's) a {test}",
]


@pytest.fixture(scope="module")
def siglip_run(tmp_path_factory):
    """One training step of the SigLIP-style config on captions with capitals and punctuation."""
    root = tmp_path_factory.mktemp("pairs")
    path = write_pairs_csv(root, n=8)
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    rows[1:] = [
        [file, f"A Photo of a {caption.split()[-2].upper()}_{caption.split()[-1]}!"]
        for file, caption in rows[1:]
    ]
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows(rows)
    cfg = tiny_config(
        path,
        model=SIGLIP_MODEL,
        loss={"contrastive": "siglip"},
        train={"steps": 1, "save_every": 1},
    )
    run = tmp_path_factory.mktemp("run")
    trainer = Trainer(config_from_dict(cfg), run)
    trainer.run()
    return trainer, run, [caption for _, caption in rows[1:]]


def test_trainer_and_encoder_tokenize_identically(siglip_run):
    trainer, run, data_captions = siglip_run
    encoder = load_encoder(str(run))
    assert trainer.model_cfg["text_cfg"]["tokenizer_kwargs"] == {"clean": "canonicalize"}
    for captions in (CAPTIONS, data_captions):
        assert torch.equal(trainer.tokenizer(captions), encoder.tokenize(captions))
    # what the training loader fed the text tower is the encoder's tokenization of the run's captions
    batch = next(iter(trainer.loader))
    expected = {tuple(row.tolist()) for row in encoder.tokenize(data_captions)}
    assert {tuple(row.tolist()) for row in batch["text"]} <= expected


def test_tokenizer_kwargs_change_the_tokens(siglip_run):
    trainer, _, _ = siglip_run
    default = make_tokenizer({"text_cfg": {"context_length": 16}})
    differs = [c for c in CAPTIONS if not torch.equal(trainer.tokenizer([c]), default([c]))]
    assert differs, "canonicalize cleaning must differ from the default lower-casing on some caption"
    # and it is exactly open_clip's own tokenizer with those kwargs
    reference = open_clip.SimpleTokenizer(context_length=16, clean="canonicalize")
    assert torch.equal(trainer.tokenizer(CAPTIONS), reference(CAPTIONS))


def test_builtin_names_use_open_clip_get_tokenizer():
    _, cfg = resolve_model_config("ViT-B-32")
    assert torch.equal(
        make_tokenizer(cfg, "ViT-B-32")(CAPTIONS), open_clip.get_tokenizer("ViT-B-32")(CAPTIONS)
    )
    assert torch.equal(make_tokenizer(cfg)(CAPTIONS), open_clip.get_tokenizer("ViT-B-32")(CAPTIONS))


def test_bad_model_configs_are_one_line_user_errors(tmp_path):
    with pytest.raises(UserError, match="unknown open_clip model") as err:
        resolve_model_config("NoSuchModel-1")
    assert "\n" not in str(err.value)
    _, cfg = resolve_model_config("silc-tiny-vit")
    with pytest.raises(UserError, match="CoCa"):
        build_model({**cfg, "multimodal_cfg": {}}, "model", allow_coca=False)
    with pytest.raises(UserError, match="cannot build an open_clip model"):
        build_model({**cfg, "vision_cfg": {**cfg["vision_cfg"], "no_such_key": 1}}, "model")


def _old_trainer_encode_visual(visual, x):
    """The trainer's forward before the kernel (silc/model.py at 5f54171), kept here as the parity reference."""
    x = visual.conv1(x)
    grid = tuple(x.shape[-2:])
    x = x.flatten(2).transpose(1, 2)
    cls = visual.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
    pos, old = visual.positional_embedding, visual.grid_size
    patch = pos[1:].reshape(1, old[0], old[1], -1).permute(0, 3, 1, 2)
    patch = F.interpolate(patch, size=grid, mode="bicubic", align_corners=False)
    pos = torch.cat([pos[:1], patch.permute(0, 2, 3, 1).reshape(grid[0] * grid[1], -1)], dim=0)
    x = visual.ln_pre(visual.patch_dropout(torch.cat([cls, x], dim=1) + pos.to(x.dtype)))
    pooled, _ = visual._pool(visual.transformer(x))
    return pooled @ visual.proj


def test_vit_tokens_match_the_trainer_forward_bit_for_bit():
    _, cfg = resolve_model_config("silc-tiny-vit")
    torch.manual_seed(0)
    visual = build_model(cfg, "model").visual.eval()
    with torch.no_grad():
        for size in ((32, 32), (48, 40), (64, 64)):
            x = torch.randn(2, 3, *size)
            assert torch.equal(encode_visual(visual, x), _old_trainer_encode_visual(visual, x))


def test_class_embeddings_follow_open_clip_build_zero_shot_classifier():
    _, cfg = resolve_model_config("silc-tiny-vit")
    torch.manual_seed(0)
    model = build_model(cfg, "model").eval()
    tokenizer = make_tokenizer(cfg)
    names = ["red circle", "blue square", "green star"]
    templates = template_set("simple7")
    fns = open_clip.SIMPLE_IMAGENET_TEMPLATES
    reference = open_clip.build_zero_shot_classifier(model, tokenizer, names, fns, num_classes_per_batch=1)

    def embed(texts):
        return model.encode_text(tokenizer(texts), normalize=True)

    ours = build_class_embeddings(embed, names, templates, classes_per_batch=1, normalize_texts=False)
    assert torch.equal(ours, reference.T)
    assert build_class_embeddings(embed, names, templates).shape == (3, cfg["embed_dim"])


def test_template_registry():
    assert template_set("simple").texts == template_set("simple7").texts
    assert template_set("openai80").texts == tuple(t("{}") for t in open_clip.OPENAI_IMAGENET_TEMPLATES)
    assert template_set("photo").fill("cat") == ["a photo of a cat."]
    assert Templates("f", ("a {c}.",), marker="{c}").fill("dog") == ["a dog."]
    assert resolve_templates(["x {}"]).texts == ("x {}",)
    with pytest.raises(UserError, match="openai80"):
        resolve_templates("no-such-set")


def test_precision_vocabulary():
    assert normalize_precision("amp-fp16") == "fp16" and normalize_precision("bf16") == "bf16"
    assert resolve_precision("auto", "cpu", cuda_default="bf16") == "fp32"
    assert resolve_precision("auto", "cuda", cuda_default="fp16") == "fp16"
    with pytest.raises(ValueError):
        normalize_precision("half")
