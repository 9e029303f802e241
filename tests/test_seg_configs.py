"""The shipped mmseg configs: the ADE20K and synthetic-world ones are the harness's protocols (the harness loads
them and sets exactly the protocol's overrides), they run under mmengine's Runner directly, and the Pascal
Context-59 / VOC-20 / COCO-Stuff-171 ones load their public layouts with mmseg's dataset classes (label values
mapped as those benchmarks define)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import require_mm

pytestmark = pytest.mark.mm
require_mm()  # before the mm imports below: fails when mm is missing, skips with SILC_SKIP_MM=1

from mmengine.config import Config  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402
from mmengine.runner import Runner  # noqa: E402
from mmseg.registry import DATASETS  # noqa: E402

import benchmarks.seg_mmseg  # noqa: E402, F401  (registers PascalVOC20Dataset)
from benchmarks.seg_config import (  # noqa: E402
    CONFIG_FILES,
    RUN_KEYS,
    config_file,
    config_overrides,
    load_config,
)
from benchmarks.seg_protocols import PROTOCOLS  # noqa: E402
from tests.conftest import TINY_MODEL_CONFIG  # noqa: E402
from tests.seg_fixtures import block_labels, save_jpeg, save_label, write_ade  # noqa: E402

CONFIGS = Path(__file__).resolve().parents[1] / "benchmarks" / "configs" / "mmseg"


RUN = {"workers": 0, "max_windows_per_forward": 64, "images_per_batch": 4, "output_dir": "/out/predictions"}
# What the harness sets besides the recipe: the model spec and the run options, and its per-class metric.
RUN_ONLY = {"model.encoder", "model.max_windows_per_forward", "test_dataloader.batch_size",
            "test_dataloader.num_workers", "test_evaluator.type", "test_evaluator.output_dir"}  # fmt: skip


def _leaves(node, prefix: str = "") -> dict:
    """Every leaf of a plain config dict as dotted key -> value (list items by index, tuples are leaves)."""
    if isinstance(node, dict | list) and node:
        items = node.items() if isinstance(node, dict) else enumerate(node)
        return {k: v for key, value in items for k, v in _leaves(value, f"{prefix}{key}.").items()}
    return {prefix[:-1]: node}


def _shipped(protocol: dict) -> dict:
    cfg = Config.fromfile(config_file(protocol)).to_dict()
    return {key: cfg[key] for key in RUN_KEYS}


@pytest.mark.parametrize("name", list(CONFIG_FILES))
def test_each_protocol_is_its_shipped_config(name):
    """With the file's own data root, the harness changes only the model spec, the run options and the metric
    class: the file states the protocol's recipe."""
    protocol = PROTOCOLS[name]
    assert config_file(protocol) == CONFIGS / CONFIG_FILES[name]
    shipped = _shipped(protocol)
    built = load_config(protocol, "ENCODER", shipped["test_dataloader"]["dataset"]["data_root"], **RUN)
    before, after = _leaves(shipped), _leaves(built)
    changed = {k for k in before.keys() | after.keys() if before.get(k, KeyError) != after.get(k, KeyError)}
    assert changed == RUN_ONLY
    assert built["test_evaluator"]["type"] == "PerClassIoUMetric"


