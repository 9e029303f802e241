"""Run a suite's experiment: train every recipe x seed (resumable), evaluate every run on the suite's benchmarks,
write each table of the write-up. Table by table, so the first table's results exist before the next one trains."""

from __future__ import annotations

import sys
from pathlib import Path

from benchmarks.experiment_spec import ExperimentSpec, ExperimentTable, parse_experiment
from benchmarks.suites import Suite
from silc.errors import UserError
from silc.io import atomic_write_text


def table_command(suite: Suite, results: Path, table: ExperimentTable) -> str:
    """The ``silc-bench table`` command line that prints ``table`` from the experiment's records."""
    return (
        f"silc-bench table --results {results} --layout {table.layout} --baseline {table.baseline} "
        f"--models {','.join(table.recipes)}"
    )


def render_table(results: Path, table: ExperimentTable) -> str:
    """``table`` as Markdown from the records under ``results`` (the same code path as ``silc-bench table``)."""
    from benchmarks.tables import build_table, load_results, render, select_models

    loaded = select_models(load_results(results), table.recipes)
    return render(build_table(loaded, table.layout, table.baseline), "md", table.layout)


def _train(
    spec: ExperimentSpec, table: ExperimentTable, world: Path, runs: Path, jobs: int | None
) -> list[str]:
    from silc_bench.app.variant_runs import default_jobs, raise_on_failures, train_variants

    variants = [v for recipe in table.recipes for v in spec.seeded(recipe)]
    print(f"training {len(variants)} runs of table {table.name!r} into {runs}", file=sys.stderr)
    done = train_variants(
        tuple(variants), spec.run, 0, world, runs, spec.threads, jobs or default_jobs(spec.threads)
    )
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
    written (``results/<table>.md``). Finished runs and existing records are reused, interrupted runs resume."""
    from silc_bench.app.suite_run import preflight_or_fail, run_suite, suite_data_root

    spec = parse_experiment(suite)
    chosen = [spec.table(name) for name in tables] if tables else list(spec.tables)
    world = suite_data_root(suite, None)
    identities = preflight_or_fail(suite, world, device)
    written = []
    for table in chosen:
        models = _train(spec, table, world, runs, jobs)
        print(f"evaluating {len(models)} runs of table {table.name!r} into {results}", file=sys.stderr)
        run_suite(models, suite, world, results, device=device, identities=identities)
        path = results / f"{table.name}.md"
        atomic_write_text(
            path, f"<!-- {table_command(suite, results, table)} -->\n{render_table(results, table)}"
        )
        print(f"wrote {path}", file=sys.stderr)
        written.append(path)
    if not written:
        raise UserError(f"{suite.path}: no table chosen")
    return written
