"""mmengine's console handler writes to stdout; we move it to stderr so stdout carries only results."""

from __future__ import annotations

import logging
import sys

from benchmarks.mm_logs import logs_to_stderr


def test_stdout_console_handlers_move_to_stderr_and_others_stay(tmp_path):
    logger = logging.Logger("mm-test")
    console = logging.StreamHandler(sys.stdout)
    other = logging.StreamHandler(sys.stderr)
    to_file = logging.FileHandler(tmp_path / "log.txt")
    for handler in (console, other, to_file):
        logger.addHandler(handler)
    logs_to_stderr(logger)
    assert console.stream is sys.stderr and other.stream is sys.stderr
    assert to_file.stream is not sys.stderr and to_file.stream is not sys.stdout
    to_file.close()