@pytest.mark.parametrize(
    "name,knobs",
    [("ade-448", {}), ("ade-336", {}), ("synth", {}),
     ("ade-448", {"dense_mode": "sclip", "templates": "simple7", "crop": 224, "bg_threshold": 0.4}),
     ("ade-448", {"short_side": 336, "crop": 224, "stride": 112, "names": "/names.txt"}),
     ("synth", {"short_side": 48, "crop": 48, "stride": 16, "max_long_side": 96, "logit_scale": 50.0})],
)  # fmt: skip
def test_harness_config_is_the_file_plus_exactly_the_overrides(name, knobs):
    protocol = {**PROTOCOLS[name], **knobs}
    cfg = Config.fromfile(config_file(protocol))
    overrides = config_overrides(cfg, protocol, "ENCODER", "/data/ADEChallengeData2016", **RUN)
    built = load_config(protocol, "ENCODER", "/data/ADEChallengeData2016", **RUN)
    before, after = _leaves(_shipped(protocol)), _leaves(built)
    for key, value in overrides.items():  # every override is in the config, with its value ...
        set_here = {k: v for k, v in after.items() if k == key or k.startswith(f"{key}.")}
        assert set_here == _leaves(value, f"{key}."), key
    for key in before.keys() | after.keys():  # ... and everything else is the file's
        if not any(key == o or key.startswith(f"{o}.") for o in overrides):
            assert before.get(key, KeyError) == after.get(key, KeyError), key
    # every protocol knob reaches the config
    model, dataset = built["model"], built["test_dataloader"]["dataset"]
    assert (model["crop_size"], model["stride"]) == (protocol["crop"], protocol["stride"])
    assert (model["dense_mode"], model["templates"]) == (protocol["dense_mode"], protocol["templates"])
    assert (
        model["logit_scale"] == protocol["logit_scale"] and model["bg_threshold"] == protocol["bg_threshold"]
    )
    assert dataset["type"] == protocol["dataset"] and dataset["data_root"] == "/data/ADEChallengeData2016"
    assert dataset["data_prefix"] == {
        "img_path": "images/validation",
        "seg_map_path": "annotations/validation",
    }
    (resize,) = (step for step in dataset["pipeline"] if step["type"] == "Resize")
    assert resize["scale"] == (protocol["max_long_side"], protocol["short_side"])
    names = {"/names.txt": "/names.txt", "dataset": {"dataset": "ADE20KDataset"}}[protocol["names"]]
    if protocol["dataset"] == "SynthADE20KDataset":
        names = "/data/ADEChallengeData2016/classnames.txt"
    assert model["class_names"] == names


def test_a_protocol_starts_from_the_closest_shipped_file():
    ade = PROTOCOLS["ade-448"]
    assert config_file({**ade, "dense_mode": "maskclip"}).name == "ade20k_448.py"
    assert config_file({**ade, "short_side": 336, "crop": 224, "stride": 112}).name == "ade20k_336.py"
    assert config_file({**PROTOCOLS["synth"], "crop": 448}).name == "synth_ade20k.py"  # same dataset first


def test_shipped_config_runs_with_mmengine_runner(tmp_path):
    rng = np.random.default_rng(0)
    maps = {f"ADE_val_{i:08d}": block_labels(rng, 96, 128, 16, [0, 1, 2, 5, 150]) for i in (1, 2)}
    ade = write_ade(tmp_path, maps, {0: 0, 1: 1, 2: 2, 5: 5, 150: 7})
    cfg = Config.fromfile(CONFIGS / "ade20k_448.py")
    cfg.merge_from_dict({
        "model.encoder": f"openclip:{TINY_MODEL_CONFIG}",
        "model.templates": "identity",
        "test_dataloader.dataset.data_root": str(ade),
        "test_dataloader.num_workers": 0,
        "work_dir": str(tmp_path / "work"),
    })  # fmt: skip
    metrics = Runner.from_cfg(cfg).test()
    assert set(metrics) >= {"aAcc", "mIoU", "mAcc"} and 0 <= metrics["mIoU"] <= 100


def test_synth_config_runs_with_mmengine_runner(tmp_path, synth_root):
    """synth_ade20k.py on the world written where its header says (``.cache/world`` under the working folder)."""
    (tmp_path / ".cache").mkdir()
    (tmp_path / ".cache" / "world").symlink_to(synth_root)
    cfg = Config.fromfile(CONFIGS / "synth_ade20k.py")
    cfg.merge_from_dict({
        "model.encoder": f"openclip:{TINY_MODEL_CONFIG}",
        "model.templates": "identity",
        "test_dataloader.num_workers": 0,
        "work_dir": str(tmp_path / "work"),
    })  # fmt: skip
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp_path)
        metrics = Runner.from_cfg(cfg).test()
    assert set(metrics) >= {"aAcc", "mIoU", "mAcc"} and 0 <= metrics["mIoU"] <= 100


