"""Packaging: the built wheel holds every module and data file of the checkout (the top-level configs/ as
silc/configs/); installed into a fresh virtual environment and run from outside the checkout it answers
``silc-bench regress --help``, evaluates the bundled reference CLIP to the default run's number and resolves the
ablation suite's variant configs inside the installed package. Also the rule that resolves a variant's config."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from benchmarks.regress_spec import parse_regress_spec, shipped_configs
from benchmarks.suites import load_suite
from silc.errors import UserError
from tests.default_run import EXPECTED, cell
from tests.mutation import copy_repo, repo_files

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("adapters/", "benchmarks/", "silc/", "silc_bench/")
SUITE = """\
name: mine
world: {preset: tiny, seed: 0}
benchmarks:
  - {benchmark: zeroshot-cls, data: imagenet}
train:
  steps: 3
  seed: 0
  variants:
    local: {config: mine.yaml}
    shipped: {config: ablations/local_8.yaml}
fingerprint: {steps: 3, tolerance: {rtol: {default: 1.0e-5}, atol: {default: 1.0e-9}}, eval_rtol: 1.0e-4}
tolerances: {default: 0.001}
"""


def test_variant_config_relative_to_the_suite_then_shipped(tmp_path: Path) -> None:
    (tmp_path / "mine.yaml").write_text("base: x.yaml\n")
    (tmp_path / "suite.yaml").write_text(SUITE)
    variants = parse_regress_spec(load_suite(str(tmp_path / "suite.yaml"))).variants
    assert [(v.name, v.config) for v in variants] == [
        ("local", tmp_path / "mine.yaml"),
        ("shipped", ROOT / "configs" / "ablations" / "local_8.yaml"),
    ]
    (tmp_path / "suite.yaml").write_text(SUITE.replace("ablations/local_8.yaml", "ablations/local_9.yaml"))
    with pytest.raises(UserError) as err:
        parse_regress_spec(load_suite(str(tmp_path / "suite.yaml")))
    assert str(err.value) == (
        f"{tmp_path / 'suite.yaml'}: train.variants.shipped.config: ablations/local_9.yaml is not a file relative "
        f"to the suite ({tmp_path}) nor among the shipped training configs ({ROOT / 'configs'})"
    )


def test_ablation_suite_variants_are_shipped_configs() -> None:
    variants = parse_regress_spec(load_suite("ablations")).variants
    assert shipped_configs() == ROOT / "configs"
    assert {v.config.parent for v in variants} == {ROOT / "configs" / "ablations"}
    assert all(v.config.is_file() for v in variants) and len(variants) == 7


def _run(command: list[str], cwd: Path, env: dict[str, str]) -> str:
    proc = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, f"{' '.join(command)}: {proc.stderr[-3000:]}"
    return proc.stdout


# What the installed package says about itself, run by the fresh environment's python from outside the checkout.
PROBE = """\
import json, adapters, benchmarks, silc, silc_bench
from benchmarks.regress_spec import parse_regress_spec
from benchmarks.suites import load_suite
from silc.config import load_config
variants = parse_regress_spec(load_suite("ablations")).variants
for v in variants:
    load_config(str(v.config))  # its base: chain resolves too
print(json.dumps({"modules": [m.__file__ for m in (adapters, benchmarks, silc, silc_bench)],
                  "variants": [str(v.config) for v in variants]}))
"""


@pytest.mark.slow
def test_wheel_in_a_fresh_venv_outside_the_checkout(tmp_path: Path, synth_root: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update({"SILC_BENCH_CACHE": str(tmp_path / "features"), "CUDA_VISIBLE_DEVICES": ""})
    # the wheel, built from a copy of what git would ship (no build/ or egg-info written into the checkout)
    src = copy_repo(ROOT, tmp_path / "src")
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", str(src)]
    _run([*pip_wheel, "-w", str(tmp_path / "dist")], tmp_path, env)
    (wheel,) = (tmp_path / "dist").glob("silc_bench-*.whl")
    files = repo_files(ROOT)
    shipped = {f for f in files if f.startswith(PACKAGES)} | {
        f"silc/{f}" for f in files if f.startswith("configs/")
    }
    assert sorted(shipped - set(zipfile.ZipFile(wheel).namelist())) == []

    # a fresh venv that sees this environment's heavy dependencies through a .pth line (a plain path: the editable
    # install's own .pth finder there is not run), with the wheel installed into it
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp_path, env)
    python = venv / "bin" / "python"
    site = Path(
        _run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp_path, env
        ).strip()
    )
    (site / "_silc_bench_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", "--no-index", str(wheel)],
         tmp_path, env)  # fmt: skip

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    probe = json.loads(_run([str(python), "-c", PROBE], elsewhere, env))
    assert all(Path(m).is_relative_to(site) for m in probe["modules"]), probe["modules"]
    assert [Path(p).relative_to(site).parts[:3] for p in probe["variants"]] == [
        ("silc", "configs", "ablations")
    ] * 7

    help_text = _run([str(venv / "bin" / "silc-bench"), "regress", "--help"], elsewhere, env)
    assert help_text.startswith("usage: silc-bench regress")

    ref = site / "silc_bench" / "reference" / "clip"
    spec = f"clip=openclip:{ref / 'open_clip_config.json'}@{ref / 'model.safetensors'}"
    _run([str(venv / "bin" / "silc-bench"), "eval", "zeroshot-cls", "--model", spec, "--data", str(synth_root / "imagenet"),
          "--results", str(tmp_path / "results"), "--device", "cpu", "--no-cache"], elsewhere, env)  # fmt: skip
    (record,) = (tmp_path / "results" / "clip").glob("zeroshot-cls.default.*.json")
    acc1 = json.loads(record.read_text())["metrics"]["acc1"]
    # the bundled CLIP's zero-shot acc1 on the default world, as the default run prints it
    assert f"{acc1:.4f}" == cell(EXPECTED.read_text(), "zeroshot-cls", "acc1", "clip (baseline)")
