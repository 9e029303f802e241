"""Run one harness on one encoder and store one result record (skipping records that exist)."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks import claims, sharding
from benchmarks.options import HarnessOptions
from benchmarks.records import (
    ResultRecord,
    artefacts_dir,
    read_record,
    record_path,
    software_versions,
    write_record,
)
from benchmarks.registry import Evaluation, Harness
from silc.errors import UserError

if TYPE_CHECKING:
    from adapters.encoder import Encoder

log = logging.getLogger(__name__)


def run_harness(
    harness: Harness,
    encoder: Encoder,
    data_root: str | Path,
    protocol_name: str,
    protocol: dict[str, Any],
    results_dir: str | Path,
    rerun: bool = False,
    options: HarnessOptions | dict[str, Any] | None = None,
    wait: bool = True,
    dataset_identity: dict[str, Any] | None = None,
) -> tuple[ResultRecord, Path, bool]:
    """Evaluate and write the record; returns (record, path, computed). An existing record is reused.
    ``dataset_identity``: what the suite's preflight found about the public dataset the data was claimed to be.

    The record is computed under its claim, so concurrent runs on one results folder compute it once: a record
    another process is computing is waited for and reused (``wait=False``: raise ``ClaimedElsewhere`` instead).
    The harness gets its typed options and one artefacts folder next to the record for any other files.

    Under torchrun every rank calls this with the same arguments: rank 0 alone looks at the results folder (the
    record, its claim) and its decision is every rank's; the ranks evaluate together (each encodes its share of
    the images) and rank 0 writes the record, which every rank returns."""
    options = harness.parse_options(options)
    protocol = harness.pin_protocol(protocol, encoder, Path(data_root))
    path = record_path(results_dir, encoder.name, harness.name, protocol_name, protocol)
    data_root = Path(data_root)
    held: list[claims.Claim] = []  # rank 0's claim on the record
    try:
        if sharding.on_main(lambda: _decide(path, rerun, wait, held)) == REUSE:
            return sharding.on_main(lambda: _reuse(path, encoder, data_root))
        return _evaluate(
            harness,
            encoder,
            data_root,
            protocol_name,
            protocol,
            results_dir,
            options,
            path,
            dataset_identity or {},
        )
    finally:
        for claim in held:
            claim.release()


REUSE, COMPUTE = "reuse", "compute"


def _decide(path: Path, rerun: bool, wait: bool, held: list[claims.Claim]) -> str:
    """``REUSE`` the record at ``path``, or ``COMPUTE`` it under its claim (appended to ``held``); a record
    another process is computing is waited for (``wait=False``: raise ``ClaimedElsewhere``)."""
    if path.exists() and not rerun:
        claims.clear_stale(path)
        return REUSE
    try:
        held.append(claims.Claim(path, wait=False))
    except claims.ClaimedElsewhere as e:
        if not wait:
            raise
        log.info("%s; waiting for it", e)
        held.append(claims.Claim(path))
        if path.exists() and not rerun:  # written by the process that held the claim
            return REUSE
    return COMPUTE


def _reuse(path: Path, encoder: Encoder, data_root: Path) -> tuple[ResultRecord, Path, bool]:
    """The stored record at ``path``, if it stands for this encoder and dataset."""
    log.info("skip %s (exists; --rerun to recompute)", path)
    record = read_record(path)
    _check_reusable(record, path, encoder, data_root)
    return record, path, False


def _evaluate(
    harness: Harness,
    encoder: Encoder,
    data_root: Path,
    protocol_name: str,
    protocol: dict[str, Any],
    results_dir: str | Path,
    options: HarnessOptions,
    path: Path,
    dataset_identity: dict[str, Any],
) -> tuple[ResultRecord, Path, bool]:
    """Run the harness (on every rank) and write its record (rank 0, which holds the record's claim)."""
    start = time.perf_counter()
    ev = harness.evaluate(encoder, data_root, protocol, options, artefacts_dir(path))
    wall = time.perf_counter() - start

    def write() -> tuple[ResultRecord, Path]:
        metrics_ci, uncertainty = _intervals(harness, ev, artefacts_dir(path), options.bootstrap)
        record = ResultRecord(
            model=encoder.name,
            spec=encoder.spec,
            fingerprint=encoder.fingerprint,
            benchmark=harness.name,
            protocol_name=protocol_name,
            protocol=protocol,
            dataset_root=str(data_root.resolve()),
            split=ev.split,
            num_samples=ev.num_samples,
            metrics=ev.metrics,
            wall_time_s=round(wall, 3),
            images_per_s=round(ev.images_processed / wall, 3) if wall > 0 else 0.0,
            extra=ev.extra,
            versions=software_versions(),
            metrics_ci=metrics_ci,
            uncertainty=uncertainty,
            skipped_images=list(ev.skipped_images),
            dataset_identity=dataset_identity,
        )
        written = write_record(results_dir, record)
        log.info("wrote %s", written)
        return record, written

    record, written = sharding.on_main(write)
    return record, written, True


def _intervals(
    harness: Harness, ev: Evaluation, artefacts: Path, resamples: int
) -> tuple[dict[str, dict[str, float | None]], dict[str, Any]]:
    """Save the per-sample outcomes beside the record and bootstrap the headline metrics' 95 % intervals."""
    if ev.outcomes is None:
        return {}, {}
    from benchmarks import uncertainty

    _, sha256 = ev.outcomes.save(artefacts)
    if resamples == 0:
        return {}, uncertainty.describe(ev.outcomes, 0, uncertainty.DEFAULT_SEED, 0.0, sha256)
    requested, cap = resamples, harness.max_resamples(ev.outcomes.arrays)
    if cap is not None:
        resamples = min(resamples, cap)
    start = time.perf_counter()
    point, metrics_ci = uncertainty.bootstrap(harness.metrics_from_counts, ev.outcomes, resamples)
    for key, value in point.items():
        recorded = ev.metrics.get(key)
        undefined = value != value and (
            recorded is None or recorded != recorded
        )  # NaN point, None/NaN metric
        if recorded != value and not undefined:
            raise RuntimeError(
                f"{harness.name}: {key} from the per-sample outcomes is {value!r}, the metric is "
                f"{ev.metrics.get(key)!r} (a bug: the interval would not belong to the number)"
            )
    seconds = time.perf_counter() - start
    log.info("%s: %d bootstrap resamples in %.2f s", harness.name, resamples, seconds)
    described = uncertainty.describe(ev.outcomes, resamples, uncertainty.DEFAULT_SEED, seconds, sha256)
    if resamples < requested:  # capped by the harness (a slow metric): say so
        described["resamples_requested"] = requested
    return metrics_ci, described


def _check_reusable(record: ResultRecord, path: Path, encoder: Encoder, data_root: Path) -> None:
    """A stored record stands for this run only if it comes from these weights and this dataset."""
    if record.fingerprint != encoder.fingerprint:
        raise UserError(
            f"{path}: existing record was computed from other weights or data than {encoder.spec!r} "
            "(weights fingerprint differs); pass --rerun to recompute or use another --results"
        )
    if Path(record.dataset_root) != data_root.resolve():
        raise UserError(
            f"{path}: existing record was computed from other weights or data: dataset {record.dataset_root}, "
            f"not {data_root.resolve()}; pass --rerun to recompute or use another --results"
        )
