"""Run a suite's experiment: train every recipe x seed (resumable), evaluate every run on the suite's benchmarks,
write each table of the write-up. Table by table, and within a table round by round (as many runs as train at
once), so results are kept as they come: an interruption loses at most the round in progress.

Beside each run's records goes ``training.yaml`` (its merged training config, seed, steps and the hashes of the
config and the trainer's source): the provenance of the records, and what lets a later call skip a run whose
records are all there (on another machine, with the run folder gone) instead of training it again.
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
from pathlib import Path

import yaml

from benchmarks.experiment_spec import ExperimentSpec, ExperimentTable, parse_experiment
from benchmarks.regress_spec import Variant
from benchmarks.suites import Suite
from silc.io import atomic_write_text

TRAINING = "training.yaml"
log = logging.getLogger(__name__)


def table_command(results: Path, table: ExperimentTable) -> str:
    """The ``silc-bench table`` command line that prints ``table`` from the experiment's records."""
    return (
        f"silc-bench table --results {results} --layout {table.layout} --baseline {table.baseline} "
        f"--models {','.join(table.recipes)}"
    )


def render_table(results: Path, table: ExperimentTable) -> str:
    """``table`` as Markdown, with its caption, from the records under ``results`` (``silc-bench table``'s path)."""
    from benchmarks.table_models import select_models
    from benchmarks.table_render import caption, render
    from benchmarks.table_rows import load_results
    from benchmarks.tables import build_table

    df = build_table(select_models(load_results(results), table.recipes), table.layout, table.baseline)
    return render(df, "md", table.layout) + caption(df)


def _provenance(spec: ExperimentSpec, v: Variant, world: Path, runs: Path) -> dict:
    from silc_bench.app.variant_runs import merged_config, run_identity, train_command

    identity = run_identity(v, spec.run, 0, world, runs)
    return {
        "run": v.name,
        "seed": v.seed,
        "steps": spec.run.steps,
        "config_file": v.config.name,
        "config_sha256": identity["config_sha256"],
        "trainer_sha256": identity["trainer_sha256"],
        "config": merged_config(train_command(v, spec.run, 0, world, runs / v.name, "cpu")),
    }


def _kept(manifest: Path) -> dict:
    try:
        return yaml.safe_load(manifest.read_text()) or {} if manifest.is_file() else {}
    except yaml.YAMLError:
        return {}


def train_time(run_dir: Path) -> dict[str, float]:
    """``train_seconds``: the run's time in training steps (checkpoint writes included; start-up, evaluation and
    any pause of an interrupted run not), summed over its log windows from ``RUN/log.jsonl``."""
    seconds, previous = 0.0, 0
    batch = int(yaml.safe_load((run_dir / "config.yaml").read_text())["train"]["batch_size"])
    for line in (run_dir / "log.jsonl").read_text().splitlines():
        entry = json.loads(line)
        if "samples_per_s" in entry:
            seconds += (entry["step"] - previous) * batch / entry["samples_per_s"]
            previous = entry["step"]
    return {"train_seconds": round(seconds, 1)}


def recorded(suite: Suite, results: Path, alias: str, provenance: dict) -> bool:
    """Whether ``results`` holds every record of the suite for ``alias``, made from a run of the same config
    (its ``training.yaml``); a different trainer source is reported, not refused. Records of a run of another
    config are deleted (they stand for weights the recipe no longer makes), with a line saying so."""
    from benchmarks.records import record_glob

    manifest = results / alias / TRAINING
    kept = _kept(manifest)
    if kept.get("config_sha256") != provenance["config_sha256"]:
        if kept:
            print(
                f"{alias}: its recipe changed since {results / alias} was made; evaluating it anew",
                file=sys.stderr,
            )
            shutil.rmtree(results / alias)
        return False
    complete = all(record_glob(results, alias, r.entry.benchmark, r.protocol_name) for r in suite.resolve())
    if complete and kept.get("trainer_sha256") != provenance["trainer_sha256"]:
        log.warning(
            "%s: records reused from a run of an earlier trainer source (sha256 %s…, now %s…); delete %s to "
            "train and evaluate it again",
            alias,
            str(kept.get("trainer_sha256"))[:12],
            str(provenance["trainer_sha256"])[:12],
            manifest,
        )
    return complete


def _train(variants: list[Variant], spec: ExperimentSpec, world: Path, runs: Path, jobs: int) -> list[str]:
    from silc_bench.app.variant_runs import raise_on_failures, train_variants

    done = train_variants(tuple(variants), spec.run, 0, world, runs, spec.threads, jobs)
    raise_on_failures(done)
    return [f"{r.variant}={r.run_dir}" for r in done]


def run_experiment(
    suite: Suite,
    runs: Path,
    results: Path,
    tables: list[str] | None = None,
    jobs: int | None = None,
    device: str = "cpu",
) -> list[Path]:
    """Train, evaluate and tabulate ``tables`` (default: all, in the suite's order); returns the table files
    written (``results/<table>.md``). Runs whose records are all in ``results`` are skipped, finished runs and
    existing records reused, interrupted runs resumed from their last checkpoint."""
    from silc_bench.app.suite_run import preflight_or_fail, run_suite, suite_data_root
    from silc_bench.app.variant_runs import default_jobs

    spec = parse_experiment(suite)
    chosen = [spec.table(name) for name in tables] if tables else list(spec.tables)
    world = suite_data_root(suite, None)
    identities = preflight_or_fail(suite, world, device)
    written = []
    for table in chosen:
        variants = [v for recipe in table.recipes for v in spec.seeded(recipe)]
        provenance = {v.name: _provenance(spec, v, world, runs) for v in variants}
        todo = [v for v in variants if not recorded(suite, results, v.name, provenance[v.name])]
        print(
            f"table {table.name!r}: {len(variants)} runs, {len(variants) - len(todo)} already evaluated in "
            f"{results}; training {len(todo)} into {runs}",
            file=sys.stderr,
        )
        at_once = jobs or default_jobs(spec.threads)
        for start in range(
            0, len(todo), at_once
        ):  # a round of runs is evaluated (and kept) before the next trains
            batch = todo[start : start + at_once]
            models = _train(batch, spec, world, runs, at_once)
            run_suite(models, suite, world, results, device=device, identities=identities)
            for v in batch:
                kept = {**provenance[v.name], "threads": spec.threads, **train_time(runs / v.name)}
                atomic_write_text(results / v.name / TRAINING, yaml.safe_dump(kept, sort_keys=False))
        path = results / f"{table.name}.md"
        atomic_write_text(path, f"<!-- {table_command(results, table)} -->\n{render_table(results, table)}")
        print(f"wrote {path}", file=sys.stderr)
        written.append(path)
    return written
