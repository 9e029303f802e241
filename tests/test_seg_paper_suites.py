"""The paper suites ``ovss8_sclip``, ``ovss8_clearclip``, ``ovss8_naclip`` (and their synthetic twins) are each
paper's released per-dataset settings, pinned here from the papers' code; SCLIP's area filter (knob
``area_threshold``) against a float64 transcription of SCLIP's post-processing, through the segmentor and through
the harness, recorded only when set."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tests.conftest import require_mm

pytestmark = pytest.mark.mm
require_mm()  # before the mm imports below: fails when mm is missing, skips with SILC_SKIP_MM=1

from mmseg.structures import SegDataSample  # noqa: E402

import adapters.mmseg  # noqa: E402
from adapters.mmseg import ZeroShotSegmentor, drop_small_classes  # noqa: E402
from benchmarks.records import protocol_hash, read_record, write_record  # noqa: E402
from benchmarks.registry import get_harness  # noqa: E402
from benchmarks.seg_config import config_overrides  # noqa: E402
from benchmarks.seg_protocols import PROTOCOLS, check_knobs, pinned_knobs  # noqa: E402
from benchmarks.suites import load_suite  # noqa: E402
from benchmarks.table_rows import load_results  # noqa: E402
from benchmarks.tables import build_table  # noqa: E402
from silc.errors import UserError  # noqa: E402
from silc_bench.app.references import reference_specs  # noqa: E402
from silc_bench.cli import main  # noqa: E402
from tests.conftest import TINY_MODEL_CONFIG  # noqa: E402
from tests.test_product_tables import make_record  # noqa: E402
from tests.test_seg_ovss import LABELS, _evaluate, _maps, write_layout  # noqa: E402
from tests.test_seg_ovss_data import ovss_root  # noqa: E402, F401  (fixture)

HARNESS = get_harness("seg-ade20k")
ORDER = ("voc21", "context60", "coco-object", "voc20", "context59", "coco-stuff", "cityscapes", "ade-336")
WHOLE = None  # whole-image inference (slide_crop=0): one window as large as the image, crop = stride = 2048

# The papers' released settings per ovss8 benchmark: (short side, window, stride, logit scale, background threshold,
# area threshold); a threshold of 0.0 in their code (no threshold) is None here.
# SCLIP (github wangf3014/SCLIP): clip_segmentor.py defaults logit_scale=40, prob_thd=0.0, slide_crop=224,
# slide_stride=112, area_thd=None, pamr_steps=0; configs/cfg_*.py: Resize scale=(2048, short side) and the model keys
# they set (voc21: logit_scale=65, prob_thd=0.1, area_thd=0.1; context60 and coco_object: logit_scale=50,
# prob_thd=0.1; coco_stuff164k: short side 448; city_scapes: 560).
SCLIP = {
    "voc21": (336, 224, 112, 65.0, 0.1, 0.1),
    "context60": (336, 224, 112, 50.0, 0.1, None),
    "coco-object": (336, 224, 112, 50.0, 0.1, None),
    "voc20": (336, 224, 112, 40.0, None, None),
    "context59": (336, 224, 112, 40.0, None, None),
    "coco-stuff": (448, 224, 112, 40.0, None, None),
    "cityscapes": (560, 224, 112, 40.0, None, None),
    "ade-336": (336, 224, 112, 40.0, None, None),
}
# ClearCLIP (github mc-lan/ClearCLIP): clearclip_segmentor.py defaults logit_scale=50, prob_thd=0.0, slide_crop=448,
# slide_stride=224; configs/cfg_*.py: Resize scale=(2048, 448) everywhere; voc21 prob_thd=0.5, context60 0.15,
# coco_object 0.4; city_scapes slide_crop=224 (stride stays 224).
CLEARCLIP = {
    "voc21": (448, 448, 224, 50.0, 0.5, None),
    "context60": (448, 448, 224, 50.0, 0.15, None),
    "coco-object": (448, 448, 224, 50.0, 0.4, None),
    "voc20": (448, 448, 224, 50.0, None, None),
    "context59": (448, 448, 224, 50.0, None, None),
    "coco-stuff": (448, 448, 224, 50.0, None, None),
    "cityscapes": (448, 224, 224, 50.0, None, None),
    "ade-336": (448, 448, 224, 50.0, None, None),
}
# NACLIP (github sinahmr/NACLIP): naclip.py defaults logit_scale=40, prob_thd=0.0, slide_crop=224, slide_stride=112,
# gaussian_std=5, pamr_steps=10, pamr_stride=(8, 16); configs/cfg_*.py: Resize scale=(2048, 336), city_scapes 560;
# voc21 and voc20 slide_crop=0; voc21, context60, coco_object prob_thd=0.1.
NACLIP = {
    "voc21": (336, WHOLE, WHOLE, 40.0, 0.1, None),
    "context60": (336, 224, 112, 40.0, 0.1, None),
    "coco-object": (336, 224, 112, 40.0, 0.1, None),
    "voc20": (336, WHOLE, WHOLE, 40.0, None, None),
    "context59": (336, 224, 112, 40.0, None, None),
    "coco-stuff": (336, 224, 112, 40.0, None, None),
    "cityscapes": (560, 224, 112, 40.0, None, None),
    "ade-336": (336, 224, 112, 40.0, None, None),
}
# ClearCLIP prompts VOC21, VOC20 and COCO-Object with its own lists (configs/cls_*.txt: one name per class, no
# synonyms); the other papers and datasets with the ovss8 protocols' names.
PAPER_NAMES = {("clearclip", name): f"shipped:clearclip-{name}" for name in ("voc21", "voc20", "coco-object")}
# Each paper's method, the same on every benchmark: dense mode and (NACLIP's default and README main results) PAMR.
METHOD = {
    "sclip": {"dense_mode": "sclip", "pamr_iterations": None},
    "clearclip": {"dense_mode": "clearclip", "pamr_iterations": None},
    "naclip": {"dense_mode": "naclip", "naclip_std": 5.0, "pamr_iterations": 10, "pamr_dilations": [8, 16]},
}
PAPERS = {"sclip": SCLIP, "clearclip": CLEARCLIP, "naclip": NACLIP}
# what a paper suite may set on the ovss8 protocols; everything else (dataset, split, names, templates) is theirs
KNOBS = {"dense_mode", "naclip_std", "pamr_iterations", "pamr_dilations", "short_side", "crop", "stride",
         "logit_scale", "bg_threshold", "area_threshold", "names"}  # fmt: skip


def _expected(paper: str, name: str) -> dict:
    short, crop, stride, logit_scale, bg, area = PAPERS[paper][name]
    whole = crop is WHOLE
    return {
        **METHOD[paper],
        "short_side": short,
        "crop": 2048 if whole else crop,
        "stride": 2048 if whole else stride,
        "logit_scale": logit_scale,
        "bg_threshold": bg,
        "area_threshold": area,
        "names": PAPER_NAMES.get((paper, name), PROTOCOLS[name]["names"]),
    }


# -- the suites are the papers' settings ---------------------------------------------------------------------------


@pytest.mark.parametrize("paper", PAPERS)
def test_each_paper_suite_is_the_papers_settings(paper):
    resolved = load_suite(f"ovss8_{paper}").resolve()
    assert [r.protocol_name for r in resolved] == list(ORDER)
    for r in resolved:
        want = _expected(paper, r.protocol_name)
        got = {key: r.protocol.get(key) for key in want}
        assert got == want, r.protocol_name
        base = PROTOCOLS[r.protocol_name]
        assert {k for k in r.protocol if r.protocol[k] != base[k]} <= KNOBS, r.protocol_name
        check_knobs(r.protocol)


@pytest.mark.parametrize("paper", PAPERS)
def test_paper_suites_read_the_ovss8_data_with_its_claims(paper):
    def where(suite):
        return [(e.protocol, e.data, e.dataset, e.requires, e.layout) for e in load_suite(suite).entries]

    assert where(f"ovss8_{paper}") == where("ovss8")


@pytest.mark.parametrize("paper", PAPERS)
def test_synthetic_twins_are_the_paper_settings_at_the_worlds_scale(paper):
    """Short side 64; a slide window of 64 with the paper's stride-to-window ratio; whole images stay whole; every
    other knob the paper suite's."""
    real = {r.protocol_name: r.protocol for r in load_suite(f"ovss8_{paper}").resolve()}
    twin = load_suite(f"ovss8_{paper}_synth")
    plain = load_suite("ovss8_synth")
    assert [(e.protocol, e.data) for e in twin.entries] == [(e.protocol, e.data) for e in plain.entries]
    assert all(e.dataset is None for e in twin.entries)  # synthetic layouts claim no public dataset
    for r in twin.resolve():
        _, crop, stride, *_ = PAPERS[paper][r.protocol_name]
        sizes = (64, 2048, 2048) if crop is WHOLE else (64, 64, 64 * stride // crop)
        assert (r.protocol["short_side"], r.protocol["crop"], r.protocol["stride"]) == sizes
        assert {k: v for k, v in r.protocol.items() if k not in ("short_side", "crop", "stride")} == {
            k: v for k, v in real[r.protocol_name].items() if k not in ("short_side", "crop", "stride")
        }


def test_each_paper_suite_is_one_row_of_the_ovss_table(tmp_path):
    """The table's variant is the method (knobs the eight protocols share); SCLIP's VOC21 area filter, a knob of
    the protocols with a background class only, does not split its row."""
    for paper in PAPERS:
        for i, r in enumerate(load_suite(f"ovss8_{paper}").resolve()):
            protocol = pinned_knobs(r.protocol)
            record = make_record("clip", "seg-ade20k", r.protocol_name, protocol, {"mIoU": float(i)})
            write_record(tmp_path / paper, record)
    rows = {paper: build_table(load_results(tmp_path / paper), "ovss").to_dict("records") for paper in PAPERS}
    assert [row["model"] for row in rows["sclip"]] == ["clip (dense_mode=sclip)"]
    assert [row["model"] for row in rows["clearclip"]] == ["clip (dense_mode=clearclip)"]
    assert [row["model"] for row in rows["naclip"]] == ["clip (dense_mode=naclip, pamr_iterations=10)"]
    assert all(row[0]["Avg."] == pytest.approx(3.5) for row in rows.values())  # all eight in the row


# -- the area_threshold knob ---------------------------------------------------------------------------------------


def test_the_area_filter_is_a_knob_of_the_protocols_with_a_background_class_only():
    with_knob = {name for name, p in PROTOCOLS.items() if "area_threshold" in p}
    assert with_knob == {"voc21", "context60", "coco-object"}
    assert all(PROTOCOLS[name]["area_threshold"] is None for name in with_knob)  # off by default
    assert with_knob == {name for name, p in PROTOCOLS.items() if p.get("bg_threshold") is not None}
    with pytest.raises(UserError, match="protocol 'ade-336' of 'seg-ade20k' has no knob 'area_threshold'"):
        HARNESS.resolve_protocol("ade-336", {"area_threshold": 0.1})


def test_the_area_filter_is_recorded_only_when_set():
    # the hashes these protocols had before area_threshold existed (records of those runs stay valid)
    before = {"voc21": "f4a0dc8dbe", "context60": "89dd889bef", "coco-object": "d68de1b313"}
    for name, hash_ in before.items():
        pinned = pinned_knobs(PROTOCOLS[name])
        assert "area_threshold" not in pinned and protocol_hash(pinned) == hash_
        assert pinned_knobs({**PROTOCOLS[name], "area_threshold": 0.25}) == {**pinned, "area_threshold": 0.25}
    quarter = HARNESS.resolve_protocol("voc21", {"area_threshold": 1 / 4})
    assert pinned_knobs(quarter)["area_threshold"] == 0.25


def test_config_overrides_carry_the_area_filter_only_when_set():
    from mmengine.config import Config

    from benchmarks.seg_config import config_file

    def overrides(**knobs):
        protocol = {**PROTOCOLS["voc21"], **knobs}
        return config_overrides(Config.fromfile(config_file(protocol)), protocol, "ENCODER", "/data")

    default = overrides()
    assert not any("area" in key for key in default)
    assert overrides(area_threshold=0.1) == {**default, "model.area_threshold": 0.1}


@pytest.mark.parametrize("value", [0, 1, 1.5, -0.1, "0.1", True, math.nan])
def test_bad_area_thresholds_are_one_line_user_errors(value, tiny_encoder):
    with pytest.raises(UserError) as err:
        check_knobs({**PROTOCOLS["voc21"], "area_threshold": value})
    assert str(err.value) == f"protocol knob area_threshold: expected a fraction in (0, 1), got {value!r}"
    if isinstance(value, float):
        with pytest.raises(UserError, match=r"area_threshold: expected a fraction in \(0, 1\)"):
            ZeroShotSegmentor(tiny_encoder, ["a", "b"], templates="identity", area_threshold=value)


def test_the_command_line_refuses_the_area_filter_without_a_background_class(synth_root, tmp_path, capsys):
    capsys.readouterr()
    argv = ["eval", "seg-ade20k", "--model", f"tiny=openclip:{TINY_MODEL_CONFIG}", "--data", str(synth_root),
            "--results", str(tmp_path), "--protocol", "synth", "--area-threshold", "0.1"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "has no knob 'area_threshold'" in err, err


# -- SCLIP's area filter against its definition --------------------------------------------------------------------


def _sclip_postprocess(
    query_logits: np.ndarray, owner: list[int], bg_threshold: float | None, area_threshold: float | None
) -> np.ndarray:
    """SCLIP's ``postprocess_result`` transcribed in float64 loops, on scaled query logits ``[Q, H, W]``: the
    softmax over the queries; a class's probability is the max over its queries'; with the area filter, the
    classes 1.. that are the argmax of at most ``area_threshold`` times the pixels whose argmax is not class 0 get
    probability 0 everywhere; the argmax again; class 0 where the (remaining) top probability is below
    ``bg_threshold``."""
    queries, height, width = query_logits.shape
    classes = max(owner) + 1
    probs = np.zeros((classes, height, width))
    for y in range(height):
        for x in range(width):
            column = [float(v) for v in query_logits[:, y, x]]
            top = max(column)
            exps = [math.exp(v - top) for v in column]
            for q in range(queries):
                probs[owner[q], y, x] = max(probs[owner[q], y, x], exps[q] / sum(exps))
    if area_threshold is not None:
        first = probs.argmax(axis=0)
        area = [int((first == c).sum()) for c in range(classes)]
        foreground = sum(area[1:])
        for c in range(1, classes):
            if not area[c] > area_threshold * foreground:
                probs[c] = 0.0
    labels = probs.argmax(axis=0)
    if bg_threshold is not None:
        labels[probs.max(axis=0) < bg_threshold] = 0
    return labels


def _plain_drop(class_logits: np.ndarray, threshold: float, bg_index: int) -> np.ndarray:
    """:func:`drop_small_classes` class by class, in float64 (``[H, W, C]``)."""
    first = class_logits.argmax(axis=2)
    classes = class_logits.shape[2]
    area = [int((first == c).sum()) for c in range(classes)]
    foreground = sum(a for c, a in enumerate(area) if c != bg_index)
    out = class_logits.astype(np.float64).copy()
    for c in range(classes):
        if c != bg_index and not area[c] > threshold * foreground:
            out[:, :, c] = -np.inf
    return out


def _dropped(class_logits: np.ndarray, threshold: float, bg_index: int) -> set[int]:
    out = drop_small_classes(torch.from_numpy(class_logits), threshold, bg_index).numpy()
    np.testing.assert_array_equal(out, _plain_drop(class_logits, threshold, bg_index))
    return {c for c in range(class_logits.shape[2]) if np.isneginf(out[..., c]).all()}


def test_drop_small_classes_is_its_definition():
    # argmax areas: class 0 10 pixels, 1 and 3 2 each, 2 6, 4 none. Background 0: classes 1 and 3 hold 2 of the 10
    # other pixels, exactly 0.2 (dropped at 0.2: the comparison is strict); background 2: 2 of 14.
    first = np.array([0] * 10 + [1] * 2 + [2] * 6 + [3] * 2).reshape(4, 5)
    generator = np.random.default_rng(3)
    logits = generator.normal(size=(4, 5, 5))
    logits[np.arange(4)[:, None], np.arange(5)[None], first] = 5.0 + generator.random((4, 5))
    assert _dropped(logits, 0.2, 0) == {1, 3, 4}
    assert _dropped(logits, 0.19, 0) == {4}
    assert _dropped(logits, 0.6, 0) == {1, 2, 3, 4}
    assert _dropped(logits, 0.14, 2) == {4}
    assert _dropped(logits, 0.15, 2) == {1, 3, 4}
    assert _dropped(logits, 0.72, 2) == {0, 1, 3, 4}  # 10 of 14 = 0.714...: the background class is 2 here
    nothing = np.zeros((3, 3, 4))  # every pixel class 0 (first of a tie): the other classes, never predicted
    assert _dropped(nothing, 0.1, 0) == {1, 2, 3}


NAMES = [["circle", "round shape"], "square", "grass", ["sky", "heaven"], "water"]
QUERIES = [["circle"], ["round shape"], ["square"], ["grass"], ["sky"], ["heaven"], ["water"]]
OWNER = [0, 0, 1, 2, 3, 3, 4]


def _segmentor(encoder, names, **kw) -> ZeroShotSegmentor:
    return ZeroShotSegmentor(
        encoder=encoder, class_names=names, templates="identity", crop_size=32, stride=24, **kw
    )


def _predict(seg: ZeroShotSegmentor, inputs: torch.Tensor, metas: list[dict]) -> list[torch.Tensor]:
    return [s.pred_sem_seg.data[0] for s in seg.predict(inputs, [SegDataSample(metainfo=m) for m in metas])]


def _against_sclip(encoder, bg_threshold: float | None, pamr: int | None) -> tuple[int, int]:
    """Labels with the area filter (0.3) against SCLIP's post-processing (float64 transcription) of the
    segmentor's own query logits at the original shape (with PAMR: refined, as the filter runs after it), on two
    images: the pixels that differ among those whose decision is clear of a tie, and the pixels the filter
    changed."""
    torch.manual_seed(0)
    inputs = torch.randn(2, 3, 40, 56)
    metas = [{"img_shape": (40, 56), "ori_shape": (30, 42)}, {"img_shape": (36, 48), "ori_shape": (45, 60)}]
    knobs = {"bg_threshold": bg_threshold, "logit_scale": 50.0, "dense_mode": "sclip", "pamr_iterations": pamr}  # fmt: skip
    filtered = _predict(_segmentor(encoder, NAMES, area_threshold=0.3, **knobs), inputs, metas)
    unfiltered = _predict(_segmentor(encoder, NAMES, **knobs), inputs, metas)
    per_query = _segmentor(encoder, QUERIES, **knobs)  # the same queries, one class each
    wrong = changed = 0
    for i, meta in enumerate(metas):
        (h, w), out = meta["img_shape"], meta["ori_shape"]
        logits = per_query.class_logits(inputs[i : i + 1], [(h, w)], [out])[0].double().numpy()
        want = _sclip_postprocess(logits, OWNER, bg_threshold, 0.3)
        probs = torch.from_numpy(logits).softmax(dim=0).numpy()
        # no near tie, whichever classes are left, and no probability near the threshold
        clear = np.diff(np.sort(probs, axis=0), axis=0).min(axis=0) > 1e-5
        if bg_threshold is not None:
            clear &= np.abs(probs - bg_threshold).min(axis=0) > 1e-5
        assert clear.mean() > 0.98
        wrong += int((filtered[i].numpy()[clear] != want[clear]).sum())
        changed += int((filtered[i] != unfiltered[i]).sum())
    return wrong, changed


@pytest.mark.parametrize("bg_threshold", [None, 0.3])
@pytest.mark.parametrize("pamr", [None, 2])
def test_segmentor_area_filter_is_sclips_postprocessing(tiny_encoder, bg_threshold, pamr):
    wrong, changed = _against_sclip(tiny_encoder, bg_threshold, pamr)
    assert wrong == 0
    assert changed > 100  # the filter dropped classes: the comparison is not between two unfiltered maps


def _wrong_filter(variant: str):
    """drop_small_classes with one bug: the background's pixels counted in the total, a class at the threshold
    kept, or a dropped class's pixels sent to the background instead of to the best class left."""

    def drop(class_logits, threshold, bg_index=0):
        classes = class_logits.shape[2]
        area = torch.bincount(class_logits.argmax(dim=2).flatten(), minlength=classes).double()
        foreground = torch.arange(classes) != bg_index
        total = area.sum() if variant == "total with background" else area[foreground].sum()
        kept = area >= threshold * total if variant == "kept at the threshold" else area > threshold * total
        kept |= ~foreground
        out = class_logits.masked_fill(~kept, -math.inf)
        if variant == "dropped to background":
            background = out[..., bg_index]
            background[~kept[class_logits.argmax(dim=2)]] = class_logits.max() + 1
        return out

    return drop


WRONG = ["total with background", "kept at the threshold", "dropped to background"]


@pytest.mark.parametrize("variant", WRONG)
def test_the_definition_test_catches_a_wrong_filter(monkeypatch, variant):
    monkeypatch.setitem(globals(), "drop_small_classes", _wrong_filter(variant))
    with pytest.raises(AssertionError):
        test_drop_small_classes_is_its_definition()


@pytest.mark.parametrize("variant", ["total with background", "dropped to background"])
def test_the_reference_catches_a_wrong_filter(tiny_encoder, monkeypatch, variant):
    """These bugs change many of the labels that the segmentor's reference test compares."""
    monkeypatch.setattr(adapters.mmseg, "drop_small_classes", _wrong_filter(variant))
    wrong, _ = _against_sclip(tiny_encoder, None, None)
    assert wrong > 100, variant


def test_the_harness_drops_small_classes_as_defined(tmp_path):
    """VOC21's colour oracle (perfect predictions: every non-ignored pixel its class, ignored ones background)
    with the area filter: per image, a class on at most ``t`` of the non-background pixels is dropped, and its
    pixels go to the background (the oracle scores every other class 0, below the 0.1 threshold); the record's
    per-class IoU is that of those maps, and the protocol and the segmentor carry the knob."""
    threshold = 0.3
    record = _evaluate("voc21", write_layout("voc21", tmp_path / "data"), tmp_path, area_threshold=threshold)
    lut = np.full(256, 255)
    for value, c in LABELS["voc21"].items():
        lut[value] = 255 if c is None else c
    intersect, union, dropped, kept = np.zeros(21), np.zeros(21), set(), set()
    for raw in _maps("voc21", 336, 448):
        gt = lut[raw]
        pred = np.where(gt == 255, 0, gt)
        area = np.bincount(pred.flatten(), minlength=21)
        small = [c for c in range(1, 21) if area[c] and not area[c] > threshold * area[1:].sum()]
        dropped |= set(small)
        kept |= {c for c in range(1, 21) if area[c]} - set(small)
        pred = np.where(np.isin(pred, small), 0, pred)
        valid = gt != 255
        for c in range(21):
            intersect[c] += ((pred == c) & (gt == c) & valid).sum()
            union[c] += (((pred == c) | (gt == c)) & valid).sum()
    assert dropped and kept  # the filter did something, and not everything
    classes = list(record.extra["per_class_iou"])
    for c, name in enumerate(classes):
        got, want = record.extra["per_class_iou"][name], intersect[c] / max(union[c], 1) * 100
        assert got is None if union[c] == 0 else got == pytest.approx(want, abs=1e-4), name
    assert record.protocol["area_threshold"] == threshold
    assert record.extra["mmseg_config"]["model"]["area_threshold"] == threshold


# -- a paper suite end to end ----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_sclip_suite_runs_end_to_end_on_the_synthetic_layouts(ovss_root, tmp_path, capsys, monkeypatch):  # noqa: F811
    monkeypatch.setenv("SILC_BENCH_CACHE", str(tmp_path / "cache"))
    clip = next(s for s in reference_specs() if s.startswith("clip="))
    results = tmp_path / "results"
    argv = ["run", "--suite", "ovss8_sclip_synth", "--data-root", str(ovss_root), "--model", clip]
    assert main([*argv, "--results", str(results), "--device", "cpu", "--bootstrap", "0"]) == 0
    records = {r.protocol_name: r for r in map(read_record, sorted(results.glob("clip/*.json")))}
    assert sorted(records) == sorted(ORDER)
    suite = {r.protocol_name: r.protocol for r in load_suite("ovss8_sclip_synth").resolve()}
    for name, record in records.items():
        assert {k: v for k, v in record.protocol.items() if k in suite[name]} == pinned_knobs(suite[name])
        assert record.extra["mmseg_config"]["model"]["dense_mode"] == "sclip"
        assert record.num_samples == 40 and 0 <= record.metrics["mIoU"] <= 100
    assert records["voc21"].extra["mmseg_config"]["model"]["area_threshold"] == 0.1
    assert "area_threshold" not in records["context60"].extra["mmseg_config"]["model"]
    capsys.readouterr()
    assert main(["table", "--results", str(results), "--layout", "ovss", "--format", "csv"]) == 0
    header, row = capsys.readouterr().out.splitlines()
    assert header == "model,VOC21,PC60,Object,VOC20,PC59,Stuff,City,ADE,Avg."
    assert row.startswith("clip (dense_mode=sclip),")
