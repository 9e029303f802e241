"""Training configs as deltas: ``base:`` (resolved relative to the file, merged recursively, cycles refused)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from silc.config import load_config, read_config_file, to_dict
from silc.errors import UserError
from silc.kernel.configs import deep_merge

ROOT = Path(__file__).resolve().parents[1]
ABLATIONS = sorted(p for p in (ROOT / "configs" / "ablations").glob("*.yaml") if not p.name.startswith("_"))


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_base_is_resolved_relative_to_the_file_not_the_cwd(tmp_path, monkeypatch):
    write(tmp_path / "family" / "shared" / "_base.yaml", "seed: 7\ntrain: {steps: 11}\n")
    cfg = write(tmp_path / "family" / "run.yaml", "base: shared/_base.yaml\ntrain: {batch_size: 3}\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    c = load_config(cfg)
    assert (c.seed, c.train.steps, c.train.batch_size) == (7, 11, 3)
    # a base of a base resolves relative to the file that names it
    write(tmp_path / "family" / "shared" / "_root.yaml", "optim: {lr: 0.25}\n")
    write(tmp_path / "family" / "shared" / "_base.yaml", "base: _root.yaml\nseed: 7\n")
    assert load_config(cfg).optim.lr == 0.25


def test_deep_merge_replaces_leaves_and_lists_but_merges_sections(tmp_path):
    write(
        tmp_path / "_base.yaml",
        "model: {name: silc-tiny-vit, overrides: {vision_cfg: {pos_embed_type: sin_cos_2d, width: 128}}}\n"
        "views: {global_crops: 2, local_crops: 4, global_scale: [0.4, 1.0], solarize_p: [0.0, 0.2]}\n"
        "optim: {lr: 1.0e-3, grad_clip: 1.0}\n",
    )
    cfg = write(
        tmp_path / "delta.yaml",
        "base: _base.yaml\n"
        "model: {overrides: {vision_cfg: {width: 64}}}\n"
        "views: {local_crops: 0, solarize_p: [0.0]}\n"
        "optim: {grad_clip: null}\n",
    )
    c = load_config(cfg)
    assert c.model.name == "silc-tiny-vit"
    assert c.model.overrides == {"vision_cfg": {"pos_embed_type": "sin_cos_2d", "width": 64}}
    assert (c.views.global_crops, c.views.local_crops) == (2, 0)
    assert c.views.global_scale == (0.4, 1.0)
    assert c.views.solarize_p == (0.0,)  # a list replaces the base's list, it is not merged item by item
    assert c.optim.grad_clip is None  # null replaces too
    assert c.optim.lr == 1.0e-3
    assert deep_merge({"a": {"b": 1, "c": 2}}, {"a": {"c": 3}, "d": 4}) == {"a": {"b": 1, "c": 3}, "d": 4}


def test_precedence_is_base_then_file_then_set(tmp_path):
    write(tmp_path / "_base.yaml", "train: {steps: 10, batch_size: 8, log_every: 2}\n")
    cfg = write(tmp_path / "run.yaml", "base: _base.yaml\ntrain: {steps: 20, batch_size: 16}\n")
    c = load_config(cfg, ["train.steps=30"])
    assert (c.train.steps, c.train.batch_size, c.train.log_every) == (30, 16, 2)
    assert "base" not in read_config_file(cfg)
    assert "base" not in to_dict(c)


def test_a_base_cycle_is_one_line_naming_the_files(tmp_path):
    a = write(tmp_path / "a.yaml", "base: b.yaml\nseed: 1\n")
    write(tmp_path / "b.yaml", "base: a.yaml\nseed: 2\n")
    with pytest.raises(UserError) as e:
        load_config(a)
    msg = str(e.value)
    assert "\n" not in msg and "cycle" in msg
    assert "a.yaml" in msg and "b.yaml" in msg
    selfref = write(tmp_path / "self.yaml", "base: self.yaml\n")
    with pytest.raises(UserError, match=r"cycle.*self\.yaml -> .*self\.yaml"):
        load_config(selfref)


def test_a_missing_base_names_the_file_and_the_base(tmp_path):
    cfg = write(tmp_path / "run.yaml", "base: nowhere/_base.yaml\nseed: 1\n")
    with pytest.raises(UserError) as e:
        load_config(cfg)
    msg = str(e.value)
    assert "\n" not in msg
    assert "run.yaml" in msg and "nowhere/_base.yaml" in msg and "not found" in msg


@pytest.mark.parametrize("bad", ["base: [a.yaml]\n", "base: 3\n", "base: ''\n"])
def test_base_must_be_a_path(tmp_path, bad):
    with pytest.raises(UserError, match="base"):
        load_config(write(tmp_path / "run.yaml", bad))


def test_unknown_keys_in_a_base_are_still_reported(tmp_path):
    write(tmp_path / "_base.yaml", "train: {stepz: 3}\n")
    with pytest.raises(UserError, match=r"train\.stepz.*did you mean train\.steps"):
        load_config(write(tmp_path / "run.yaml", "base: _base.yaml\n"))


@pytest.mark.parametrize("path", ABLATIONS, ids=lambda p: p.stem)
def test_each_ablation_is_a_nonempty_delta(path):
    own = yaml.safe_load(path.read_text())
    base = own.pop("base", None)
    assert base is not None, f"{path.name}: expected a `base:` key"
    assert own, f"{path.name}: the delta over {base} is empty"


def test_ablations_are_distinct_points_but_the_documented_alias():
    """Two ablation configs that merge to the same run are a knob that does nothing, unless their headers say
    they are one config under two names (the centre point of both axes: L = 4 with constant EMA)."""
    merged = {p.stem: to_dict(load_config(p)) for p in ABLATIONS}
    same = {(a, b) for a in merged for b in merged if a < b and merged[a] == merged[b]}
    assert same == {("local_4", "momentum_constant")}


def test_every_shipped_config_loads():
    paths = sorted((ROOT / "configs").rglob("*.yaml"))
    assert len(paths) >= 12
    for p in paths:
        load_config(p)
