"""`cifake search | search-status | reproduce`: the study's two-stage search and its whole experiment."""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path
from typing import Annotated, Optional

import typer

from cifake.cli.common import (AsJson, DataOption, DeviceOption, GpusPerTrial, Preprocessing, Quiet, Ray, RayAddress,
                               app, choice,
                               console, duration, load, print_json, print_table, use_device, value)
from cifake.cli.options import settings_options
from cifake.search.grid import PROFILES, Budget
from cifake.training.config import TrainConfig, read_recipe

Profile = choice("Profile", PROFILES)


def _ints(text: str | None) -> tuple[int, ...] | None:
    return None if text is None else tuple(int(part) for part in text.split(","))


@app.command()
@settings_options(TrainConfig, "training", "Each trial's training (default: the profile's)", only_given=True,
                  skip=("device", "threads"), show_defaults=False)
def search(
    training: dict,
    data: DataOption,
    out: Annotated[Path, typer.Option(help="Search folder: trials/<name>/ (model, run.json), search.json.")],
    profile: Annotated[Profile, typer.Option(help="quick (a reduced budget) or paper (the full protocol).")] = "paper",
    filters: Annotated[Optional[str], typer.Option(help="Stage-1 filters, e.g. 16,32,64,128.")] = None,
    conv_layers: Annotated[Optional[str], typer.Option(help="Stage-1 conv layers, e.g. 1,2,3.")] = None,
    dense_units: Annotated[Optional[str], typer.Option(help="Stage-2 units, e.g. 32,64,...,4096.")] = None,
    dense_layers: Annotated[Optional[str], typer.Option(help="Stage-2 dense layers, e.g. 1,2,3.")] = None,
    limit: Annotated[Optional[int], typer.Option(
        help="Images per label (data fraction); default: the profile's.")] = None,
    ray: Ray = True,
    ray_address: RayAddress = None,
    device: DeviceOption = "auto",
    gpus_per_trial: GpusPerTrial = None,
    threads_per_trial: Annotated[int, typer.Option(
        help="CPUs (torch threads) per trial; on CPUs, trials run cores/threads at once.")] = 1,
    stages: Annotated[int, typer.Option(help="1: feature extractors only; 2: then the dense heads.")] = 2,
    as_json: AsJson = False,
    quiet: Quiet = False,
) -> None:
    """The study's search: 12 feature extractors, then dense heads on the best; resumable, Ray-distributed."""
    from cifake.search.tables import stage1_rows, within
    from cifake.workflows.search import run_search

    chosen = PROFILES[value(profile)]
    grid = (("filters", _ints(filters)), ("conv_layers", _ints(conv_layers)), ("dense_units", _ints(dense_units)),
            ("dense_layers", _ints(dense_layers)))
    space = replace(chosen.space, **{k: v for k, v in grid if v})
    split = chosen.budget.split if limit is None else replace(chosen.budget.split, limit_per_label=limit)
    budget = Budget(TrainConfig.from_dict(chosen.budget.train.to_dict() | training), split)
    if not (ray and ray_address):  # a cluster's trials find the device they were given, on their own nodes
        use_device(device)
    summary = run_search(load(data, None, quiet, preprocess=budget.train.input), out, space, budget, use_ray=ray,
                         ray_address=ray_address,
                         threads_per_trial=threads_per_trial, progress=not quiet, stages=stages, device=device,
                         gpus_per_trial=gpus_per_trial)
    if as_json:
        return print_json(summary)
    header, rows = stage1_rows(summary["stage1"], "accuracy")
    print_table([h.replace(" (paper / ours / diff)", "\n(paper / ours / diff)") for h in header], rows,
                "Stage-1 test accuracy (%)")
    close, compared = within(summary["stage1"])
    console.print(f"Best extractor {summary['best_extractor']}; best searched {summary['best']} (validation loss). "
                  f"Stage-1 test accuracy within 1 point of the paper in {close} of {compared} cells.")


# two-line figure headers leave the trial name room for the longest topology (f128-c1-d4096-4096-4096) at 80 columns
STATUS_HEADER = ("trial", "stage", "state", "epochs", "val\nloss", "time", "test\nacc")


