"""The one exception type that the CLI turns into a one-line error and a non-zero exit, and the helpers that keep
its messages to one line."""

from collections.abc import Sequence


class UserError(Exception):
    """Bad input from the user (file, key, value); the message names what and what was expected."""


def first_line(error: BaseException) -> str:
    """The first non-empty line of an exception's message, with its type (CLI errors are one line)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


def listed(items: Sequence[object], limit: int = 10) -> str:
    """``items`` comma-separated, at most ``limit`` of them, then how many more (``a, b, and 3 more``): a list
    inside a one-line message."""
    shown = ", ".join(str(item) for item in items[:limit])
    return shown + (f", and {len(items) - limit} more" if len(items) > limit else "")


def torch_load_failure(error: BaseException) -> str:
    """Why ``torch.load(..., weights_only=True)`` failed, in one line: a refused pickled object (code) is named
    plainly instead of torch's multi-line advice to load it unsafely."""
    if "Weights only load failed" in str(error):
        return "holds Python objects other than tensors and containers; refused by weights_only loading"
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
