"""How an image becomes a model's input: its size and the way it is brought there, owned by the model.

- ``resize`` (the study's way): the whole image resized bilinearly to N x N.
- ``crop``: native pixels, never rescaled (the forensic detectors that generalise read fine detail that a resize
  erases). The decoder keeps a *window*: the central square of side min(short side, 2N) at native resolution,
  stored top-left in a 2N x 2N array beside its side (its *extent*). Training takes a seeded random N x N crop
  of the window every step; validation and test take its central crop; prediction scores five crops of it (the
  centre and the four corners) and averages their logits. An image whose short side is under N is the one
  exception: it is enlarged bilinearly until its short side is N, and flagged as upscaled wherever it shows up.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cifake.choices import PREPROCESSING as MODES
MIN_SIZE, MAX_SIZE = 16, 1024
CROP_WINDOW = 2  # a crop model's stored window is this many times its input size (random crops need room)
PREDICT_CROPS = 5  # the centre and the four corners of the window


@dataclass(frozen=True)
class Preprocess:
    """A model's input size N and how an image is brought there (`resize` or `crop`)."""

    size: int = 32
    mode: str = "resize"

    def __post_init__(self) -> None:
        if not isinstance(self.size, int) or not MIN_SIZE <= self.size <= MAX_SIZE:
            raise ValueError(f"image size must be a whole number of pixels from {MIN_SIZE} to {MAX_SIZE}, "
                             f"not {self.size!r}")
        if self.mode not in MODES:
            raise ValueError(f"preprocessing must be one of {', '.join(MODES)}, not {self.mode!r}")

    @property
    def crops(self) -> bool:
        return self.mode == "crop"

    @property
    def stored_size(self) -> int:
        """Side of the arrays a dataset cache keeps per image: N for resize, the 2N window for crop."""
        return self.size * CROP_WINDOW if self.crops else self.size

    @property
    def key(self) -> str:
        """Names a cache: s32 for today's 32 px resize (so its caches stay valid), s128-crop for a crop model."""
        return f"s{self.size}" + ("-crop" if self.crops else "")

    def to_dict(self) -> dict:
        return {"size": self.size, "preprocess": self.mode}

    @classmethod
    def of_model(cls, config: dict) -> Preprocess:
        """What a model config's "input" records (a config from before sizes were chosen: 32 px, resize)."""
        given = config.get("input") or {}
        return cls(int(given.get("size", 32)), given.get("preprocess", "resize"))


STUDY_INPUT = Preprocess()  # 32 px, resized: the study's input and every default


def centre_offsets(extents: np.ndarray, size: int) -> np.ndarray:
    """Top-left corner (same on both axes) of each window's central size x size crop."""
    return (np.asarray(extents, np.int64) - size) // 2


def random_offsets(extents: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """(N, 2) seeded random top-left corners (row, column) of a size x size crop inside each window."""
    room = np.asarray(extents, np.int64) - size + 1
    return (rng.random((len(room), 2)) * room[:, None]).astype(np.int64)


def corner_offsets(extent: int, size: int) -> list[tuple[int, int]]:
    """The prediction crops of one window: its centre, then its four corners."""
    far, mid = extent - size, (extent - size) // 2
    return [(mid, mid), (0, 0), (0, far), (far, 0), (far, far)]


def prediction_crops(windows: np.ndarray, extents, size: int) -> np.ndarray:
    """(PREDICT_CROPS, n, size, size, 3): each window's centre and corner crops, the views prediction averages."""
    corners = np.array([corner_offsets(int(extent), size) for extent in extents]).reshape(len(windows), -1, 2)
    return np.stack([crop_windows(windows, corners[:, k], size) for k in range(PREDICT_CROPS)])


def crop_windows(windows: np.ndarray, offsets: np.ndarray, size: int) -> np.ndarray:
    """(N, size, size, 3) crops of (N, W, W, 3) windows; `offsets` is (N,) for square corners or (N, 2)."""
    offsets = np.asarray(offsets, np.int64)
    rows, cols = (offsets, offsets) if offsets.ndim == 1 else (offsets[:, 0], offsets[:, 1])
    if len(windows) and (rows == rows[0]).all() and (cols == cols[0]).all():  # one slice: no per-image copy
        return np.ascontiguousarray(windows[:, rows[0]:rows[0] + size, cols[0]:cols[0] + size])
    out = np.empty((len(windows), size, size, windows.shape[-1]), np.uint8)
    for i, (row, col) in enumerate(zip(rows, cols)):
        out[i] = windows[i, row:row + size, col:col + size]
    return out