def _voc_like(root: Path, ann_folder: str, split_file: str, values, palette_png: bool = False) -> Path:
    rng = np.random.default_rng(0)
    ids = ["2008_000001", "2008_000002"]
    for stem in ids:
        labels = block_labels(rng, 48, 64, 16, values)
        save_jpeg(root / "JPEGImages" / f"{stem}.jpg", np.zeros((48, 64, 3), np.uint8))
        if palette_png:  # VOC's SegmentationClass PNGs are palette images whose indices are the labels
            image = Image.fromarray(labels.astype(np.uint8), mode="P")
            image.putpalette([v for i in range(256) for v in (i, 255 - i, (7 * i) % 256)])
            (root / ann_folder).mkdir(parents=True, exist_ok=True)
            image.save(root / ann_folder / f"{stem}.png")
        else:
            save_label(root / ann_folder / f"{stem}.png", labels)
    (root / split_file).parent.mkdir(parents=True, exist_ok=True)
    (root / split_file).write_text("".join(f"{i}\n" for i in ids))
    return root


def _coco_stuff(root: Path, values) -> Path:
    rng = np.random.default_rng(0)
    for stem in ("000000000139", "000000000285"):
        save_jpeg(root / "images" / "val2017" / f"{stem}.jpg", np.zeros((48, 64, 3), np.uint8))
        save_label(
            root / "annotations" / "val2017" / f"{stem}_labelTrainIds.png",
            block_labels(rng, 48, 64, 16, values),
        )
    return root


@pytest.mark.parametrize(
    "config,make,raw_values,expected,num_classes",
    [
        # Context-59: 0 is background (ignored), k -> k-1.
        ("pascal_context59.py",
         lambda r: _voc_like(r / "VOCdevkit/VOC2010", "SegmentationClassContext",
                             "ImageSets/SegmentationContext/val.txt", [0, 1, 30, 59]),
         [0, 1, 30, 59], {255, 0, 29, 58}, 59),
        # VOC-20: background 0 and boundary 255 ignored, k -> k-1.
        ("voc20.py",
         lambda r: _voc_like(r / "VOCdevkit/VOC2012", "SegmentationClass", "ImageSets/Segmentation/val.txt",
                             [0, 1, 15, 20, 255], palette_png=True),
         [0, 1, 15, 20, 255], {255, 0, 14, 19}, 20),
        # COCO-Stuff-171: labelTrainIds are already 0..170 with 255 ignored.
        ("coco_stuff171.py", lambda r: _coco_stuff(r / "coco_stuff164k", [0, 90, 170, 255]),
         [0, 90, 170, 255], {0, 90, 170, 255}, 171),
    ],
)  # fmt: skip
def test_other_benchmark_layouts_load_with_mmseg_datasets(
    tmp_path, config, make, raw_values, expected, num_classes
):
    data_root = make(tmp_path)
    cfg = Config.fromfile(CONFIGS / config)
    dataset_cfg = cfg.test_dataloader.dataset
    dataset_cfg.data_root = str(data_root)
    init_default_scope("mmseg")
    dataset = DATASETS.build(dataset_cfg)
    assert len(dataset) == 2 and len(dataset.metainfo["classes"]) == num_classes
    assert cfg.model.class_names == {"dataset": dataset_cfg.type}
    seen = set()
    for i in range(len(dataset)):
        sample = dataset[i]["data_samples"]
        seen |= {int(v) for v in np.unique(sample.gt_sem_seg.data.numpy())}
        assert tuple(sample.ori_shape) == (48, 64)
    assert seen <= expected and len(seen) >= 3
