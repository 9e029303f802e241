"""OpenMMLab runners log to stdout; ours keeps stdout for results, so their console output goes to stderr."""

from __future__ import annotations

import logging
import sys


def logs_to_stderr(logger: logging.Logger) -> None:
    """Point a logger's stdout console handlers (mmengine's default) at stderr; other handlers are untouched."""
    for handler in logger.handlers:
        if isinstance(handler, logging.StreamHandler) and handler.stream is sys.stdout:
            handler.setStream(sys.stderr)
