"""Rows of an array larger than memory: a memory-mapped ``.npy`` read a block at a time.

The neighbour engine normally holds the input and its float32 copy in memory. Given a ``np.memmap``
(``np.load(path, mmap_mode="r")``), it instead reads the rows it needs, a block at a time, as copies out
of a mapping opened for that read and closed after it: pages of a mapping stay in the process's resident
memory for as long as it is open, so one mapping held for the whole search would, by the time every row
had been read, count the whole file as resident. With short-lived mappings the memory is the blocks in
use plus the neighbour lists, whatever the file's size (the operating system's page cache keeps recently
read blocks, outside the process). numpy has no reader of row ranges of a ``.npy`` that does this;
``np.memmap`` with an offset is the reading, and this class only decides what stays mapped.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..errors import EstimationError

__all__ = ["RowSource", "is_out_of_core"]

_CHUNK_BYTES = 8 << 20  # the rows of one sequential pass (checks, hashes, the mean) read at once


def is_out_of_core(X: Any) -> bool:
    """Whether ``X`` is read a block at a time: a memory-mapped array, or already a :class:`RowSource`."""
    return isinstance(X, RowSource) or isinstance(X, np.memmap) and X.ndim >= 2 and X.filename is not None


class RowSource:
    """The rows ``rows`` (default all) of a memory-mapped array, flattened to (n, D), read on demand.

    Values come back as float32 (float32 input) or float64 (any other real type), the dtypes the
    in-memory engine uses, so that results do not depend on where the rows were read from.
    """

    def __init__(self, X: Any, rows: np.ndarray | None = None):
        if isinstance(X, RowSource):
            self.filename, self.offset, self.raw_dtype, self.raw_shape = X.filename, X.offset, X.raw_dtype, X.raw_shape
            rows = None if rows is None else np.asarray(rows, dtype=np.int64)
            self.rows = X.rows if rows is None else rows if X.rows is None else X.rows[rows]
        else:
            if X.dtype.kind not in "biuf" or not X.flags.c_contiguous:
                raise EstimationError(f"{X.filename} holds {X.dtype} values in a layout that cannot be read a block "
                                      "at a time; save a C-ordered numeric array (np.save of np.ascontiguousarray)")
            self.filename, self.offset = X.filename, int(X.offset)
            self.raw_dtype, self.raw_shape = X.dtype, (int(X.shape[0]), int(np.prod(X.shape[1:])))
            self.rows = None if rows is None else np.asarray(rows, dtype=np.int64)
        self.dtype = np.dtype(np.float32) if self.raw_dtype == np.float32 else np.dtype(np.float64)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.raw_shape[0] if self.rows is None else int(self.rows.size), self.raw_shape[1])

    def __len__(self) -> int:
        return self.shape[0]

    def subset(self, rows: np.ndarray) -> "RowSource":
        """The source restricted to ``rows`` (positions in this source)."""
        return RowSource(self, rows)

    def _map(self) -> np.memmap:
        return np.memmap(self.filename, dtype=self.raw_dtype, mode="r", offset=self.offset, shape=self.raw_shape)

    def take(self, idx: np.ndarray) -> np.ndarray:
        """A copy of rows ``idx`` (ascending positions in this source), in the engine's dtype."""
        idx = np.asarray(idx, dtype=np.int64)
        raw = idx if self.rows is None else self.rows[idx]
        if raw.size and raw[-1] - raw[0] + 1 == raw.size:  # a run of rows: one slice of a mapping
            mm = self._map()
            out = np.array(mm[raw[0]:raw[-1] + 1], dtype=self.dtype)
            del mm  # the last reference: the mapping is closed and its pages leave this process's memory
            return out
        return self._read_runs(raw).astype(self.dtype, copy=False)

    def _read_runs(self, raw: np.ndarray) -> np.ndarray:
        """Scattered rows by one positioned read per run of consecutive rows. Not through a mapping: a
        page fault on a mapped file maps up to 64 KiB around the page it needs (the kernel's fault-around,
        which madvise(MADV_RANDOM) does not turn off), so a few thousand scattered rows would map most of
        the file into this process."""
        D = self.raw_shape[1]
        out = np.empty((raw.size, D), dtype=self.raw_dtype)
        row_bytes = D * self.raw_dtype.itemsize
        breaks = np.flatnonzero(np.diff(raw) != 1) + 1
        starts = np.r_[0, breaks]
        ends = np.r_[breaks, raw.size]
        view = memoryview(out.reshape(-1).view(np.uint8))
        fd = os.open(self.filename, os.O_RDONLY)
        try:
            for a, b in zip(starts.tolist(), ends.tolist()):
                want = (b - a) * row_bytes
                got = os.preadv(fd, [view[a * row_bytes:b * row_bytes]], self.offset + int(raw[a]) * row_bytes)
                if got != want:
                    raise EstimationError(f"{self.filename} ended early (read {got} of {want} bytes at row {raw[a]}); "
                                          "the file changed or is truncated: save it again")
        finally:
            os.close(fd)
        return out

    def block(self, s: int, e: int) -> np.ndarray:
        """A copy of rows s..e-1."""
        return self.take(np.arange(s, e))

    def chunks(self) -> Any:
        """(start, rows) for consecutive chunks of about 8 MiB covering every row."""
        n, D = self.shape
        step = max(1, _CHUNK_BYTES // max(1, D * self.dtype.itemsize))
        for s in range(0, n, step):
            yield s, self.block(s, min(n, s + step))
