"""The shipped mmseg configs: the ADE20K ones are the harness's protocols, they run under mmengine's Runner
directly, and the Pascal Context-59 / VOC-20 / COCO-Stuff-171 ones load their public layouts with mmseg's
dataset classes (label values mapped as those benchmarks define)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.mm
pytest.importorskip("mmseg")
pytest.importorskip("mmcv.ops")

from mmengine.config import Config  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402
from mmengine.runner import Runner  # noqa: E402
from mmseg.registry import DATASETS  # noqa: E402

import benchmarks.seg_mmseg  # noqa: E402, F401  (registers PascalVOC20Dataset)
from benchmarks.segmentation import PROTOCOLS, build_config  # noqa: E402
from tests.conftest import TINY_MODEL_CONFIG  # noqa: E402
from tests.seg_fixtures import block_labels, save_jpeg, save_label, write_ade  # noqa: E402

CONFIGS = Path(__file__).resolve().parents[1] / "benchmarks" / "configs" / "mmseg"


@pytest.mark.parametrize("protocol,config", [("ade-448", "ade20k_448.py"), ("ade-336", "ade20k_336.py")])
def test_ade_configs_are_the_harness_protocols(protocol, config):
    shipped = Config.fromfile(CONFIGS / config).to_dict()
    built = build_config(PROTOCOLS[protocol], "ENCODER", "ROOT", metric="IoUMetric")
    for cfg in (shipped, built):
        cfg["model"].pop("encoder")
        cfg["test_dataloader"]["dataset"].pop("data_root")
        cfg["test_dataloader"].pop("num_workers")
    assert shipped["model"] == built["model"]
    assert shipped["test_dataloader"] == built["test_dataloader"]
    assert shipped["test_evaluator"] == built["test_evaluator"]
    assert shipped["custom_imports"] == built["custom_imports"]


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
