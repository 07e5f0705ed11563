"""The study's search space: 12 feature extractors, then dense heads on the best one (36 topologies)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING

from cifake.training.config import TrainConfig
from cifake.training.split import Split

if TYPE_CHECKING:  # imported where used: the CLI reads PROFILES without loading torch
    from cifake.models import Topology


@dataclass(frozen=True)
class SearchSpace:
    filters: tuple[int, ...] = (16, 32, 64, 128)
    conv_layers: tuple[int, ...] = (1, 2, 3)
    dense_units: tuple[int, ...] = (32, 64, 128, 256, 512, 1024, 2048, 4096)
    dense_layers: tuple[int, ...] = (1, 2, 3)

    def stage1(self, image_size: int = 32) -> list[Topology]:
        """Feature extractors, flattened straight into the output (those whose conv layers leave features of an
        `image_size` px image)."""
        from cifake.models import Topology
        from cifake.models.cnn import feature_size

        return [Topology(f, c, ()) for f in self.filters for c in self.conv_layers
                if feature_size(image_size, c) >= 1]

    def stage2(self, extractor: Topology) -> list[Topology]:
        """Dense heads of `units` x `layers` on the chosen extractor."""
        from cifake.models import Topology

        return [Topology(extractor.filters, extractor.conv_layers, (units,) * layers)
                for units in self.dense_units for layers in self.dense_layers]

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Budget:
    """How hard each trial trains: one training recipe for every topology, as in the study (each trial runs it on
    its own device and thread count), and the images it trains, validates and is tested on."""

    train: TrainConfig = TrainConfig()
    split: Split = Split()

    @classmethod
    def of(cls, **settings) -> Budget:
        """A budget from TrainConfig and Split fields by name: Budget.of(epochs=2, limit_per_label=200)."""
        split_fields = {f.name for f in fields(Split)}
        return cls(TrainConfig.from_dict({k: v for k, v in settings.items() if k not in split_fields}, "budget"),
                   Split(**{k: v for k, v in settings.items() if k in split_fields}))

    def to_dict(self) -> dict:
        return {"train": self.train.to_dict(), "split": self.split.to_dict()}

    @classmethod
    def from_dict(cls, record: dict) -> Budget:
        """A recorded budget; a record of the flat form searches kept before (TrainConfig and Split fields side by
        side, some of them) reads as the same budget, so those searches still resume."""
        if "train" not in record:
            return cls.of(**record)
        return cls(TrainConfig.from_dict(record["train"], "budget"), Split(**record["split"]))


@dataclass(frozen=True)
class Profile:
    """A search budget, and what a run of it reproduces."""

    space: SearchSpace
    budget: Budget
    # Also train the study's chosen topology (`paper`: f32-c2-d64) on the whole train split with the study's recipe
    # and report it as the headline: a reduced search cannot show the study's accuracy with its own best trial.
    study_model: bool = False
    scope: str = ""  # what this budget reproduces and what it does not; the report says it


PROFILES = {
    # quick: the 12 extractors on the whole train split for 2 epochs with a one-cycle learning rate (more accuracy from
    # few epochs than the study's constant rate), no dense heads, and beside them the study's model on the whole
    # train split: 10 minutes on 2 cores. The budget was chosen by measuring agreement against time (docs/search.md).
    "quick": Profile(
        SearchSpace(dense_units=()),
        Budget.of(epochs=2, patience=2, learning_rate=0.005, schedule="onecycle", warmup_epochs=0.2),
        study_model=True,
        scope="This budget reproduces the study's headline (its chosen model, trained on the whole train split, "
              "against the study's 92.98 %). Its 12 extractors train for 2 short epochs each, so their cells lie "
              "below the paper's Table 1; the stage-1 section counts those within 1 and 2 points. It does not "
              "search the dense heads or reproduce the study's choice of extractor: `--profile paper` runs the "
              "full protocol."),
    # paper: the full protocol, all 36 topologies on the whole train split. 5 epochs with patience 2 left 11 of
    # the 12 extractors below the paper's accuracy: most were still improving at epoch 5, and validation loss is
    # noisy enough from epoch to epoch that patience 2 stopped some after one unlucky epoch.
    "paper": Profile(SearchSpace(), Budget.of(epochs=10, patience=3),
                     scope="The full protocol: every trial on the whole train split, chosen on validation loss."),
}
