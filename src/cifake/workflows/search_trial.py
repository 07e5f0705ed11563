"""One trial of the search: the run recipe (`cifake.workflows.experiment.train_run`) in the trial's own run folder.

A trial folder holds the model and its per-epoch checkpoint, so a trial killed half-way resumes from its last
epoch; its run.json is written only when the trial is finished, so its presence means "done".
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from cifake.data import load_dataset
from cifake.models import Topology
from cifake.search.cost import trial_folder
from cifake.search.grid import Budget
from cifake.workflows.experiment import train_run


@dataclass(frozen=True)
class TrialPlan:
    """What every trial of a search shares: where the data is, where results go, how hard and how wide to run."""

    source: str
    out: Path
    budget: Budget
    threads: int = 1  # torch threads per trial
    cache_root: str | None = None
    device: str = "auto"  # under Ray, a trial sees only the GPUs Ray gave it: auto finds those, or the CPU


def run_trial(topology: Topology, plan: TrialPlan) -> dict:
    """Train and score one topology; returns (and writes) its run record. Selection must use validation only."""
    folder = trial_folder(plan.out, topology)
    if folder.is_finished():
        return folder.read_record()
    data = load_dataset(plan.source, preprocess=plan.budget.train.input, cache_root=plan.cache_root, progress=False)
    # the trial's thread count is in its config: recorded, and a resumed trial is held to it
    config = replace(plan.budget.train, device=plan.device, threads=plan.threads)
    return train_run(data, folder.path, topology, config, plan.budget.split, resume=True,
                     progress=False, plots=False)
