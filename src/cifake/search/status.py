"""Where a search stands, read from its folder alone: finished, started and waiting trials, and time left.

Safe to run while the search runs: it reads the finished trials' JSON and the header of each epoch checkpoint,
never the tensors, and writes nothing.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cifake.models import Topology
from cifake.search.cost import choose_extractor, estimated_cost, trial_folder
from cifake.search.grid import Budget, SearchSpace
from cifake.training.checkpoint import checkpoint_precision, checkpoint_progress


@dataclass
class TrialStatus:
    name: str
    stage: int
    state: str  # "finished", "started" (has an epoch checkpoint) or "waiting"
    epochs: int  # epochs trained so far
    best_val_loss: float | None
    seconds: float  # wall time of the epochs so far (finished: the trial's recorded time)
    cost: float  # estimated_cost of the topology in the trials' precision, the scale of the time-left estimate
    test_accuracy: float | None = None
    epoch_seconds: tuple[float, ...] = ()  # wall time of each epoch in the trial's checkpoint
    epoch_spans: tuple[tuple[float, float], ...] = ()  # (start, end) clock time of each epoch


@dataclass
class SearchStatus:
    folder: Path
    budget: Budget
    trials: list[TrialStatus]
    heads_waiting_for_stage1: int  # stage-2 heads not named yet: stage 1 picks their extractor
    seconds_left: float  # estimated trial time still to run, summed over trials (divide by trials run at once)
    wall_seconds: float = 0.0  # clock time with at least one epoch running, over every run of the search

    def count(self, state: str) -> int:
        return sum(t.state == state for t in self.trials)

    @property
    def total(self) -> int:
        return len(self.trials) + self.heads_waiting_for_stage1


def search_status(folder: str | os.PathLike) -> SearchStatus:
    """The state of the search in `folder` (a `cifake search --out` folder, or a reproduce report holding one)."""
    folder = _search_folder(Path(folder))
    settings = json.loads((folder / "search_settings.json").read_text())
    space = SearchSpace(**{key: tuple(value) for key, value in settings["space"].items()})
    budget = Budget.from_dict(settings["budget"])
    topologies = [(topology, 1) for topology in space.stage1(budget.train.image_size)]
    waiting_heads = len(space.dense_units) * len(space.dense_layers)
    if all(trial_folder(folder, topology).is_finished() for topology, _ in topologies):
        extractor = choose_extractor([trial_folder(folder, t).read_record() for t, _ in topologies])
        topologies += [(head, 2) for head in space.stage2(Topology.from_dict(extractor["topology"]))]
        waiting_heads = 0
    # The cost model follows the precision the trials' checkpoints record (fp32 counts multiply-adds; with no
    # record, bf16's).
    precisions = {checkpoint_precision(trial_folder(folder, topology).path) for topology, _ in topologies} - {None}
    trials = [_trial_status(folder, topology, stage, precisions != {"fp32"}, budget.train.image_size)
              for topology, stage in topologies]
    spans = [span for trial in trials for span in trial.epoch_spans]
    return SearchStatus(folder, budget, trials, waiting_heads, seconds_left(trials, budget), union_seconds(spans))


def union_seconds(spans: list[tuple[float, float]]) -> float:
    """Length of the union of (start, end) intervals: the wall time during which any of them ran.

    Trials run side by side and a killed search is run again later, so neither the sum of trial times nor
    last-end minus first-start is the time the search took; the union of its epochs' intervals is.
    """
    total, reached = 0.0, float("-inf")
    for start, end in sorted(spans):
        if end > reached:
            total += end - max(start, reached)
            reached = end
    return total


def _search_folder(folder: Path) -> Path:
    for candidate in (folder, folder / "search"):
        if (candidate / "search_settings.json").is_file():
            return candidate
    raise FileNotFoundError(f"{folder}: not a search folder (no search_settings.json in it or in {folder / 'search'})")


def _trial_status(folder: Path, topology: Topology, stage: int, matrix_units: bool, image_size: int) -> TrialStatus:
    cost = estimated_cost(topology, matrix_units, image_size)
    progress = checkpoint_progress(trial_folder(folder, topology).path)
    rows = progress.history if progress else []
    epochs = tuple(row["wall_seconds"] for row in rows)
    spans = tuple((row["ended_at"] - row["wall_seconds"], row["ended_at"]) for row in rows)
    trial = trial_folder(folder, topology)
    if trial.is_finished():
        result = trial.read_record()
        return TrialStatus(topology.name, stage, "finished", result["epochs_run"], result["validation"]["loss"],
                           result["seconds"], cost, result.get("test", {}).get("accuracy"), epochs, spans)
    if not epochs:
        return TrialStatus(topology.name, stage, "waiting", 0, None, 0.0, cost)
    return TrialStatus(topology.name, stage, "started", len(epochs), progress.best_val_loss, sum(epochs), cost,
                       epoch_seconds=epochs, epoch_spans=spans)


def seconds_left(trials: list[TrialStatus], budget: Budget) -> float:
    """Trial time still to run. Each unfinished trial runs the mean epochs of the finished ones, with the budget's
    maximum counted as one more (so one trial that stops early does not set the rest); a started trial runs
    them at its own mean time per epoch, a waiting one at its cost times the seconds per unit of cost of the
    measured trial nearest to it in cost. The nearest, not all of them: the cost model is rough (in fp32 a dense
    weight can cost more than it counts), so the rate drifts with the cost (docs/search.md replays finished
    searches both ways). Heads not yet named are not counted."""
    measured = [trial for trial in trials if trial.epoch_seconds]
    finished = [t.epochs for t in trials if t.state == "finished"]
    expected = (budget.train.epochs + sum(finished)) / (1 + len(finished))
    left = 0.0
    for trial in trials:
        if trial.state != "finished":
            epochs = min(budget.train.epochs - trial.epochs, max(expected - trial.epochs, 1.0))
            left += epochs * (float(np.mean(trial.epoch_seconds)) if trial.epoch_seconds
                              else _seconds_per_cost(measured, trial.cost) * trial.cost)
    return left


def _seconds_per_cost(measured: list[TrialStatus], cost: float) -> float:
    """Seconds per epoch and unit of cost of the measured trial nearest to `cost` (on a log scale); 0 if none."""
    if not measured:
        return 0.0
    nearest = min(measured, key=lambda t: abs(math.log(t.cost / cost)))
    return float(np.mean(nearest.epoch_seconds)) / nearest.cost
