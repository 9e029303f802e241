"""Tables with intervals from hand-made records and per-sample outcomes: paired gains, significance marks, seed
groups (mean ± std), refusals, and exact output."""

from __future__ import annotations

import io
import math
import shutil
import statistics
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmarks import uncertainty
from benchmarks.records import artefacts_dir, record_path, write_record
from benchmarks.registry import _REGISTRY, Harness
from benchmarks.table_models import seed_groups
from benchmarks.table_render import render
from benchmarks.table_rows import load_results
from benchmarks.tables import build_table
from benchmarks.uncertainty import Outcomes
from silc.errors import UserError
from silc_bench.cli import main
from tests.test_product_tables import make_record

UNITS = [f"val/img{i:03d}.png" for i in range(64)]


class ScoreHarness(Harness):
    """Per-image real-valued scores ``a`` and ``b``; the metrics are their means over the drawn images."""

    name = "test-score"
    description = "mean of per-image scores (table tests)"
    protocols = {"p": {}}
    default_protocol = "p"
    key_metrics = ("a", "b")
    table_order = 5
    metric_scale = "fraction"

    def evaluate(self, *args):
        raise NotImplementedError

    def metrics_from_counts(self, arrays, counts):
        w = counts.astype(np.float64)
        return {k: w @ arrays[k] / w.sum(axis=1) for k in ("a", "b")}


@pytest.fixture(autouse=True)
def score_harness(monkeypatch):
    monkeypatch.setitem(_REGISTRY, "test-score", ScoreHarness())


def write_with_outcomes(
    results: Path,
    model: str,
    benchmark: str,
    arrays: dict[str, np.ndarray],
    units: list[str] = UNITS,
    protocol: dict | None = None,
    resamples: int = 1000,
) -> Path:
    """A record whose metrics come from ``arrays`` through its harness, with its outcomes file beside it."""
    harness = _REGISTRY[benchmark]
    protocol = protocol if protocol is not None else ({"top_k": [1]} if benchmark == "zeroshot-cls" else {})
    outcomes = Outcomes("image", list(units), arrays)
    point, ci = uncertainty.bootstrap(harness.metrics_from_counts, outcomes, resamples)
    record = make_record(model, benchmark, "p" if benchmark == "test-score" else "default", protocol, point)
    path = record_path(results, model, record.benchmark, record.protocol_name, record.protocol)
    _, sha = outcomes.save(artefacts_dir(path))
    record.metrics_ci = ci
    record.uncertainty = uncertainty.describe(outcomes, resamples, uncertainty.DEFAULT_SEED, 0.01, sha)
    return write_record(results, record)


def zs_arrays(correct: np.ndarray, num_classes: int = 4) -> dict[str, np.ndarray]:
    """zero-shot outcomes with top-1 hits where ``correct``."""
    target = np.arange(len(correct)) % num_classes
    pred = np.where(correct, target, (target + 1) % num_classes)
    return {
        "target": target,
        "pred": pred,
        "top_k": np.asarray([1]),
        "hits": correct[:, None].astype(bool),
        "num_classes": np.asarray(num_classes),
    }


def scores(seed: int, shift: float = 0.0) -> dict[str, np.ndarray]:
    """Dyadic scores (k/8), so that sums and the shift stay exact in floating point."""
    rng = np.random.default_rng(seed)
    a = rng.permutation(np.arange(len(UNITS)) % 8) / 8  # mean 3.5 / 8 = 0.4375
    return {"a": a + shift, "b": rng.integers(0, 8, len(UNITS)) / 8}


def table(results: Path, layout: str = "main", fmt: str = "md", **kw) -> str:
    loaded = load_results(results)
    return render(build_table(loaded, layout, kw.pop("baseline", "clip"), **kw), fmt, layout)


def csv(results: Path, layout: str = "main", **kw) -> pd.DataFrame:
    return pd.read_csv(io.StringIO(table(results, layout, "csv", **kw)))


