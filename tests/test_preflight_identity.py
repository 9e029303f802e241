"""Dataset identity checks and the reading preflight of ``silc-bench run`` / ``eval``: a claimed public dataset that
differs is refused in one line (or run under its own name when allowed), a folder's own vocabulary is never
swapped for another silently, and every problem of every entry is reported at once before any compute."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmarks import identity
from benchmarks.records import ResultRecord, read_records, write_record
from benchmarks.registry import get_harness
from benchmarks.suites import load_suite
from benchmarks.table_rows import load_results
from benchmarks.tables import build_table
from silc_bench.cli import main
from tests.global_fixtures import write_imagefolder
from tests.seg_fixtures import save_jpeg, save_label

TINY = Path(__file__).resolve().parents[1] / "silc" / "model_configs" / "silc-tiny-vit.json"
MODEL = f"tiny=openclip:{TINY}"
HINT = "pass --allow-nonstandard to evaluate it under its own name"
TWELVE = [f"thing {i}" for i in range(12)]


def suite_file(tmp_path: Path, *entries: str) -> Path:
    """A suite YAML with the given entries (flow mappings)."""
    path = tmp_path / "suite.yaml"
    path.write_text("name: claims\nbenchmarks:\n" + "".join(f"  - {e}\n" for e in entries))
    return path


def run_args(suite: Path, data: Path, results: Path, *extra: str) -> list[str]:
    return ["run", "--suite", str(suite), "--data-root", str(data), "--results", str(results), "--model", MODEL,
            "--bootstrap", "0", "--device", "cpu", *extra]  # fmt: skip


def table_rows(out: str) -> list[list[str]]:
    """The cells of each row of the Markdown table in ``out``."""
    return [
        [c.strip() for c in line.strip("|").split("|")] for line in out.splitlines() if line.startswith("|")
    ]


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The feature cache of this test (absent until something is encoded)."""
    monkeypatch.setenv("SILC_BENCH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def twelve(tmp_path: Path) -> Path:
    """A 12-class ImageFolder, 3 val images each, with its own classnames.txt and 2 templates."""
    write_imagefolder(tmp_path / "data" / "imagenet", TWELVE, {"val": 3})
    return tmp_path / "data"


def test_public_facts_are_the_public_numbers() -> None:
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES, OPENAI_IMAGENET_TEMPLATES

    from benchmarks.ov_coco import load_split

    assert len(IMAGENET_CLASSNAMES) == identity.IMAGENET_CLASSES == 1000
    assert len(OPENAI_IMAGENET_TEMPLATES) == 80
    assert identity.IMAGENET_IMAGES == {"train": 1_281_167, "val": 50_000}
    assert (identity.FLICKR30K_FILE, identity.FLICKR30K_TEST_IMAGES, identity.FLICKR30K_CAPTIONS) == (
        "dataset_flickr30k.json", 1000, 5)  # fmt: skip
    assert (identity.ADE20K_CLASSES, identity.ADE20K_VAL_IMAGES) == (150, 2000)
    assert (identity.COCO_VAL_IMAGES, identity.COCO_CATEGORIES) == (5000, 80)
    split = load_split(None)
    assert (len(split.base), len(split.novel)) == (48, 17)


@pytest.mark.mm
def test_ade20k_has_150_classes_in_mmseg() -> None:
    from adapters.mmseg import class_names_from

    assert len(class_names_from({"dataset": "ADE20KDataset"})) == identity.ADE20K_CLASSES


def test_a_nonstandard_imagefolder_claimed_as_imagenet_is_refused_in_one_line(
    twelve: Path, tmp_path: Path
) -> None:
    suite = load_suite(
        str(suite_file(tmp_path, "{benchmark: zeroshot-cls, data: imagenet, dataset: imagenet-1k}"))
    )
    check = suite.check(twelve, "cpu")
    assert [f.problems for f in check.failed] == [(
        "imagenet: not ImageNet-1k: 12 val class folders, none a wnid (expected 1,000 wnids); 36 val images "
        "(expected 50,000); classnames.txt and templates.txt replace open_clip's class names and the 80 OpenAI "
        f"templates; {HINT}",
    )]  # fmt: skip


def test_world_datasets_claimed_as_public_ones_say_what_differs(synth_root: Path, tmp_path: Path) -> None:
    suite = load_suite(str(suite_file(
        tmp_path,
        "{benchmark: fewshot, data: imagenet, dataset: imagenet-1k, overrides: {shots: [1, 5]}}",
        "{benchmark: retrieval, data: flickr30k, dataset: flickr30k}",
        "{benchmark: det-ovcoco, protocol: boxcls, data: coco, dataset: coco-ov}",
    )))  # fmt: skip
    check = suite.check(synth_root, "cpu")
    assert [(f.entry, f.problems) for f in check.failed] == [
        ("fewshot", (
            "imagenet: not ImageNet-1k: 16 train class folders, none a wnid (expected 1,000 wnids); 128 train "
            "images (expected 1,281,167); 16 val class folders, none a wnid (expected 1,000 wnids); 128 val images "
            f"(expected 50,000); {HINT}",
        )),
        ("retrieval", (f"flickr30k: not Flickr30k (Karpathy test): 100 test images (expected 1,000); {HINT}",)),
        ("det-ovcoco (boxcls)", (
            "coco: not OV-COCO (val2017): 40 images in annotations/instances_val2017.json (expected 5,000); 16 "
            "categories (expected 80); split annotations/ov_split.json (expected the public OV-COCO 48 base / 17 "
            "novel); 65 of the 65 OV-COCO categories missing: person, bicycle, car, motorcycle, train, truck, "
            f"boat, bench, bird, horse, and 55 more; {HINT}",
        )),
    ]  # fmt: skip
    allowed = suite.check(synth_root, "cpu", allow_nonstandard=True)
    assert allowed.failed == []
    assert [i["label"] for i in allowed.identities] == ["imagenet (nonstandard)", "flickr30k (nonstandard)",
                                                        "coco (nonstandard)"]  # fmt: skip


@pytest.mark.mm
def test_world_ade_claimed_as_ade20k_says_what_differs(synth_root: Path, tmp_path: Path) -> None:
    entry = "{benchmark: seg-ade20k, protocol: synth, data: ADEChallengeData2016, dataset: ade20k}"
    check = load_suite(str(suite_file(tmp_path, entry))).check(synth_root, "cpu")
    assert [f.problems for f in check.failed] == [(
        "ADEChallengeData2016: not ADE20K-150: protocol dataset SynthADE20KDataset (expected ADE20KDataset); "
        "classnames.txt lists 22 classes other than ADE20K's 150; 40 images and 40 label maps (expected 2,000 "
        f"each); {HINT}",
    )]  # fmt: skip


def test_an_unknown_claim_names_the_known_ones(tmp_path: Path) -> None:
    from silc.errors import UserError

    path = suite_file(tmp_path, "{benchmark: retrieval, data: x, dataset: coco-captions}")
    with pytest.raises(
        UserError, match=r"dataset 'coco-captions': not a public dataset 'retrieval' verifies \(flickr30k\)"
    ):
        load_suite(str(path)).resolve()


def test_a_verified_imagenet_folder_gets_the_public_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """1,000 wnid folders of one (undecoded) file each, with the val count set to 1,000 for the test: the names
    (open_clip's, as no classnames.txt replaces them) and the templates (the 80) are checked as they are."""
    monkeypatch.setitem(identity.IMAGENET_IMAGES, "val", 1000)
    for i in range(1000):
        (tmp_path / "imagenet" / "val" / f"n{i:08d}").mkdir(parents=True)
        (tmp_path / "imagenet" / "val" / f"n{i:08d}" / "x.JPEG").write_bytes(b"x")
    path = suite_file(tmp_path, "{benchmark: zeroshot-cls, data: imagenet, dataset: imagenet-1k}")
    check = load_suite(str(path)).check(tmp_path, "cpu")
    assert check.failed == []
    assert check.identities == [
        {"claimed": "imagenet-1k", "verified": True, "differences": [], "label": "ImageNet-1k"}
    ]
    (tmp_path / "imagenet" / "templates.txt").write_text("a photo of a {c}.\n")
    (failed,) = load_suite(str(path)).check(tmp_path, "cpu").failed
    assert failed.problems == (
        f"imagenet: not ImageNet-1k: templates.txt replaces the 80 OpenAI templates; {HINT}",
    )
    path.write_text(
        path.read_text().replace("data: imagenet,", "protocol: openai-templates, data: imagenet,")
    )
    assert (
        load_suite(str(path)).check(tmp_path, "cpu").identities[0]["verified"] is True
    )  # templates.txt unused


@pytest.mark.parametrize("how", ["flag", "entry"])
def test_allowed_nonstandard_data_runs_and_is_labelled_as_its_own(
    twelve, tmp_path, cache, capsys, how
) -> None:
    entry = "{benchmark: zeroshot-cls, data: imagenet, dataset: imagenet-1k"
    entry += ", allow_nonstandard: true}" if how == "entry" else "}"
    flag = ["--allow-nonstandard"] if how == "flag" else []
    assert main(run_args(suite_file(tmp_path, entry), twelve, tmp_path / "res", *flag)) == 0
    (record,) = read_records(tmp_path / "res")
    assert record.dataset_identity == {
        "claimed": "imagenet-1k",
        "verified": False,
        "differences": ["12 val class folders, none a wnid (expected 1,000 wnids)", "36 val images (expected 50,000)",
                        "classnames.txt and templates.txt replace open_clip's class names and the 80 OpenAI templates"],
        "label": "imagenet (nonstandard)",
    }  # fmt: skip
    assert table_rows(capsys.readouterr().out)[2][:3] == ["zeroshot-cls", "imagenet (nonstandard)", "acc1"]
    if how == "flag":  # the same data without the flag: refused before anything runs
        assert main(run_args(suite_file(tmp_path, entry), twelve, tmp_path / "res2")) == 2
        assert not (tmp_path / "res2").exists()


def test_verified_data_runs_under_the_public_name(synth_root, tmp_path, cache, capsys, monkeypatch) -> None:
    """The world's Karpathy file is Flickr30k's layout with 100 test images: with the expected count set to 100
    for the test, it is verified, and its rows are labelled with the public name."""
    monkeypatch.setattr("benchmarks.retrieval.FLICKR30K_TEST_IMAGES", 100)
    suite = suite_file(tmp_path, "{benchmark: retrieval, data: flickr30k, dataset: flickr30k}")
    assert main(run_args(suite, synth_root, tmp_path / "res")) == 0
    (record,) = read_records(tmp_path / "res")
    assert record.dataset_identity == {
        "claimed": "flickr30k", "verified": True, "differences": [], "label": "Flickr30k (Karpathy test)"}  # fmt: skip
    rows = table_rows(capsys.readouterr().out)
    assert rows[2][:3] == ["retrieval", "Flickr30k (Karpathy test)", "image_retrieval_recall@1"]


def _record(
    model: str, root: str, identity_: dict | None = None, skipped: list[str] | None = None
) -> ResultRecord:
    return ResultRecord(
        model=model, spec=f"runs/{model}.pt", fingerprint=model * 4, benchmark="zeroshot-cls",
        protocol_name="default", protocol={"templates": "dataset"}, dataset_root=root, split="val", num_samples=10,
        metrics={"acc1": 0.5}, wall_time_s=1.0, images_per_s=10.0, extra={}, versions={},
        skipped_images=skipped or [], dataset_identity=identity_ or {},
    )  # fmt: skip


@pytest.mark.parametrize(
    ("identities", "skipped", "label"),
    [
        ((None, None), ([], []), "imagenet"),  # no claim: the folder's name, as before
        (({"label": "ImageNet-1k"},) * 2, ([], []), "ImageNet-1k"),
        (({"label": "imagenet (nonstandard)"},) * 2, ([], []), "imagenet (nonstandard)"),
        ((None, None), (["a.jpg", "b.jpg", "c.jpg"],) * 2, "imagenet (3 images skipped)"),
        (({"label": "ImageNet-1k"},) * 2, (["a.jpg"], []), "ImageNet-1k (images skipped: clip 1, silc 0)"),
    ],
)
def test_table_labels_say_public_nonstandard_and_skipped(tmp_path: Path, identities, skipped, label) -> None:
    for model, ident, skip in zip(("clip", "silc"), identities, skipped, strict=True):
        write_record(tmp_path, _record(model, "/d/imagenet", ident, skip))
    df = build_table(load_results(tmp_path), "main", "clip")
    assert df["dataset"].tolist() == [label]


@pytest.fixture
def ade15(tmp_path: Path) -> Path:
    """An ADE-layout folder of 2 images whose classnames.txt lists its own 15 classes."""
    ade = tmp_path / "data" / "ADEChallengeData2016"
    rng = np.random.default_rng(0)
    for stem in ("a", "b"):
        save_jpeg(ade / "images" / "validation" / f"{stem}.jpg", rng.integers(0, 255, (32, 32, 3), np.uint8))
        save_label(ade / "annotations" / "validation" / f"{stem}.png", rng.integers(0, 16, (32, 32)))
    (ade / "classnames.txt").write_text("".join(f"part {i}\n" for i in range(15)))
    return ade


def _vocabulary_line(ade: Path) -> str:
    return (
        f"{ade / 'classnames.txt'}: the folder's own 15 classes, but this protocol scores with ADE20K's 150 names "
        "(mmseg ADE20KDataset); use --protocol synth, which reads that file (--short-side 448 --crop 448 --stride "
        "224 for the ade-448 recipe)"
    )


@pytest.mark.mm
def test_ade_names_never_replace_a_folder_s_own_vocabulary_in_eval(ade15, tmp_path, cache, capsys) -> None:
    args = ["eval", "seg-ade20k", "--model", MODEL, "--data", str(ade15), "--results", str(tmp_path / "res")]
    assert main([*args, "--protocol", "ade-448"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"silc-bench: error: {_vocabulary_line(ade15)}"
    assert not (tmp_path / "res").exists() and not cache.exists()
    harness = get_harness("seg-ade20k")
    synth = harness.resolve_protocol("synth", {"short_side": 448, "crop": 448, "stride": 224})
    assert harness.preflight(ade15, synth, harness.parse_options({}), "cpu") == []  # what the line suggests


@pytest.mark.mm
def test_ade_names_never_replace_a_folder_s_own_vocabulary_in_run(ade15, tmp_path, cache, capsys) -> None:
    suite = suite_file(tmp_path, "{benchmark: seg-ade20k, protocol: ade-448, data: ADEChallengeData2016}")
    assert main(run_args(suite, ade15.parent, tmp_path / "res")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[1:3] == [f"  seg-ade20k (ade-448) on {ade15}:", f"    - {_vocabulary_line(ade15)}"]
    assert err[-1] == f"silc-bench: error: {ade15.parent}: 1 problem(s) listed above; nothing was computed"
    assert not (tmp_path / "res").exists() and not cache.exists()


def test_seg_preflight_without_the_openmmlab_stack_stops_before_the_class_lists(
    tmp_path, monkeypatch
) -> None:
    """The class lists come from mmseg: without it the preflight reports the missing stack (and what it can check
    without it) and reads no class list (this folder has no classnames.txt, which the synth protocol would need)."""
    from benchmarks import segmentation
    from tests.seg_fixtures import write_ade

    line = "seg-ade20k needs the OpenMMLab stack (No module named 'mmseg'); install it with `bash scripts/install-mm.sh`"
    monkeypatch.setattr(segmentation, "mm_missing", lambda: line)
    ade = write_ade(tmp_path, {"ADE_val_00000001": np.zeros((8, 8), np.uint8)}, {0: 0})
    harness = get_harness("seg-ade20k")
    protocol = harness.resolve_protocol("synth", {"crop": 0})
    assert harness.preflight(ade, protocol, harness.parse_options({}), "cpu") == [
        "protocol knob crop: expected a positive integer, got 0",
        line,
    ]


def test_fewshot_refuses_splits_with_other_classes(tmp_path: Path) -> None:
    root = write_imagefolder(tmp_path / "imagenet", ["a", "b", "c"], {"train": 2, "val": 1}, templates=None)
    (root / "val" / "class002").rename(root / "val" / "class009")
    harness = get_harness("fewshot")
    protocol = harness.resolve_protocol(None, {"shots": [1]})
    assert harness.preflight(root, protocol, harness.parse_options({}), "cpu") == [
        f"{root}: train and val have different class folders (train only: class002; val only: class009); a "
        "probe's labels would not match"
    ]


def test_a_missing_required_path_hides_only_what_is_said_about_it(tmp_path: Path) -> None:
    """Only train is missing: the harness's line about it gives way to the entry's `requires` line, but its line
    about val's class names stays; a sibling that shares the folder's prefix (`imagenet2`) is another path."""
    root = write_imagefolder(tmp_path / "imagenet", ["a", "b"], {"val": 1}, templates=None)
    (root / "classnames.txt").write_text("a\nb\nc\n")
    suite = suite_file(tmp_path, "{benchmark: fewshot, data: imagenet, requires: [train, val]}")
    (failed,) = load_suite(str(suite)).preflight(tmp_path, "cpu")
    assert failed.problems == (
        f"{root / 'train'}: not found",
        f"{root / 'classnames.txt'}: 3 class names but 2 class folders in {root / 'val'}",
    )
    from benchmarks.suites import _about_missing

    gone = [tmp_path / "imagenet" / "train", tmp_path / "nowhere" / "val"]
    said = {
        f"{gone[0]}: folder does not exist": True,
        f"{gone[0] / 'x'}: not an image": True,
        f"{tmp_path / 'imagenet2' / 'train'}: folder does not exist": False,
        f"{tmp_path / 'imagenet'}: 2 classes": False,
        f"{tmp_path / 'nowhere'}: folder does not exist": True,  # a missing folder above a missing path
        f"{tmp_path / 'nowhere2'}: folder does not exist": False,
    }
    assert {message: _about_missing(message, gone) for message in said} == said


def test_the_public_ov_split_in_the_dataset_s_own_file_is_the_public_split(tmp_path: Path) -> None:
    """`split: auto` reads the dataset's annotations/ov_split.json: holding the public 48/17 names (in another
    order) it is the public split; with one novel name moved to base it is not."""
    from benchmarks.detection.harness import ov_coco_differences
    from benchmarks.ov_coco import load_split

    public = load_split(None)
    coco = tmp_path / "coco"
    (coco / "annotations").mkdir(parents=True)
    categories = [{"id": i, "name": n} for i, n in enumerate(sorted(public.names), start=1)]
    coco_json = {"images": [], "annotations": [], "categories": categories}
    (coco / "annotations" / "instances_val2017.json").write_text(json.dumps(coco_json))
    own = coco / "annotations" / "ov_split.json"
    protocol = get_harness("det-ovcoco").resolve_protocol("boxcls")
    facts = ["0 images in annotations/instances_val2017.json (expected 5,000)", "65 categories (expected 80)"]
    own.write_text(json.dumps({"base": list(reversed(public.base)), "novel": list(reversed(public.novel))}))
    assert ov_coco_differences(coco, protocol) == facts
    own.write_text(json.dumps({"base": [*public.base, public.novel[0]], "novel": list(public.novel[1:])}))
    assert ov_coco_differences(coco, protocol) == [
        *facts,
        "split annotations/ov_split.json (expected the public OV-COCO 48 base / 17 novel)",
    ]


def test_coco_images_missing_on_disk_are_named(synth_root: Path, tmp_path: Path) -> None:
    coco = tmp_path / "coco"
    shutil.copytree(synth_root / "coco" / "annotations", coco / "annotations")
    shutil.copytree(synth_root / "coco" / "val2017", coco / "val2017")
    gone = sorted((coco / "val2017").iterdir())[:2]
    for path in gone:
        path.unlink()
    harness = get_harness("det-ovcoco")
    protocol = harness.resolve_protocol("boxcls")
    assert harness.preflight(coco, protocol, harness.parse_options({}), "cpu") == [
        f"{coco / 'val2017'}: 2 of the 40 images of annotations/instances_val2017.json missing: "
        f"{gone[0].name}, {gone[1].name}"
    ]


@pytest.mark.mm
def test_one_preflight_reports_every_entry_s_problems_before_compute(
    synth_root, tmp_path, cache, capsys
) -> None:
    data = tmp_path / "data"
    shutil.copytree(synth_root / "flickr30k", data / "flickr30k")
    karpathy = data / "flickr30k" / "dataset_flickr30k.json"
    doc = json.loads(karpathy.read_text())
    del doc["images"][3]["sentences"][0]["raw"]
    karpathy.write_text(json.dumps(doc))
    shutil.copytree(synth_root / "ADEChallengeData2016", data / "ADEChallengeData2016")
    labels = data / "ADEChallengeData2016" / "annotations" / "validation"
    first = sorted(labels.rglob("*.png"))[0]
    values = np.asarray(Image.open(first)).copy()
    values[0, 0] = 200
    Image.fromarray(values).save(first)
    shutil.copytree(synth_root / "coco" / "annotations", data / "coco" / "annotations")
    (data / "coco" / "val2017").symlink_to(synth_root / "coco" / "val2017")
    split_file = data / "coco" / "annotations" / "ov_split.json"
    split = json.loads(split_file.read_text())
    split_file.write_text(json.dumps({"base": split["base"], "novel": [*split["novel"], "unicorn"]}))
    suite = suite_file(
        tmp_path,
        "{benchmark: retrieval, data: flickr30k}",
        "{benchmark: seg-ade20k, protocol: synth, data: ADEChallengeData2016}",
        "{benchmark: det-ovcoco, protocol: boxcls, data: coco, overrides: {input_size: 128}}",
    )
    assert main(run_args(suite, data, tmp_path / "res")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    problems = [line.strip()[2:] for line in err if line.startswith("    - ")]
    assert problems == [
        f"{karpathy}: images[3].sentences[0] is missing key 'raw'",
        f"{labels}: 1 of 20 sampled label maps hold values other than 0..22 and 255 (22 classes, "
        f"reduce_zero_label): {first.name} (values 200)",
        f"{data / 'coco' / 'annotations' / 'instances_val2017.json'}: split {split_file.resolve()} names "
        "categories this file does not have: 'unicorn'",
    ]
    assert err[-1] == f"silc-bench: error: {data}: 3 problem(s) listed above; nothing was computed"
    assert not (tmp_path / "res").exists() and not cache.exists()


@pytest.mark.mm
def test_the_paper_suite_s_gpu_recipe_is_refused_on_a_cpu_in_one_line(
    synth_root, tmp_path, cache, capsys
) -> None:
    """`fvlm_coco_gpu.py` declares silc_bench_requires = {train_device: cuda}; the paper suite's fvlm entry
    trains it, so on a CPU it is refused before anything runs (with --allow-nonstandard: the world's COCO is not
    OV-COCO, which would be a second line)."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "coco").symlink_to(synth_root / "coco")
    device_line = (
        "fvlm_coco_gpu.py: a cuda training recipe (its silc_bench_requires), not for cpu: run it with --device "
        "cuda on a machine that has one, or evaluate trained weights with --det-weights FILE"
    )
    suite = load_suite("paper")
    by_entry = {
        f.entry: f.problems for f in suite.check(tmp_path / "data", "cpu", allow_nonstandard=True).failed
    }
    assert by_entry["det-ovcoco (fvlm)"] == (device_line,)
    assert "det-ovcoco (boxcls)" not in by_entry
    on_gpu = {f.entry for f in suite.check(tmp_path / "data", "cuda", allow_nonstandard=True).failed}
    assert "det-ovcoco (fvlm)" not in on_gpu
    args = ["run", "--suite", "paper", "--data-root", str(tmp_path / "data"), "--results", str(tmp_path / "res"),
            "--device", "cpu", "--allow-nonstandard"]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    block = err.index(f"  det-ovcoco (fvlm) on {tmp_path / 'data' / 'coco'}:")
    assert err[block + 1] == f"    - {device_line}" and err[block + 2].startswith("    layout:")
    assert not (tmp_path / "res").exists() and not cache.exists()
