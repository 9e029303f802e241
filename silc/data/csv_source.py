"""CSV image-caption pairs as a map-style dataset whose item ``b`` is this rank's ``b``-th batch.

The data order is one endless stream: epoch ``e`` is a seeded permutation of the rows, and epochs follow each
other without a gap. Stream position ``p`` holds row ``perm_e[p mod N]`` with ``e = p // N``. Rank ``r`` of
``w`` takes positions ``start + b*B*w + r*B ... + B - 1`` for its batch ``b``, so the ranks' batches of one
step, concatenated in rank order, are exactly the single-process batch of size ``B*w``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from silc.data.samples import (
    AUGMENT,
    DECODE_ERRORS,
    PERMUTATION,
    REPLACE,
    BatchParts,
    ViewFn,
    decode_image,
    generator,
)
from silc.errors import UserError

# A corrupt row is replaced by a seeded random row; this many failures in a row means the data is unusable.
MAX_ATTEMPTS = 64


def read_pairs_csv(
    path: str | Path, img_key: str, caption_key: str, sep: str
) -> tuple[np.ndarray, np.ndarray]:
    """Image paths (absolute, relative ones resolved against the CSV's folder) and captions, as numpy str arrays."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such CSV file")
    sep = "\t" if sep in ("\\t", "tab") else sep
    try:
        frame = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise UserError(
            f"{path}: not a readable CSV with separator {sep!r} ({str(exc).splitlines()[0]})"
        ) from exc
    for key in (img_key, caption_key):
        if key not in frame.columns:
            raise UserError(f"{path.name}: no column '{key}' (columns: {', '.join(map(str, frame.columns))})")
    if len(frame) == 0:
        raise UserError(f"{path}: no rows")
    root = path.resolve().parent
    files = np.array([str(root / f) for f in frame[img_key]])  # root / absolute path keeps the absolute path
    return files, np.array(frame[caption_key].tolist())


class CsvPairs(Dataset):
    """Item ``b`` decodes and augments the ``B`` rows of this rank's ``b``-th batch after stream offset ``start``."""

    def __init__(
        self,
        files: np.ndarray,
        captions: np.ndarray,
        views: ViewFn,
        seed: int,
        batch_size: int,
        rank: int,
        world_size: int,
        start: int,
    ):
        self.files, self.captions, self.views = files, captions, views
        self.seed, self.batch_size, self.rank, self.world_size, self.start = (
            seed,
            batch_size,
            rank,
            world_size,
            start,
        )
        self._perm: tuple[int, np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.files)

    def permutation(self, epoch: int) -> np.ndarray:
        """The row order of ``epoch`` (cached: consecutive batches nearly always share an epoch)."""
        if self._perm is None or self._perm[0] != epoch:
            perm = torch.randperm(len(self.files), generator=generator(self.seed, PERMUTATION, epoch)).numpy()
            self._perm = (epoch, perm)
        return self._perm[1]

    def row_at(self, position: int) -> tuple[int, int]:
        """(epoch, row) of a stream position."""
        epoch, j = divmod(position, len(self.files))
        return epoch, int(self.permutation(epoch)[j])

    def __getitem__(self, b: int) -> dict:
        B = self.batch_size
        parts = BatchParts()
        base = self.start + b * B * self.world_size + self.rank * B
        for position in range(base, base + B):
            epoch, row = self.row_at(position)
            aug_key: tuple[int, ...] = (self.seed, AUGMENT, epoch, row)
            for attempt in range(MAX_ATTEMPTS):
                parts.seen += 1
                try:
                    image = decode_image(Path(self.files[row]))
                except DECODE_ERRORS:
                    parts.skipped_keys.append(str(self.files[row]))
                    pick = generator(self.seed, REPLACE, epoch, position, attempt)
                    row = int(torch.randint(len(self.files), (), generator=pick))
                    aug_key = (self.seed, AUGMENT, epoch, row, position)
                    continue
                parts.add(self.views(image, generator(*aug_key)), str(self.captions[row]), row)
                break
            else:
                return parts.to_batch(
                    error=f"{MAX_ATTEMPTS} undecodable images in a row (last: "
                    f"{self.files[row]}); is the CSV's image column right?"
                )
        return parts.to_batch()