@app.command("search-status")
def search_status(
    folder: Annotated[Path, typer.Argument(help="A search folder (cifake search --out) or a reproduce report folder.")],
    concurrency: Annotated[Optional[int], typer.Option(help="Trials run at once, for the wall-time estimate "
                                                               "(default: this machine's cores).")] = None,
    as_json: AsJson = False,
) -> None:
    """Where a search stands (safe while it runs): finished, started and waiting trials, and time left."""
    from cifake.data.dataset import available_cores
    from cifake.search.status import search_status as read_status

    status = read_status(folder)
    if as_json:
        return print_json({"folder": str(status.folder), "trials": [asdict(t) for t in status.trials],
                           "total": status.total, "heads_waiting_for_stage1": status.heads_waiting_for_stage1,
                           "seconds_left": round(status.seconds_left, 1),
                           "wall_seconds": round(status.wall_seconds, 1)})
    print_table(STATUS_HEADER,
                [[t.name, str(t.stage), t.state, f"{t.epochs}/{status.budget.train.epochs}", t.best_val_loss,
                  duration(t.seconds) if t.seconds else "-", t.test_accuracy] for t in status.trials])
    at_once = concurrency or available_cores()
    waiting = f"; {status.heads_waiting_for_stage1} dense heads wait for stage 1 (not in the estimate)" \
        if status.heads_waiting_for_stage1 else ""
    console.print(f"{status.count('finished')} of {status.total} trials finished, {status.count('started')} started"
                  f"{waiting}. Time left: about {duration(status.seconds_left)} of trial time, "
                  f"{duration(status.seconds_left / at_once)} with {at_once} at once (a rough estimate).")
    if status.wall_seconds:
        console.print(f"Wall time so far: {duration(status.wall_seconds)} with at least one epoch running, over "
                      "every run of the search.")


@app.command()
def reproduce(
    data: DataOption,
    out: Annotated[Path, typer.Option(help="Report folder.")] = Path("reports/reproduce"),
    profile: Annotated[Profile, typer.Option(help="quick (a reduced budget) or paper (the full protocol).")] = "quick",
    ray: Ray = True,
    ray_address: RayAddress = None,
    device: DeviceOption = "auto",
    gpus_per_trial: GpusPerTrial = None,
    with_vit: Annotated[bool, typer.Option(
        help="Also train a vision transformer (--vit-recipe) and put its maps, by every method, beside the headline "
             "model's.")] = False,
    vit_recipe: Annotated[Path, typer.Option(help="The transformer's recipe.")] = Path("recipes/vit.json"),
    as_json: AsJson = False,
    quiet: Quiet = False,
) -> None:
    """The whole study: audit, search, best model on test (with and without leaks), Grad-CAM, one report."""
    from cifake.workflows.reproduce import reproduce as run_reproduce

    use_device(device)  # evaluation and Grad-CAM run here; under Ray each trial finds the device it was given
    if with_vit:
        read_recipe(vit_recipe)  # a missing or bad recipe is named before hours of search
    result = run_reproduce(load(data, None, quiet), out, value(profile), use_ray=ray, ray_address=ray_address,
                           progress=not quiet, device=device, gpus_per_trial=gpus_per_trial,
                           vit_recipe=vit_recipe if with_vit else None)
    if as_json:
        return print_json(result)
    (one, compared), (two, _) = result["within_1_point"], result["within_2_points"]
    console.print(f"{result['model']['name']}: test accuracy {result['test']['accuracy']:.4f} "
                  f"({result['test_without_leaked']['accuracy']:.4f} without leaked duplicates; the study: 0.9298). "
                  f"Stage-1 test accuracy within 1 point of the paper in {one} of {compared} cells, within 2 in {two}; "
                  f"{result['seconds']:,.0f} s.")
    console.print(f"Report: {out / 'report.md'} and {out / 'report.html'}")


StudyProfile = choice("StudyProfile", ("quick", "full"))


@app.command()
def study(
    data: DataOption,
    out: Annotated[Path, typer.Option(help="Report folder (resumable: run again to continue).")],
    image_size: Annotated[int, typer.Option(help="Input size N in pixels (16-1024).")] = 32,
    preprocess: Annotated[Preprocessing, typer.Option(help="resize (the whole image, as the study) or crop (native "
                                                           "pixels).")] = "resize",
    profile: Annotated[StudyProfile, typer.Option(help="quick or full (a wider search, longer training).")
                       ] = "quick",
    ray: Annotated[bool, typer.Option(help="Run the search's trials on Ray (several at once).")] = False,
    ray_address: RayAddress = None,
    device: DeviceOption = "auto",
    as_json: AsJson = False,
    quiet: Quiet = False,
) -> None:
    """The study's method on any dataset at its own resolution: audit, search, the chosen model per source,
    leave-one-source-out, Grad-CAM, robustness, one report."""
    from cifake.data import Preprocess
    from cifake.workflows.study import run_study

    chosen = Preprocess(image_size, value(preprocess))
    use_device(device)
    result = run_study(load(data, None, quiet, preprocess=chosen), out, value(profile), use_ray=ray,
                       ray_address=ray_address, progress=not quiet, device=device)
    if as_json:
        return print_json(result)
    test = result["test"]
    console.print(f"{result['model']['name']} at {image_size} px ({value(preprocess)}): test accuracy "
                  f"{test['accuracy']:.4f}, ROC-AUC {test['roc_auc']:.4f}; {result['seconds']:,.0f} s.")
    if result["leave_one_source_out"]:
        print_table(["held-out source", "trained with", "held out"],
                    [[r["source"], r["accuracy_trained_with"], r["accuracy_held_out"]]
                     for r in result["leave_one_source_out"]], "Leave one source out (accuracy)")
    console.print(f"Report: {out / 'study.md'} and {out / 'study.html'}")