def test_paired_gain_of_perfectly_correlated_models_has_width_zero(tmp_path: Path) -> None:
    base = scores(1)
    write_with_outcomes(tmp_path, "clip", "test-score", base)
    write_with_outcomes(tmp_path, "silc", "test-score", scores(1, shift=0.25))  # a shifted, b identical
    df = build_table(load_results(tmp_path), "main", "clip").set_index("metric")
    assert df.loc["a", "gain"] == 0.25 and df.loc["a", "gain_low"] == 0.25 == df.loc["a", "gain_high"]
    assert df.loc["b", "gain"] == 0 and df.loc["b", "gain_low"] == 0 == df.loc["b", "gain_high"]
    assert df["significant"].tolist() == [True, False]
    # unpaired (each model resampled on its own draw) the same gain has a wide interval
    h = ScoreHarness()
    ra = h.metrics_from_counts(base, uncertainty.resample_counts(64, 1000, 0))["b"]
    rb = h.metrics_from_counts(base, uncertainty.resample_counts(64, 1000, 1))["b"]
    unpaired = uncertainty.interval(ra - rb)
    assert unpaired["high"] - unpaired["low"] > 0.1


def test_exact_markdown_with_intervals(tmp_path: Path) -> None:
    write_with_outcomes(tmp_path, "clip", "test-score", scores(1))
    write_with_outcomes(tmp_path, "silc", "test-score", scores(1, shift=0.25))
    # an old record pair without outcomes: gain without interval
    for model, acc in (("clip", 0.5), ("silc", 0.625)):
        write_record(tmp_path, make_record(model, "zeroshot-cls", "default", {}, {"acc1": acc}))
    a, b = scores(1)["a"].mean(), scores(1)["b"].mean()
    assert (a, b) == (0.4375, 0.505859375)
    assert table(tmp_path) == (
        "| benchmark    | dataset   | metric   |   silc |   clip (baseline) |        gain |        gain 95% CI |\n"
        "|:-------------|:----------|:---------|-------:|------------------:|------------:|-------------------:|\n"
        "| test-score   | imagenet  | a        | 0.6875 |            0.4375 | **+0.2500** | [+0.2500, +0.2500] |\n"
        "| test-score   | imagenet  | b        | 0.5059 |            0.5059 |      0.0000 |   [0.0000, 0.0000] |\n"
        "| zeroshot-cls | imagenet  | acc1     | 0.6250 |            0.5000 |     +0.1250 |                n/a |\n"
    )
    tex = table(tmp_path, fmt="latex").splitlines()
    assert tex[0] == r"\begin{tabular}{lllrrrr}"
    assert tex[2] == r"benchmark & dataset & metric & silc & clip (baseline) & gain & gain 95\% CI \\"
    assert tex[4] == r"test-score & imagenet & a & 0.6875 & 0.4375 & \textbf{+0.2500} & [+0.2500, +0.2500] \\"
    assert tex[5] == r"test-score & imagenet & b & 0.5059 & 0.5059 & 0.0000 & [0.0000, 0.0000] \\"
    assert tex[6] == r"zeroshot-cls & imagenet & acc1 & 0.6250 & 0.5000 & +0.1250 & n/a \\"
    df = csv(tmp_path)
    assert list(df.columns) == [
        *["benchmark", "dataset", "metric", "silc", "clip (baseline)"],
        *["gain", "gain_low", "gain_high", "significant"],
    ]
    assert df["significant"].tolist() == [True, False, False]
    assert df["gain_low"].tolist()[:2] == [0.25, 0.0] and pd.isna(df["gain_low"].iloc[2])


def test_clearly_significant_gain_is_marked_and_a_null_one_is_not(tmp_path: Path) -> None:
    base = np.zeros(64, bool)
    base[:16] = True  # 0.25
    better = np.ones(64, bool)  # 1.0
    same = np.zeros(64, bool)
    same[8:24] = True  # 0.25, on other images
    write_with_outcomes(tmp_path, "clip", "zeroshot-cls", zs_arrays(base))
    write_with_outcomes(tmp_path, "good", "zeroshot-cls", zs_arrays(better))
    write_with_outcomes(tmp_path, "null", "zeroshot-cls", zs_arrays(same))
    df = build_table(load_results(tmp_path), "main", "clip").set_index("metric")
    assert df.loc["acc1", "gain good"] == 0.75 and df.loc["acc1", "significant good"]
    assert df.loc["acc1", "gain null"] == 0 and not df.loc["acc1", "significant null"]
    assert df.loc["acc1", "gain null_low"] < 0 < df.loc["acc1", "gain null_high"]
    md = table(tmp_path).splitlines()
    acc1 = next(line for line in md if "| acc1 " in line)
    assert "**+0.7500**" in acc1 and "**0.0000**" not in acc1 and " 0.0000 " in acc1
    assert "gain good 95% CI" in md[0] and "gain null 95% CI" in md[0]
    tex = table(tmp_path, fmt="latex")
    assert r"\textbf{+0.7500}" in tex and r"\textbf{0.0000}" not in tex


