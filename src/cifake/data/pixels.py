"""A split's decoded images as a model sees them, read from the cache on demand in bounded memory.

`Pixels` behaves like a read-only (N, S, S, 3) uint8 array (len, slicing, index arrays, np.asarray), where S is
the model's input size: under `crop` each stored window gives its central crop. Rows are read with pread from
the cache's .npy file rather than through a memory map, because every page a map has touched counts towards
the process's resident memory until the kernel reclaims it, and a 256 px dataset is gigabytes: read this way, a
pass over any dataset holds a batch at a time. `resident()` holds the rows in RAM instead, for data that fits.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from cifake.data.preprocess import centre_offsets, crop_windows

BLOCK = 256  # rows per read when iterating


class NpyRows:
    """Rows of a C-ordered .npy file read with pread (the first `count` rows; the file may hold spare rows)."""

    def __init__(self, path: str | os.PathLike, count: int | None = None):
        self.path = str(path)
        with open(self.path, "rb") as file:
            version = np.lib.format.read_magic(file)
            header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = header(file)
            self.offset = file.tell()
        if fortran:
            raise ValueError(f"{self.path}: a Fortran-ordered array cannot be read by rows")
        self.row_shape, self.dtype = tuple(shape[1:]), np.dtype(dtype)
        self.count = shape[0] if count is None else count
        self.row_bytes = int(np.prod(self.row_shape)) * self.dtype.itemsize
        self._fd, self._pid = -1, -1

    def __len__(self) -> int:
        return self.count

    def __getstate__(self) -> dict:  # a file descriptor does not travel to another process
        return {**self.__dict__, "_fd": -1, "_pid": -1}

    def read(self, rows: np.ndarray) -> np.ndarray:
        """The given rows (any order, repeats allowed), one pread per run of consecutive rows."""
        rows = np.asarray(rows, np.int64)
        out = np.empty((len(rows), *self.row_shape), self.dtype)
        if not len(rows):
            return out
        order = np.argsort(rows, kind="stable")
        ordered = rows[order]
        breaks = np.flatnonzero(np.diff(ordered) != 1) + 1
        flat = out.reshape(len(rows), -1).view(np.uint8)
        fd = self._descriptor()
        for run in np.split(np.arange(len(rows)), breaks):
            first, n = int(ordered[run[0]]), len(run)
            if first < 0 or first + n > self.count:
                raise IndexError(f"row {first + n - 1 if first >= 0 else first} is outside {self.path}'s "
                                 f"{self.count} rows")
            data = os.pread(fd, n * self.row_bytes, self.offset + first * self.row_bytes)
            if len(data) != n * self.row_bytes:
                raise OSError(f"{self.path}: short read (truncated cache?); rebuild it with --refresh")
            flat[order[run]] = np.frombuffer(data, np.uint8).reshape(n, -1)
        return out

    def _descriptor(self) -> int:
        if self._pid != os.getpid():
            self._fd, self._pid = os.open(self.path, os.O_RDONLY), os.getpid()
        return self._fd

    def __del__(self) -> None:
        if self._fd >= 0 and self._pid == os.getpid():
            os.close(self._fd)


class NpyWriter:
    """Writes rows into a new .npy file with pwrite: no memory map, so writing a large cache does not grow the
    process's resident memory either. The header declares `rows` rows; fewer may be written (the reader is told
    how many)."""

    def __init__(self, path: str | os.PathLike, rows: int, row_shape: tuple[int, ...], dtype=np.uint8):
        self.path, self.dtype = str(path), np.dtype(dtype)
        header = {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False,
                  "shape": (rows, *row_shape)}
        with open(self.path, "wb") as file:
            np.lib.format.write_array_header_1_0(file, header)
            self.offset = file.tell()
            file.truncate(self.offset + rows * int(np.prod(row_shape)) * self.dtype.itemsize)
        self.row_bytes = int(np.prod(row_shape)) * self.dtype.itemsize
        self.fd = os.open(self.path, os.O_WRONLY)

    def write(self, first_row: int, rows: np.ndarray) -> None:
        data = np.ascontiguousarray(rows, self.dtype)
        os.pwrite(self.fd, data.data, self.offset + first_row * self.row_bytes)

    def close(self) -> None:
        os.fsync(self.fd)
        os.close(self.fd)


class Pixels:
    """A split's images at the model's size: stored rows (in RAM or on disk) seen through a row index and, for a
    crop model, through each window's central crop."""

    def __init__(self, store: np.ndarray | NpyRows, size: int, extents: np.ndarray | None = None,
                 index: np.ndarray | None = None):
        self.store, self.size = store, size
        self.extents = extents  # per stored row, crop models only
        self.index = np.arange(len(store), dtype=np.int64) if index is None else np.asarray(index, np.int64)

    @classmethod
    def of(cls, path: Path, count: int, size: int, extents: np.ndarray | None = None) -> Pixels:
        return cls(NpyRows(path, count), size, extents)

    @property
    def crops(self) -> bool:
        return self.extents is not None

    @property
    def on_disk(self) -> bool:
        return isinstance(self.store, NpyRows)

    def __len__(self) -> int:
        return len(self.index)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return len(self), self.size, self.size, 3

    dtype = np.dtype(np.uint8)
    ndim = 4

    @property
    def stored_bytes(self) -> int:
        """Bytes of the stored rows (windows, for a crop model) this view covers."""
        side = self.store.row_shape[0] if self.on_disk else self.store.shape[1]
        return len(self) * side * side * 3

    def __getitem__(self, key) -> np.ndarray:
        if isinstance(key, (int, np.integer)):
            return self._rows(self.index[[key]])[0]
        if isinstance(key, tuple):
            return self[key[0]][(slice(None), *key[1:])]
        return self._rows(self.index[key])

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = self[:]
        return out if dtype is None else out.astype(dtype)

    def __iter__(self):
        for start in range(0, len(self), BLOCK):
            yield from self[start:start + BLOCK]

    def take(self, index: np.ndarray) -> Pixels:
        return Pixels(self.store, self.size, self.extents, self.index[index])

    def windows(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(stored windows, their extents) of the given positions, for a crop model's random training crops."""
        rows = self.index[positions]
        return self._stored(rows), self.extents[rows]

    def resident(self) -> Pixels:
        """The same view with its rows held in RAM (read once, in order)."""
        extents = None if self.extents is None else self.extents[self.index]
        return Pixels(self._stored(self.index), self.size, extents)

    def _stored(self, rows: np.ndarray) -> np.ndarray:
        return self.store.read(rows) if self.on_disk else self.store[rows]

    def _rows(self, rows: np.ndarray) -> np.ndarray:
        stored = self._stored(rows)
        if self.extents is None:
            return stored
        return crop_windows(stored, centre_offsets(self.extents[rows], self.size), self.size)
