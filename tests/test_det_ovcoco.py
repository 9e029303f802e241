"""The OV-COCO split data and ``silc-bench data ov-coco``: files written, bad inputs as one-line errors."""

from __future__ import annotations

import ast
import importlib.util
import json
from pathlib import Path

import pytest

from benchmarks.ov_coco import PUBLIC_SPLIT_FILE, load_split
from silc_bench.cli import main
from tests.det_helpers import write_coco


def test_public_split_is_48_base_17_novel_disjoint() -> None:
    split = load_split(None)
    assert len(split.base) == 48 and len(split.novel) == 17 and not set(split.base) & set(split.novel)
    assert "person" in split.base and "cat" in split.novel and split.source == "public:ov-coco-48-17"


@pytest.mark.mm
def test_public_split_equals_mmdet_shipped_config() -> None:
    spec = importlib.util.find_spec("mmdet")
    assert spec is not None and spec.submodule_search_locations
    config = (
        Path(spec.submodule_search_locations[0])
        / ".mim/configs/mm_grounding_dino/coco/grounding_dino_swin-t_finetune_16xb4_1x_coco_48_17.py"
    )
    values = {}
    for node in ast.parse(config.read_text()).body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) in (
            "base_classes",
            "novel_classes",
        ):
            values[node.targets[0].id] = tuple(ast.literal_eval(node.value))
    shipped = json.loads(PUBLIC_SPLIT_FILE.read_text())
    assert tuple(shipped["base"]) == values["base_classes"]
    assert tuple(shipped["novel"]) == values["novel_classes"]


def test_data_ov_coco_writes_base_train_and_ov_val(tmp_path: Path, capsys) -> None:
    coco = write_coco(tmp_path / "coco")
    out = tmp_path / "ov"
    split = coco / "annotations" / "ov_split.json"
    assert main(["data", "ov-coco", "--coco", str(coco), "--out", str(out), "--split", str(split)]) == 0
    summary = json.loads(capsys.readouterr().out)
    train = json.loads((out / "annotations" / "instances_train2017_base.json").read_text())
    val = json.loads((out / "annotations" / "instances_val2017_ov.json").read_text())
    expected = [(2, "alpha"), (5, "delta"), (11, "echo"), (17, "bravo"), (40, "charlie")]  # by id, as COCO
    assert [(c["id"], c["name"]) for c in val["categories"]] == expected
    assert [c["name"] for c in train["categories"]] == ["alpha", "bravo", "charlie"]
    assert {a["category_id"] for a in train["annotations"]} == {2, 17, 40}  # delta's training box is gone
    assert len(train["images"]) == 3 and len(val["images"]) == 4  # images without annotations stay
    assert any(a["iscrowd"] for a in val["annotations"])  # crowd boxes stay, flagged
    assert all(a["category_id"] != 90 for a in val["annotations"])  # outside the split: dropped
    assert summary["val2017"]["annotations"] == len(val["annotations"]) == 7
    written_split = json.loads((out / "annotations" / "ov_split.json").read_text())
    assert written_split["novel"] == ["delta", "echo"] and written_split["labels"] == [n for _, n in expected]
    assert (out / "val2017" / "v1.png").is_file() and (out / "train2017").is_symlink()
    # a second run over the same output folder is fine
    assert main(["data", "ov-coco", "--coco", str(coco), "--out", str(out), "--split", str(split)]) == 0


def _one_line_error(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("silc-bench: error: ")
    return err


def test_public_split_on_a_world_without_those_categories(tmp_path: Path, capsys) -> None:
    coco = write_coco(tmp_path / "coco")
    err = _one_line_error(capsys, ["data", "ov-coco", "--coco", str(coco), "--out", str(tmp_path / "o")])
    assert "instances_train2017.json" in err and "'person'" in err


@pytest.mark.parametrize(
    "breakage, expected",
    [
        (lambda c: c.pop("annotations"), "missing key 'annotations'"),
        (lambda c: c["annotations"][0].pop("bbox"), "missing key 'bbox'"),
        (lambda c: c["images"][0].pop("width"), "missing key 'width'"),
        (lambda c: c["annotations"][0].update(bbox=[50, 50, 30, 10]), "outside its 64x64 image"),
        (lambda c: c["annotations"][0].update(category_id=3), "unknown category_id 3"),
    ],
)
def test_bad_annotation_files_are_one_line_errors(tmp_path: Path, capsys, breakage, expected: str) -> None:
    coco = write_coco(tmp_path / "coco")
    path = coco / "annotations" / "instances_train2017.json"
    obj = json.loads(path.read_text())
    breakage(obj)
    path.write_text(json.dumps(obj))
    split = coco / "annotations" / "ov_split.json"
    argv = ["data", "ov-coco", "--coco", str(coco), "--out", str(tmp_path / "o"), "--split", str(split)]
    err = _one_line_error(capsys, argv)
    assert str(path) in err and expected in err


def test_unknown_category_in_split_names_the_split_and_file(tmp_path: Path, capsys) -> None:
    coco = write_coco(tmp_path / "coco")
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"base": ["alpha", "zulu"], "novel": ["delta"]}))
    argv = ["data", "ov-coco", "--coco", str(coco), "--out", str(tmp_path / "o"), "--split", str(split)]
    err = _one_line_error(capsys, argv)
    assert "'zulu'" in err and str(split.resolve()) in err and "instances_train2017.json" in err


@pytest.mark.parametrize(
    "content, expected",
    [
        ({"base": ["alpha"]}, "expected key 'novel'"),
        ({"base": ["alpha"], "novel": ["alpha"]}, "listed twice"),
        ({"base": [], "novel": ["alpha"]}, "no base category"),
    ],
)
def test_bad_split_files(tmp_path: Path, capsys, content: dict, expected: str) -> None:
    coco = write_coco(tmp_path / "coco")
    split = tmp_path / "split.json"
    split.write_text(json.dumps(content))
    argv = ["data", "ov-coco", "--coco", str(coco), "--out", str(tmp_path / "o"), "--split", str(split)]
    err = _one_line_error(capsys, argv)
    assert str(split) in err and expected in err


def test_eval_boxcls_through_the_cli_reports_bad_data(tmp_path: Path, capsys) -> None:
    err = _one_line_error(
        capsys,
        ["eval", "det-ovcoco", "--model", "x=openclip:none", "--data", str(tmp_path), "--protocol", "boxcls"],
    )
    assert "instances_val2017.json" in err
