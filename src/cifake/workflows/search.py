"""Run the two-stage search, in-process or through Ray Tune (a local instance or an existing cluster).

Each finished trial has its run record (trials/<name>/run.json); a rerun of the same command skips those, so a
killed search loses at most the trials that were running (and those resume from their last epoch checkpoint).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from cifake.cluster import ray_session
from cifake.data import CifakeData
from cifake.data.dataset import available_cores
from cifake.errors import SearchInterrupted
from cifake.files import write_json
from cifake.models import Topology
from cifake.progress import progress_bar
from cifake.search.cost import choose_extractor, estimated_cost, trains_on_matrix_units, trial_folder
from cifake.search.grid import Budget, SearchSpace
from cifake.workflows.search_trial import TrialPlan, run_trial


@dataclass(frozen=True)
class Execution:
    """How trials are run: through Ray Tune (a local instance, or the cluster at `address`) or in this process."""

    use_ray: bool = True
    address: str | None = None
    concurrency: int | None = None  # trials at once at most; None: as many as Ray's resources allow
    progress: bool = True
    gpus_per_trial: float | None = None  # None: 0.25 where the cluster has GPUs, else 0
    resources: dict = field(default_factory=dict)  # filled in: Tune's resources of each trial, by name


def run_search(
    data: CifakeData,
    out: str | os.PathLike,
    space: SearchSpace = SearchSpace(),
    budget: Budget = Budget(),
    *,
    use_ray: bool = True,
    ray_address: str | None = None,
    threads_per_trial: int = 1,
    concurrency: int | None = None,
    progress: bool = True,
    stages: int = 2,
    device: str = "auto",
    gpus_per_trial: float | None = None,
) -> dict:
    """Stage 1 (feature extractors), then stage 2 (dense heads on the extractor of lowest validation loss).

    `stages=1` stops after stage 1; running again with 2 later continues from the finished trials. Trials read
    the data from its source through the same cache, so Ray workers on this machine do not decode it again.

    Devices: without Ray, trials run one after another on `device`. Under Ray each trial asks for
    `threads_per_trial` CPUs and `gpus_per_trial` GPUs (fractions share a GPU: 0.25 runs four trials on one), and
    Ray places trials on every GPU of the machine or cluster; a trial uses the GPU it was given (device auto).
    """
    folder = Path(out).resolve()
    data.check_fits(budget.train.input, "the search's trials")
    _check_gpus(gpus_per_trial, use_ray)
    settings = {"space": space.to_dict(), "budget": budget.to_dict()}
    _check_settings(folder, settings, {"device": device, "gpus_per_trial": gpus_per_trial})
    plan = TrialPlan(str(Path(data.source).resolve()), folder, budget, threads_per_trial,
                     str(data.cache_dir.parent) if data.cache_dir else None, device)
    execution = Execution(use_ray, ray_address, concurrency, progress, gpus_per_trial)
    stage1 = _run_stage("stage 1: feature extractors", space.stage1(plan.budget.train.image_size), plan, execution)
    extractor = choose_extractor(stage1)
    heads = space.stage2(Topology.from_dict(extractor["topology"])) if stages > 1 else []
    stage2 = _run_stage("stage 2: dense heads", heads, plan, execution)
    best = min(stage1 + stage2, key=lambda r: r["validation"]["loss"])
    summary = {**settings, "device": device, "trial_resources": execution.resources,
               "stage1": stage1, "stage2": stage2, "best_extractor": extractor["name"],
               "best": best["name"], "selection": "lowest validation loss (the test split is never used to choose)",
               "trial_seconds": round(sum(r["seconds"] for r in stage1 + stage2), 1)}
    write_json(folder / "search.json", summary, indent=1)
    return summary


def _check_gpus(gpus_per_trial: float | None, use_ray: bool) -> None:
    if gpus_per_trial is None:
        return
    if gpus_per_trial < 0 or (gpus_per_trial > 1 and gpus_per_trial != int(gpus_per_trial)):
        raise ValueError(f"GPUs per trial must be a fraction in [0, 1] or a whole number, not {gpus_per_trial}")
    if gpus_per_trial and not use_ray:
        raise ValueError("GPUs per trial are shared out by Ray; without Ray, trials run one at a time on --device")


def _check_settings(folder: Path, settings: dict, where: dict) -> None:
    """Refuse to continue a search with other settings; `where` (device, GPUs) is recorded but may change."""
    path = folder / "search_settings.json"
    if path.exists():
        recorded = json.loads(path.read_text())
        # read through the dataclasses, so a folder written before a budget field existed gets its default
        saved = json.loads(json.dumps({"space": SearchSpace(**recorded["space"]).to_dict(),
                                       "budget": Budget.from_dict(recorded["budget"]).to_dict()}))
        if saved != json.loads(json.dumps(settings)):
            raise ValueError(f"{folder} holds a search with other settings ({saved}); choose another --out")
        return
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(settings | where, indent=1))


def _run_stage(title: str, topologies: list[Topology], plan: TrialPlan, execution: Execution) -> list[dict]:
    # Longest first: the last trials to start are then short ones, and no core idles while one long trial ends alone.
    matrix_units = trains_on_matrix_units(plan.device)
    pending = sorted((t for t in topologies if not trial_folder(plan.out, t).is_finished()),
                     key=lambda topology: estimated_cost(topology, matrix_units, plan.budget.train.image_size),
                     reverse=True)
    with progress_bar(execution.progress and bool(pending)) as bar:
        task = bar.add_task(title, total=len(topologies), completed=len(topologies) - len(pending))

        def finished(topology: Topology) -> None:
            bar.advance(task)
            if execution.progress and trial_folder(plan.out, topology).is_finished():
                bar.console.print(trial_summary(trial_folder(plan.out, topology).read_record()))

        if pending and execution.use_ray:
            _run_with_ray(title, pending, plan, execution, finished)
        else:
            for topology in pending:
                run_trial(topology, plan)
                finished(topology)
    unfinished = [t.name for t in topologies if not trial_folder(plan.out, t).is_finished()]
    if unfinished:  # Ray Tune returns normally when it is stopped by a signal
        raise SearchInterrupted(f"{title}: {len(unfinished)} trial(s) did not finish ({', '.join(unfinished)}); "
                                "run the same command again to resume them from their last epoch checkpoint")
    return [trial_folder(plan.out, t).read_record() for t in topologies]


def trial_summary(result: dict) -> str:
    """One line per finished trial, for the log of a search that runs for hours (short enough for 80 columns
    but for the longest dense heads' names)."""
    line = (f"{result['name']}: {result['epochs_run']} epochs (best {result['best_epoch']}), "
            f"val loss {result['validation']['loss']:.4f}")
    if "test" in result:
        line += f", test acc {result['test']['accuracy']:.4f}"
    return line + f", {result['seconds'] / 60:.1f} min"


def _run_with_ray(title: str, pending: list[Topology], plan: TrialPlan, execution: Execution, finished) -> None:
    import ray  # the distributed extra: cifake runs without it
    from ray import tune

    class AnnounceFinished(tune.Callback):  # runs in this (driver) process as each trial ends
        def __init__(self, announce, resources: dict) -> None:
            self.announce, self.resources = announce, resources

        def on_trial_start(self, iteration, trials, trial, **info) -> None:
            name = Topology.from_dict(trial.config["topology"]).name
            self.resources[name] = dict(trial.placement_group_factory.required_resources)

        def on_trial_complete(self, iteration, trials, trial, **info) -> None:
            if self.announce:
                self.announce(Topology.from_dict(trial.config["topology"]))

        def __getstate__(self) -> dict:  # Tune pickles its run config for restores; the progress bar stays here
            return {"announce": None, "resources": {}}

    # Tune's newer console output prints an experiment header on stdout even at verbose=0, which would corrupt
    # `--json`; its classic output is silent there, and cifake shows its own progress
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    with ray_session(execution.address, num_cpus=available_cores()):
        gpus = _gpus_per_trial(execution.gpus_per_trial, ray.cluster_resources().get("GPU", 0))

        def trainable(config: dict) -> None:
            result = run_trial(Topology.from_dict(config["topology"]), plan)
            tune.report({"val_loss": result["validation"]["loss"], "val_accuracy": result["validation"]["accuracy"]})

        tuner = tune.Tuner(
            tune.with_resources(trainable, {"cpu": plan.threads, "gpu": gpus}),
            param_space={"topology": tune.grid_search([t.to_dict() for t in pending])},
            tune_config=tune.TuneConfig(max_concurrent_trials=execution.concurrency),
            run_config=tune.RunConfig(name=title.split(":")[0].replace(" ", "-"), storage_path=str(plan.out / "ray"),
                                      verbose=0, callbacks=[AnnounceFinished(finished, execution.resources)]),
        )
        errors = [str(r.error) for r in tuner.fit() if r.error]
        if errors:
            raise RuntimeError(f"{len(errors)} trial(s) failed under Ray: {errors[0]}")


def _gpus_per_trial(asked: float | None, cluster_gpus: float) -> float:
    """GPUs each trial asks Ray for. By default a quarter of one where there are GPUs: the study's CNNs are so small
    that one trial leaves a GPU mostly waiting on kernel launches, and four at once fit in a few GB of its memory."""
    if asked is None:
        return 0.25 if cluster_gpus else 0
    if asked > cluster_gpus:
        raise ValueError(f"each trial asks for {asked:g} GPU(s) but the Ray cluster has {cluster_gpus:g}: no trial "
                         "could ever start. Use --gpus-per-trial 0 (CPU trials), or a cluster with GPU nodes")
    return asked