def test_bootstrap_option_and_records_without_outcomes_keep_the_old_table(tmp_path: Path) -> None:
    write_with_outcomes(tmp_path, "clip", "test-score", scores(1))
    write_with_outcomes(tmp_path, "silc", "test-score", scores(1, shift=0.25))
    plain = table(tmp_path, resamples=0)
    assert plain.splitlines()[0] == (
        "| benchmark   | dataset   | metric   |   silc |   clip (baseline) |    gain |"
    )
    assert "**" not in plain
    assert main(["table", "--results", str(tmp_path), "--bootstrap", "0"]) == 0
    # an outcomes file that was not kept with its record: no interval
    for p in tmp_path.rglob(uncertainty.OUTCOMES_FILE):
        p.unlink()
    assert table(tmp_path).splitlines()[2].endswith("| +0.2500 |           n/a |")


def test_bootstrap_option_sets_the_resamples(tmp_path: Path) -> None:
    base = np.zeros(64, bool)
    base[:16] = True
    other = np.zeros(64, bool)
    other[8:32] = True
    write_with_outcomes(tmp_path, "clip", "zeroshot-cls", zs_arrays(base))
    write_with_outcomes(tmp_path, "silc", "zeroshot-cls", zs_arrays(other))
    df = csv(tmp_path, resamples=200).set_index("metric")
    h = _REGISTRY["zeroshot-cls"]
    counts = uncertainty.resample_counts(64, 200, 0)
    diff = (
        h.metrics_from_counts(zs_arrays(other), counts)["acc1"]
        - h.metrics_from_counts(zs_arrays(base), counts)["acc1"]
    )
    ci = uncertainty.interval(diff)
    assert df.loc["acc1", "gain_low"] == pytest.approx(ci["low"]) and df.loc[
        "acc1", "gain_high"
    ] == pytest.approx(ci["high"])


