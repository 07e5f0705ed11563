"""The study's search space: 12 feature extractors, then dense heads on the best one (36 topologies)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from cifake.training.config import TrainConfig

if TYPE_CHECKING:  # imported where used: the CLI reads PROFILES without loading torch
    from cifake.models import Topology
    from cifake.training.split import Split


@dataclass(frozen=True)
class SearchSpace:
    filters: tuple[int, ...] = (16, 32, 64, 128)
    conv_layers: tuple[int, ...] = (1, 2, 3)
    dense_units: tuple[int, ...] = (32, 64, 128, 256, 512, 1024, 2048, 4096)
    dense_layers: tuple[int, ...] = (1, 2, 3)

    def stage1(self) -> list[Topology]:
        """Feature extractors, flattened straight into the output."""
        from cifake.models import Topology

        return [Topology(f, c, ()) for f in self.filters for c in self.conv_layers]

    def stage2(self, extractor: Topology) -> list[Topology]:
        """Dense heads of `units` x `layers` on the chosen extractor."""
        from cifake.models import Topology

        return [Topology(extractor.filters, extractor.conv_layers, (units,) * layers)
                for units in self.dense_units for layers in self.dense_layers]

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Budget:
    """How hard each trial trains: the same settings for every topology, as in the study."""

    epochs: int = 5
    patience: int = 2
    limit_per_label: int | None = None  # images per label of train (before validation is carved) and of test
    batch_size: int = 64
    seed: int = 1
    val_fraction: float = 0.1

    def to_dict(self) -> dict:
        return asdict(self)

    def train_config(self) -> TrainConfig:
        """The settings every trial trains with (the others keep TrainConfig's defaults, the study's)."""
        return TrainConfig(epochs=self.epochs, patience=self.patience, batch_size=self.batch_size, seed=self.seed)

    def split(self) -> Split:
        from cifake.training.split import Split

        return Split(self.val_fraction, self.limit_per_label)


PROFILES = {
    # quick: 18 topologies, 8,000 images per label, 3 epochs (its run time: docs/search.md)
    "quick": (SearchSpace(dense_units=(32, 128, 512), dense_layers=(1, 2)), Budget(epochs=3, limit_per_label=8000)),
    # paper: the full protocol, all 36 topologies on the whole train split. 5 epochs with patience 2 left 11 of
    # the 12 extractors below the paper's accuracy: most were still improving at epoch 5, and validation loss is
    # noisy enough from epoch to epoch that patience 2 stopped some after one unlucky epoch.
    "paper": (SearchSpace(), Budget(epochs=10, patience=3)),
}
