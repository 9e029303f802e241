"""The loader on the synthetic world: `kind: synthetic` reads its pretrain CSV, and its shards hold the same pairs."""

from __future__ import annotations

from itertools import islice
from pathlib import Path

import open_clip
import pandas as pd
import torch

from silc.data.pairs import DataConfig, build_loader
from silc.views import MultiCropViews, ViewsConfig


def test_synthetic_world_csv_and_shards_give_the_same_pairs(synth_root: Path):
    views = MultiCropViews(ViewsConfig(global_size=32, local_size=16, local_crops=2), [0.5] * 3, [0.5] * 3)
    tokenizer = open_clip.get_tokenizer("ViT-B-32", context_length=32)
    synth = build_loader(DataConfig(kind="synthetic", path=str(synth_root)), views, tokenizer, 8, seed=0)
    batch = next(iter(synth))
    assert batch["global"].shape == (8, 2, 3, 32, 32) and batch["local"].shape == (8, 2, 3, 16, 16)
    assert batch["text"].shape == (8, 32) and batch["text"].dtype == torch.long
    assert (batch["text"][:, 0] == tokenizer.sot_token_id).all()
    assert synth.state_dict()["skipped"] == 0

    shards = DataConfig(kind="webdataset", path=str(synth_root / "pretrain" / "shards"))
    texts = {
        tuple(t.tolist())
        for b in islice(iter(build_loader(shards, views, tokenizer, 8, seed=0)), 4)
        for t in b["text"]
    }
    captions = pd.read_csv(synth_root / "pretrain" / "pairs.csv")["caption"].tolist()
    csv_texts = {tuple(t.tolist()) for t in tokenizer(captions)}
    assert texts <= csv_texts  # every shard caption is one of the CSV's captions
