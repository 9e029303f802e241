"""Training-pair loader: CSV and webdataset sources, exact resume, worker independence, rank sharding, corrupt
images, and one-line errors. Fixtures are tiny PNGs, a CSV and tar shards written here."""

from __future__ import annotations

import io
import json
import logging
import tarfile
from itertools import islice
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from silc.data.pairs import DataConfig, build_loader
from silc.errors import UserError
from silc.views import MultiCropViews, ViewsConfig

N_IMAGES, N_SHARDS = 24, 3
VIEWS = MultiCropViews(
    ViewsConfig(global_size=16, local_size=8, local_crops=2, clean_global=True), [0.5] * 3, [0.5] * 3
)


def tokenize(captions: list[str]) -> torch.Tensor:
    """A stand-in tokenizer that keeps the caption's number, so text can be checked against the index."""
    return torch.tensor([[int(c.split()[-1]), len(c)] for c in captions])


def _png(i: int) -> bytes:
    rng = np.random.default_rng(i)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (20 + i % 5, 24, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


CORRUPT = {
    5: _png(5)[:60],  # truncated PNG
    17: b"this is not an image",
}


def _write_tar(path: Path, members: list[tuple[str, bytes]]) -> None:
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def _write_dataset(root: Path, corrupt: bool) -> Path:
    (root / "img").mkdir(parents=True)
    rows = ["filepath,caption"]
    per_shard = N_IMAGES // N_SHARDS
    shards: list[list[tuple[str, bytes]]] = [[] for _ in range(N_SHARDS)]
    for i in range(N_IMAGES):
        data = CORRUPT[i] if corrupt and i in CORRUPT else _png(i)
        (root / "img" / f"{i:03d}.png").write_bytes(data)
        rows.append(f"img/{i:03d}.png,pair number {i}")
        shards[i // per_shard] += [(f"{i:06d}.png", data), (f"{i:06d}.txt", f"pair number {i}".encode())]
    (root / "pairs.csv").write_text("\n".join(rows) + "\n")
    (root / "shards").mkdir()
    for s, members in enumerate(shards):
        _write_tar(root / "shards" / f"train-{s:03d}.tar", members)
    return root


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write_dataset(tmp_path_factory.mktemp("pairs"), corrupt=False)


@pytest.fixture(scope="module")
def corrupt_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write_dataset(tmp_path_factory.mktemp("corrupt-pairs"), corrupt=True)


def _cfg(root: Path, kind: str, **kw) -> DataConfig:
    path = {"csv": root / "pairs.csv", "webdataset": root / "shards"}[kind]
    return DataConfig(kind=kind, path=str(path), **kw)


def _take(cfg: DataConfig, n: int, batch_size: int = 4, **kw) -> tuple[list[dict], dict]:
    loader = build_loader(cfg, VIEWS, tokenize, batch_size, seed=3, **kw)
    batches = list(islice(iter(loader), n))
    return batches, loader.state_dict()


def _assert_same(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.keys() == y.keys()
        for k in x:
            assert torch.equal(x[k], y[k]), k


def test_csv_batches_shapes_and_epoch_coverage(data: Path):
    batches, state = _take(_cfg(data, "csv"), N_IMAGES // 4 + 1)
    b = batches[0]
    assert b["global"].shape == (4, 2, 3, 16, 16) and b["local"].shape == (4, 2, 3, 8, 8)
    assert b["clean"].shape == (4, 3, 16, 16) and b["text"].dtype == torch.long
    for batch in batches:
        assert torch.equal(batch["text"][:, 0], batch["index"])
    epoch0 = torch.cat([x["index"] for x in batches[: N_IMAGES // 4]])
    assert sorted(epoch0.tolist()) == list(range(N_IMAGES))  # each row once per epoch
    assert not torch.equal(batches[-1]["index"], batches[0]["index"])  # epoch 1 is reshuffled
    assert json.loads(json.dumps(state)) == state
    assert state["epoch"] == 1 and state["samples"] == 28 and state["seen"] == 28 and state["skipped"] == 0


@pytest.mark.parametrize("kind", ["csv", "webdataset", "resampled"])
def test_resume_is_exact(data: Path, kind: str):
    cfg = _cfg(
        data, "webdataset" if kind == "resampled" else kind, resampled=kind == "resampled", shuffle_buffer=5
    )
    straight, _ = _take(cfg, 9)
    first, state = _take(cfg, 4)
    resumed, _ = _take(cfg, 5, position=json.loads(json.dumps(state)))
    _assert_same(straight, first + resumed)
    if kind == "webdataset":  # 9 batches of 4 cross the first epoch (24 samples) boundary
        assert state["epoch"] == 0 and _take(cfg, 9)[1]["epoch"] == 1


@pytest.mark.parametrize("kind", ["csv", "webdataset"])
def test_workers_give_identical_batches(data: Path, kind: str):
    _assert_same(_take(_cfg(data, kind, num_workers=0), 5)[0], _take(_cfg(data, kind, num_workers=2), 5)[0])


@pytest.mark.parametrize("dataset", ["data", "corrupt_data"])
def test_ranks_concatenate_to_the_single_process_batch(dataset: str, request: pytest.FixtureRequest):
    cfg = _cfg(request.getfixturevalue(dataset), "csv", max_skipped_fraction=0.5)
    single, _ = _take(cfg, 8, batch_size=6)  # 2 epochs of 24 at global batch 6 = 3 ranks x 2
    ranks = [_take(cfg, 8, batch_size=2, rank=r, world_size=3)[0] for r in range(3)]
    for step, batch in enumerate(single):
        for k in batch:
            assert torch.equal(batch[k], torch.cat([ranks[r][step][k] for r in range(3)])), (step, k)


def test_webdataset_ranks_read_disjoint_shards(data: Path):
    cfg = _cfg(data, "webdataset")
    # Epoch 0: three 8-sample shards dealt round-robin to 2 ranks, so one rank reads 16 samples, the other 8.
    r0, _ = _take(cfg, 4, batch_size=4, rank=0, world_size=2)
    r1, _ = _take(cfg, 4, batch_size=4, rank=1, world_size=2)
    shards0 = {int(i) >> 32 for b in r0[:2] for i in b["index"]}
    shards1 = {int(i) >> 32 for b in r1[:2] for i in b["index"]}
    assert not shards0 & shards1 and len(shards0 | shards1) == 3
    for b in r0 + r1:
        assert torch.equal(b["text"][:, 0], (b["index"] >> 32) * 8 + (b["index"] & 0xFFFFFFFF))


def test_webdataset_path_forms(data: Path):
    as_dir = _take(_cfg(data, "webdataset"), 2)[0]
    for spec in ("shards/train-{000..002}.tar", "shards/train-*.tar"):
        _assert_same(as_dir, _take(DataConfig(kind="webdataset", path=str(data / spec)), 2)[0])


@pytest.mark.parametrize("kind", ["csv", "webdataset"])
def test_corrupt_images_are_skipped_and_counted(corrupt_data: Path, kind: str, caplog):
    cfg = _cfg(corrupt_data, kind, max_skipped_fraction=0.2, num_workers=0)
    with caplog.at_level(logging.WARNING, logger="silc.data.pairs"):
        batches, state = _take(cfg, 2 * N_IMAGES // 4)  # two epochs
    for b in batches:
        assert b["global"].shape[0] == 4
        assert not set(b["text"][:, 0].tolist()) & set(CORRUPT)
        if kind == "csv":
            assert torch.equal(b["text"][:, 0], b["index"])
    assert state["skipped"] >= 2 * len(CORRUPT) and state["seen"] == 2 * N_IMAGES + state["skipped"] * (
        kind == "csv"
    )
    warned = [r.getMessage() for r in caplog.records if "undecodable" in r.getMessage()]
    assert len(warned) == len(CORRUPT)  # once per file, although each is hit every epoch
    assert any(("005.png" if kind == "csv" else "000005") in w for w in warned)


@pytest.mark.parametrize("kind", ["csv", "webdataset"])
def test_too_many_corrupt_images_fail(corrupt_data: Path, kind: str):
    cfg = _cfg(corrupt_data, kind, max_skipped_fraction=0.01, skip_check_after=20)
    with pytest.raises(
        UserError, match=r"of \d+ images were undecodable \(.*\), more than data.max_skipped_fraction=0.01"
    ) as err:
        _take(cfg, 2 * N_IMAGES // 4)
    assert "\n" not in str(err.value)


def test_csv_errors_name_file_and_column(data: Path, tmp_path: Path):
    with pytest.raises(UserError, match=r"pairs.csv: no column 'text' \(columns: filepath, caption\)"):
        build_loader(_cfg(data, "csv", csv_caption_key="text"), VIEWS, tokenize, 4, seed=0)
    with pytest.raises(UserError, match="missing.csv: no such CSV file"):
        build_loader(DataConfig(kind="csv", path=str(tmp_path / "missing.csv")), VIEWS, tokenize, 4, seed=0)
    with pytest.raises(UserError, match="no such shard file"):
        build_loader(
            DataConfig(kind="webdataset", path=str(tmp_path / "x-{0..1}.tar")), VIEWS, tokenize, 4, seed=0
        )
    with pytest.raises(UserError, match="not a synthetic world"):
        build_loader(DataConfig(kind="synthetic", path=str(tmp_path)), VIEWS, tokenize, 4, seed=0)


def test_csv_separator_and_keys(data: Path, tmp_path: Path):
    lines = (data / "pairs.csv").read_text().splitlines()
    tsv = tmp_path / "pairs.tsv"
    tsv.write_text(
        "\n".join(["text\tpath"] + [f"{c}\t{data / p}" for p, c in (x.split(",") for x in lines[1:])])
    )
    cfg = DataConfig(
        kind="csv", path=str(tsv), csv_img_key="path", csv_caption_key="text", csv_separator="\t"
    )
    _assert_same(_take(_cfg(data, "csv"), 2)[0], _take(cfg, 2)[0])
