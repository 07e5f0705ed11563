"""Which images a run trains, validates and is tested on: the one place a validation split is carved.

A run records its `Split` (and its seed, in its TrainConfig), so calibration carves the same validation images
again from the record alone.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from cifake.data import CifakeData, ImageSet, train_val_split


@dataclass(frozen=True)
class Split:
    val_fraction: float = 0.1  # share of the training images held out for validation (stratified by label)
    limit_per_label: int | None = None  # images per label of train (before validation is carved) and of test

    def __post_init__(self) -> None:
        if not 0 < self.val_fraction < 1:
            raise ValueError(f"val_fraction must be in (0, 1), not {self.val_fraction!r}")
        if self.limit_per_label is not None and self.limit_per_label < 1:
            raise ValueError(f"limit_per_label must be >= 1 or None, not {self.limit_per_label!r}")

    def carve(self, data: CifakeData, seed: int) -> tuple[ImageSet, ImageSet]:
        """(train, validation) from the source's training split: seeded, stratified, the same on every call."""
        return train_val_split(data.training_split().limit(self.limit_per_label, seed), self.val_fraction, seed)

    def test(self, data: CifakeData, seed: int) -> ImageSet | None:
        """The test images a run is scored on (None when the source has no test split)."""
        return data["test"].limit(self.limit_per_label, seed) if "test" in data.splits else None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_record(cls, record: dict) -> Split:
        return cls(record["split"]["val_fraction"], record["split"]["limit_per_label"])
