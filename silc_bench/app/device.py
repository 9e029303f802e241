"""The torch device a command runs on: ``--device`` if given (and available), else CUDA when present."""

from silc.errors import UserError


def resolve_device(requested: str | None) -> str:
    """``cpu``/``cuda`` as asked; ``None`` picks CUDA when available; asking for absent CUDA is a UserError."""
    import torch

    if requested == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available")
    return requested or ("cuda" if torch.cuda.is_available() else "cpu")