def test_different_units_are_refused_naming_both_records(tmp_path: Path, capsys) -> None:
    a = write_with_outcomes(tmp_path, "clip", "test-score", scores(1))
    b = write_with_outcomes(tmp_path, "silc", "test-score", scores(2), units=[u + "x" for u in UNITS])
    with pytest.raises(UserError, match="evaluated on different units") as e:
        build_table(load_results(tmp_path), "main", "clip")
    assert str(a) in str(e.value) and str(b) in str(e.value)
    assert main(["table", "--results", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot pair" in err and str(a) in err and str(b) in err


def test_an_outcomes_file_that_does_not_match_its_record_is_refused(tmp_path: Path) -> None:
    write_with_outcomes(tmp_path, "clip", "test-score", scores(1))
    path = write_with_outcomes(tmp_path, "silc", "test-score", scores(1, shift=0.25))
    Outcomes("image", UNITS, scores(3)).save(artefacts_dir(path))
    with pytest.raises(UserError, match="do not match their record"):
        build_table(load_results(tmp_path), "main", "clip")


@pytest.fixture
def seeds(tmp_path: Path) -> Path:
    """Three seeds of silc (a: 0.5, 0.625, 0.75 on average) against one clip, on the same 64 images."""
    base = scores(1)
    write_with_outcomes(tmp_path, "clip", "test-score", base)
    for seed, shift in enumerate((0.0625, 0.1875, 0.3125)):
        write_with_outcomes(
            tmp_path, f"silc-s{seed}", "test-score", {"a": base["a"] + shift, "b": scores(seed + 5)["b"]}
        )
    return tmp_path


def test_seed_groups_mean_and_std_exact(seeds: Path) -> None:
    df = build_table(load_results(seeds), "main", "clip").set_index("metric")
    values = [0.4375 + s for s in (0.0625, 0.1875, 0.3125)]
    assert df.loc["a", "silc (n=3)"] == statistics.mean(values) == 0.625
    assert df.loc["a", "silc (n=3)_std"] == statistics.stdev(values) == 0.125
    # the gain: mean difference; its interval: paired, seeds averaged per resample (here all exactly 0.1875)
    assert df.loc["a", "gain"] == 0.1875 == df.loc["a", "gain_low"] == df.loc["a", "gain_high"]
    bs = [scores(s + 5)["b"].mean() for s in range(3)]
    assert df.loc["b", "silc (n=3)"] == pytest.approx(statistics.mean(bs), abs=1e-12)
    assert df.loc["b", "silc (n=3)_std"] == pytest.approx(statistics.stdev(bs), rel=1e-12)
    md = table(seeds).splitlines()
    assert md[0].split("|")[4].strip() == "silc (n=3)"
    assert md[2].split("|")[4].strip() == "0.6250 ± 0.1250"
    assert md[2].split("|")[6].strip() == "**+0.1875**"
    tex = table(seeds, fmt="latex")
    assert r"0.6250{\scriptsize $\pm$0.1250}" in tex
    plain = render(build_table(load_results(seeds), "main", "clip"), "latex", "main", latex_std="plain")
    assert r"0.6250 $\pm$ 0.1250" in plain


def test_seed_group_interval_averages_the_seeds_per_resample(seeds: Path) -> None:
    df = build_table(load_results(seeds), "main", "clip").set_index("metric")
    loaded = {lr.record.model: lr for lr in load_results(seeds)}
    out = {m: Outcomes.load(artefacts_dir(lr.path) / "outcomes.npz") for m, lr in loaded.items()}
    h = ScoreHarness()
    counts = uncertainty.resample_counts(64, 1000, 0)
    group = np.mean([h.metrics_from_counts(out[f"silc-s{s}"].arrays, counts)["b"] for s in range(3)], axis=0)
    ci = uncertainty.interval(group - h.metrics_from_counts(out["clip"].arrays, counts)["b"])
    assert (df.loc["b", "gain_low"], df.loc["b", "gain_high"]) == (
        round(ci["low"], 12),
        round(ci["high"], 12),
    )


def test_seed_groups_in_ablation_and_full_layouts(seeds: Path) -> None:
    assert table(seeds, "ablation") == (
        "| configuration   |    test-score a |    test-score b |\n"
        "|:----------------|----------------:|----------------:|\n"
        "| clip            |          0.4375 |          0.5059 |\n"
        "| silc (n=3)      | 0.6250 ± 0.1250 | 0.4499 ± 0.0239 |\n"
    )
    full = build_table(load_results(seeds), "full", "clip")
    assert list(full.columns)[5:] == ["silc-s0", "silc-s1", "silc-s2", "silc (n=3)", "silc (n=3)_std", "clip"]
    row = full.set_index("metric").loc["a"]
    assert [row["silc-s0"], row["silc-s1"], row["silc-s2"], row["silc (n=3)"]] == [0.5, 0.625, 0.75, 0.625]
    assert "0.6250 ± 0.1250" in table(seeds, "full")
    # no groups: one column per alias, and a seed group may be the baseline
    assert "silc-s1" in table(seeds, group=None).splitlines()[0]
    assert "silc (n=3) (baseline)" in table(seeds, baseline="silc").splitlines()[0]


def test_seed_group_names(tmp_path: Path) -> None:
    names = [m.label for m in seed_groups({"clip", "silc-s0", "silc-s1", "silc-s2", "solo-s4"})]
    assert names == ["clip", "silc (n=3)", "solo-s4"]
    custom = seed_groups({"run_a_seed1", "run_a_seed2", "run_b_seed1"}, r"(run_\w)_seed\d+")
    assert [m.label for m in custom] == ["run_a (n=2)", "run_b_seed1"]
    with pytest.raises(UserError, match="needs a capturing group"):
        seed_groups({"a"}, r"a-s\d")
    with pytest.raises(UserError, match="share the name 'silc'"):
        seed_groups({"silc", "silc-s0", "silc-s1"})


def test_cli_group_options(seeds: Path, capsys) -> None:
    assert main(["table", "--results", str(seeds), "--no-group", "--bootstrap", "0"]) == 0
    assert "silc-s0" in capsys.readouterr().out
    assert main(["table", "--results", str(seeds), "--group", r"^(sil)c-s\d$", "--format", "latex"]) == 0
    assert r"sil (n=3) & clip (baseline)" in capsys.readouterr().out
    assert main(["table", "--results", str(seeds), "--baseline", "silc-s0"]) == 2
    assert "is one seed of silc (n=3)" in capsys.readouterr().err


def test_run_prints_the_gains_with_intervals_and_a_legend(tmp_path: Path) -> None:
    from silc_bench.app.suite_run import print_table

    paths = [
        write_with_outcomes(tmp_path, "clip", "test-score", scores(1)),
        write_with_outcomes(tmp_path, "silc", "test-score", scores(1, shift=0.25)),
    ]
    out = io.StringIO()
    print_table(paths, "clip", out)
    lines = out.getvalue().splitlines()
    assert lines[0].endswith("|        gain |        gain 95% CI |")
    assert lines[2].endswith("| **+0.2500** | [+0.2500, +0.2500] |")
    assert lines[-1].startswith("gain 95% CI: paired percentile bootstrap") and "**bold**" in lines[-1]


@pytest.fixture
def paired_seeds(tmp_path: Path) -> Path:
    """Three seeds of silc against three of clip on the same 64 images: metric a gains 0.1875, 0.25 and 0.3125
    per seed (the same on every image), metric b gains 0.125, -0.125 and 0.25."""
    for seed, (gain_a, gain_b) in enumerate(((0.1875, 0.125), (0.25, -0.125), (0.3125, 0.25))):
        base = scores(seed + 1)
        write_with_outcomes(tmp_path, f"clip-s{seed}", "test-score", base)
        ours = {"a": base["a"] + gain_a, "b": base["b"] + gain_b}
        write_with_outcomes(tmp_path, f"silc-s{seed}", "test-score", ours)
    return tmp_path


def test_seed_interval_of_paired_seed_groups_and_the_significance_it_gates(paired_seeds: Path) -> None:
    from scipy import stats

    df = build_table(load_results(paired_seeds), "main", "clip").set_index("metric")
    t = stats.t.ppf(0.975, 2)
    for metric, gains in (("a", [0.1875, 0.25, 0.3125]), ("b", [0.125, -0.125, 0.25])):
        half = t * statistics.stdev(gains) / math.sqrt(3)
        assert df.loc[metric, "gain"] == pytest.approx(statistics.mean(gains), abs=1e-12)
        assert df.loc[metric, "gain_seeds_low"] == pytest.approx(statistics.mean(gains) - half, abs=1e-11)
        assert df.loc[metric, "gain_seeds_high"] == pytest.approx(statistics.mean(gains) + half, abs=1e-11)
        # the bootstrap over images sees no spread: every image gains the seeds' mean
        assert df.loc[metric, "gain_low"] == df.loc[metric, "gain_high"] == df.loc[metric, "gain"]
    # a: both intervals exclude 0 -> significant; b: the images' interval does, the seeds' does not -> not
    assert bool(df.loc["a", "significant"]) and not bool(df.loc["b", "significant"])
    md = table(paired_seeds).splitlines()
    assert md[0].split("|")[-2].strip() == "gain seeds 95% CI"
    assert md[2].split("|")[6].strip() == "**+0.2500**" and md[3].split("|")[6].strip() == "+0.0833"


def test_seed_interval_needs_the_same_seeds_on_both_sides(paired_seeds: Path) -> None:
    shutil.rmtree(paired_seeds / "clip-s2")  # clip has seeds 0 and 1 only
    df = build_table(load_results(paired_seeds), "main", "clip")
    assert "gain_seeds_low" not in df.columns and "seeds" not in table(paired_seeds)


def test_models_option_keeps_the_named_models(paired_seeds: Path, capsys) -> None:
    assert main(["table", "--results", str(paired_seeds), "--models", "silc,clip-s0", "--no-group"]) == 2
    assert "--models: no records for silc" in capsys.readouterr().err
    assert (
        main(["table", "--results", str(paired_seeds), "--models", "silc-s0,clip-s0", "--layout", "ablation"])
        == 0
    )
    out = capsys.readouterr().out
    assert "silc-s0" in out and "clip-s0" in out and "silc-s1" not in out
    assert main(["table", "--results", str(paired_seeds), "--models", "dino"]) == 2
    assert "--models: no records for dino; models: clip, silc" in capsys.readouterr().err


def test_main_table_without_baseline_has_no_seed_intervals(paired_seeds: Path) -> None:
    df = build_table(load_results(paired_seeds), "main", None)
    assert df.attrs["seed_intervals"] == {} and "gain" not in df.columns
    assert "seeds" not in render(df, "md", "main")
