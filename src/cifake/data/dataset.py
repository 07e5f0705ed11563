"""A source's decoded images: the splits (`ImageSet`), the whole source (`CifakeData`), a validation split.

Built and opened by cifake.data.cache; images are read on demand (cifake.data.pixels), so a dataset larger
than RAM is used in bounded memory.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cifake.data.pixels import Pixels
from cifake.data.preprocess import Preprocess
from cifake.data.sources import ALL_SPLIT, CIFAR10_CLASSES, LABEL_NAMES

@dataclass(frozen=True)
class ImageSet:
    """The images of one split. Labels: REAL = 1 (positive class), FAKE = 0. Classes: CIFAR-10 index or -1."""

    images: Pixels | np.ndarray  # (N, S, S, 3) uint8, NHWC, S the model's size: read on demand, or in RAM
    labels: np.ndarray  # (N,) uint8
    classes: np.ndarray  # (N,) int8
    names: np.ndarray  # (N,) str: path of each image inside the source
    sha256: np.ndarray  # (N, 32) uint8: digest of each file's original bytes
    sources: np.ndarray  # (N,) str: the folder under REAL/ or FAKE/ (a generator), else the label's name

    def __len__(self) -> int:
        return len(self.labels)

    def _columns(self) -> tuple:
        return self.images, self.labels, self.classes, self.names, self.sha256, self.sources

    def take(self, index: np.ndarray) -> ImageSet:
        images = self.images.take(index) if isinstance(self.images, Pixels) else np.asarray(self.images)[index]
        return ImageSet(images, *(np.asarray(a)[index] for a in self._columns()[1:]))

    def limit(self, per_label: int | None, seed: int = 1) -> ImageSet:
        """At most `per_label` images of each label, drawn at random (seeded), in their original order."""
        return self if per_label is None else self.take(self.limit_indices(per_label, seed))

    def limit_indices(self, per_label: int, seed: int = 1) -> np.ndarray:
        """The sorted indices `limit` keeps."""
        rng = np.random.default_rng(seed)
        keep = [rng.permutation(np.flatnonzero(self.labels == label))[:per_label] for label in (0, 1)]
        return np.sort(np.concatenate(keep))

    def without_sources(self, excluded: tuple[str, ...] | list[str]) -> ImageSet:
        """The images of every source but the excluded ones (a leave-one-generator-out training set)."""
        return self.take(np.flatnonzero(~np.isin(self.sources, list(excluded)))) if excluded else self

    def in_memory(self) -> ImageSet:
        """A copy held in RAM, its images a plain (N, S, S, 3) array, for loops that read every image many times."""
        return ImageSet(np.asarray(self.images), *(np.array(a) for a in self._columns()[1:]))

    def resident(self, limit_bytes: int) -> ImageSet:
        """The stored pixels (a crop model's windows) held in RAM when they fit in `limit_bytes`; else as it is,
        read from the cache batch by batch."""
        images = self.images
        if isinstance(images, Pixels) and images.on_disk and images.stored_bytes <= limit_bytes:
            images = images.resident()
        return ImageSet(images, *self._columns()[1:])

    def counts(self) -> dict[str, dict[str, int]]:
        """Images per label and per CIFAR-10 class, e.g. {"REAL": {"total": 5, "airplane": 1, ...}}."""
        out: dict[str, dict[str, int]] = {}
        for label in (1, 0):
            classes = Counter(self.classes[self.labels == label].tolist())
            row = {"total": int(sum(classes.values()))}
            row |= {name: classes.get(k, 0) for k, name in enumerate(CIFAR10_CLASSES)}
            if classes.get(-1):
                row["unknown"] = classes[-1]
            out[LABEL_NAMES[label]] = row
        return out

    def source_counts(self) -> dict[str, dict[str, int]]:
        """Images per label and source, e.g. {"FAKE": {"pggan": 40, "stylegan": 40}, "REAL": {"REAL": 120}}."""
        out: dict[str, dict[str, int]] = {}
        for label in (1, 0):
            found = Counter(self.sources[self.labels == label].tolist())
            if found:
                out[LABEL_NAMES[label]] = dict(sorted(found.items()))
        return out

    def source_names(self) -> list[str]:
        """The sources present, sorted."""
        return sorted(set(self.sources.tolist()))


@dataclass(frozen=True)
class SkippedFile:
    name: str
    reason: str


@dataclass(frozen=True)
class CifakeData:
    """Every split of a source at one preprocessing, what was skipped and converted while decoding, and where
    the cache lives."""

    source: str
    splits: dict[str, ImageSet]
    skipped: list[SkippedFile] = field(default_factory=list)
    converted: int = 0  # resized or converted (resize); enlarged because smaller than the crop (crop)
    cache_dir: Path | None = None
    preprocess: Preprocess = Preprocess()

    def __getitem__(self, split: str) -> ImageSet:
        if split not in self.splits:
            raise KeyError(f"{self.source} has no split {split!r}; it has {', '.join(self.splits)}")
        return self.splits[split]

    def training_split(self) -> ImageSet:
        """The split to train on: ``train`` when the source has one, else the whole of a REAL/FAKE folder."""
        return self.splits.get("train") or self[ALL_SPLIT]

    def check_fits(self, model_input: Preprocess, model: str) -> None:
        """Refuse data decoded for another input than the model's (a size or preprocessing mismatch)."""
        if model_input != self.preprocess:
            raise ValueError(f"{model} takes {model_input.size} px images ({model_input.mode}), but the data was "
                             f"decoded at {self.preprocess.size} px ({self.preprocess.mode}); load it at the "
                             f"model's size")


def default_cache_root() -> Path:
    if os.environ.get("CIFAKE_CACHE"):
        return Path(os.environ["CIFAKE_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "cifake"


def available_cores() -> int:
    """Cores this process may run on (the affinity mask, where the platform has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def train_val_split(images: ImageSet, fraction: float = 0.1, seed: int = 1) -> tuple[ImageSet, ImageSet]:
    """Carve a validation split from training images: seeded and stratified by label."""
    from sklearn.model_selection import train_test_split  # 1.9 s to import: only where a split is carved

    if not 0 < fraction < 1:
        raise ValueError(f"validation fraction must lie between 0 and 1, got {fraction}")
    train_idx, val_idx = train_test_split(
        np.arange(len(images)), test_size=fraction, random_state=seed, stratify=images.labels
    )
    return images.take(np.sort(train_idx)), images.take(np.sort(val_idx))
