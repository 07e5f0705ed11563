"""Which images a run trains, validates and is tested on: the one place a validation (and test) split is carved.

A run records its `Split` (and its seed, in its TrainConfig), so calibration and evaluation carve the same images
again from the record alone. A source without train/ and test/ folders gets a seeded test share, stratified by
label and source; sources left out of training (leave-one-generator-out) stay in the test images, so that their
metrics show how the model does on a generator it never saw.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from cifake.data import ALL_SPLIT, CifakeData, ImageSet, train_val_split


@dataclass(frozen=True)
class Split:
    val_fraction: float = 0.1  # share of the training images held out for validation (stratified by label)
    limit_per_label: int | None = None  # images per label of train (before validation is carved) and of test
    test_share: float = 0.2  # share held out as test when the source has no test split of its own
    exclude_sources: tuple[str, ...] = ()  # sources left out of training and validation (not of test)

    def __post_init__(self) -> None:
        object.__setattr__(self, "exclude_sources", tuple(sorted(self.exclude_sources)))
        if not 0 < self.val_fraction < 1:
            raise ValueError(f"val_fraction must be in (0, 1), not {self.val_fraction!r}")
        if not 0 < self.test_share < 1:
            raise ValueError(f"test_share must be in (0, 1), not {self.test_share!r}")
        if self.limit_per_label is not None and self.limit_per_label < 1:
            raise ValueError(f"limit_per_label must be >= 1 or None, not {self.limit_per_label!r}")

    def carve(self, data: CifakeData, seed: int) -> tuple[ImageSet, ImageSet]:
        """(train, validation) from the source's training images: seeded, stratified, the same on every call."""
        pool = self._training_pool(data, seed)
        missing = sorted(set(self.exclude_sources) - set(pool.source_names()))
        if missing:
            raise ValueError(f"{data.source}: no source named {', '.join(missing)} to exclude; its sources are "
                             f"{', '.join(pool.source_names())}")
        kept = pool.without_sources(self.exclude_sources)
        if len(set(kept.labels.tolist())) < 2:
            raise ValueError(f"{data.source}: without {', '.join(self.exclude_sources)} only one label is left "
                             "to train on")
        return train_val_split(kept.limit(self.limit_per_label, seed), self.val_fraction, seed)

    def test(self, data: CifakeData, seed: int) -> ImageSet | None:
        """The test images a run is scored on: the source's test split, or the test share of an unsplit source
        (None when the source has training images only)."""
        if "test" in data.splits:
            return data["test"].limit(self.limit_per_label, seed)
        if ALL_SPLIT in data.splits:
            return self._unsplit(data, seed)[1].limit(self.limit_per_label, seed)
        return None

    def _training_pool(self, data: CifakeData, seed: int) -> ImageSet:
        if "train" in data.splits or ALL_SPLIT not in data.splits:
            return data.training_split()
        return self._unsplit(data, seed)[0]

    def _unsplit(self, data: CifakeData, seed: int) -> tuple[ImageSet, ImageSet]:
        """(train, test) of a source with one folder of REAL/ and FAKE/: stratified by label and source."""
        images = data[ALL_SPLIT]
        strata = np.char.add(images.labels.astype(str), np.asarray(images.sources, str))
        rng = np.random.default_rng([seed, 7])  # its own stream: the validation split's draws stay as they were
        test = []
        for stratum in np.unique(strata):
            members = rng.permutation(np.flatnonzero(strata == stratum))
            test.append(members[:int(round(len(members) * self.test_share))])
        held = np.zeros(len(images), bool)
        held[np.concatenate(test)] = True
        return images.take(np.flatnonzero(~held)), images.take(np.flatnonzero(held))

    def to_dict(self) -> dict:
        return asdict(self) | {"exclude_sources": list(self.exclude_sources)}

    @classmethod
    def from_record(cls, record: dict) -> Split:
        split = record["split"]
        return cls(split["val_fraction"], split["limit_per_label"], split.get("test_share", 0.2),
                   tuple(split.get("exclude_sources", ())))
