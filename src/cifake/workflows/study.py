"""`cifake study`: the study's method on any dataset at its own resolution, in one command, as `reproduce` is for
CIFAKE.

Audit -> a search over the study's CNN family sized for the input and the residual family (chosen on validation
loss) -> the chosen topology trained with the profile's final recipe and scored on test, per source -> with two
or more FAKE sources, leave-one-source-out (trained without each, scored on it) -> for a crop model, central crop
against prediction's five crops -> Grad-CAM analysis -> robustness -> study.md + a self-contained study.html.

Resumable: trials and models keep epoch checkpoints and finished runs are reused, so a rerun continues.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path

from cifake.data import CifakeData
from cifake.data.audit import audit, write_audit
from cifake.files import write_json
from cifake.metrics.scores import compute_metrics
from cifake.models import load_model, resolve_topology, topology_from_dict
from cifake.models.inference import five_crop_logits
from cifake.runfolder import RunFolder
from cifake.search.grid import Budget, SearchSpace
from cifake.training.split import Split
from cifake.workflows.experiment import evaluate_run, train_run
from cifake.workflows.explain_report import explain_dataset
from cifake.workflows.robustness import evaluate_robustness
from cifake.workflows.search import run_search
from cifake.workflows.search_trial import TrialPlan, run_trial
from cifake.workflows.study_report import study_report


@dataclass(frozen=True)
class StudyProfile:
    """A study's budget: what it searches, how each trial and the chosen model train, how much it explains."""

    space: SearchSpace  # the study's CNN family, stage 1 (extractors straight into the output)
    residual: tuple[str, ...]  # named topologies of the residual family, tried beside it
    budget: Budget  # every trial's recipe and split
    final_epochs: int  # the chosen model's (and each leave-one-out model's) epochs
    explain_per_label: int
    robustness_per_label: int | None


# Trials compare topologies with one short recipe (AdamW with a one-cycle rate, mirroring, batch 32); the chosen
# one then trains longer. Budgets are in optimisation steps, so that a small dataset (a face set's 144 training
# images make 5 steps an epoch) trains as long as a large one; 20 % of the training images validate.
TRIAL_RECIPE = dict(batch_size=32, optimizer="adamw", learning_rate=0.003, weight_decay=0.05, schedule="onecycle",
                    flip=True)
VAL_FRACTION = 0.2
PROFILE_BUDGETS = {
    "quick": dict(trial_steps=120, final_steps=300, min_epochs=2, limit_per_label=5000, explain=250,
                  robustness=500),
    "full": dict(trial_steps=400, final_steps=1200, min_epochs=4, limit_per_label=None, explain=1000,
                 robustness=None),
}


def study_profile(name: str, image_size: int, preprocess: str, training_images: int) -> StudyProfile:
    """The profile's budget for a dataset of `training_images` (before validation is carved) at an input size.
    Larger inputs search deeper and narrower CNNs: each conv block halves the side, and the flattened features
    (the output layer's width) grow with the area of what is left."""
    if name not in PROFILE_BUDGETS:
        raise ValueError(f"unknown study profile {name!r}; choose one of {', '.join(PROFILE_BUDGETS)}")
    chosen = PROFILE_BUDGETS[name]
    conv_layers = (1, 2, 3) if image_size <= 64 else (2, 3, 4) if image_size <= 128 else (3, 4, 5)
    filters = (16, 32) if name == "quick" else (16, 32, 64)
    residual = ("resnet-s",) if name == "quick" else ("resnet-s", "resnet4")
    limit = chosen["limit_per_label"]
    trained = min(training_images, 2 * limit if limit else training_images) * (1 - VAL_FRACTION)
    steps_per_epoch = max(1, math.ceil(trained / TRIAL_RECIPE["batch_size"]))
    epochs, final = (max(chosen["min_epochs"], math.ceil(chosen[k] / steps_per_epoch))
                     for k in ("trial_steps", "final_steps"))
    budget = Budget.of(**TRIAL_RECIPE, epochs=epochs, patience=epochs, warmup_epochs=max(1, epochs // 10),
                       image_size=image_size, preprocess=preprocess, val_fraction=VAL_FRACTION, limit_per_label=limit)
    return StudyProfile(SearchSpace(filters, conv_layers, (), ()), residual, budget, final, chosen["explain"],
                        chosen["robustness"])


def run_study(data: CifakeData, out: str | os.PathLike, profile: str = "quick", *, use_ray: bool = False,
              ray_address: str | None = None, progress: bool = True, device: str = "auto") -> dict:
    """The whole study on `data` at its decoded input (size, preprocessing); writes OUT/study.json, study.md and
    study.html beside each step's folder. Returns study.json's content."""
    chosen = study_profile(profile, data.preprocess.size, data.preprocess.mode, len(data.training_split()))
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    audit_report = audit(data)
    write_audit(audit_report, folder / "audit")
    trials = _search(data, folder / "search", chosen, use_ray, ray_address, progress, device)
    best = min(trials, key=lambda r: r["validation"]["loss"])
    topology = topology_from_dict(best["topology"])
    final = replace(chosen.budget.train, epochs=chosen.final_epochs, patience=chosen.final_epochs,
                    warmup_epochs=max(1, chosen.final_epochs // 10), device=device)
    model_dir = folder / "model"
    _train(data, model_dir, topology, final, chosen.budget.split, progress)
    test = evaluate_run(model_dir, data, "test", out=folder / "model", device=device)
    result = {
        "source": data.source, **data.preprocess.to_dict(), "profile": profile,
        "sources": {split: images.source_counts() for split, images in data.splits.items()},
        "trials": [_trial_row(r) for r in trials], "chosen": best["name"], "model": _model_row(model_dir),
        "test": test, "leave_one_source_out": _leave_one_out(data, folder, topology, final, chosen, test, progress),
        "crops": _crop_effect(model_dir, data, chosen, test, device) if data.preprocess.crops else None,
        "explain": explain_dataset(model_dir, data, folder / "explain", _test_split(data), chosen.explain_per_label,
                                   per_class=3, device=device),
        "robustness": evaluate_robustness(model_dir, data, folder / "robustness", limit=chosen.robustness_per_label,
                                          progress=progress, device=device),
        "audit": {"pairs": audit_report["bytes"]["pairs"], "leaked": len(audit_report.get("leaked_test_pixels", []))},
    }
    result["seconds"] = round(time.perf_counter() - started, 1)
    write_json(folder / "study.json", result, indent=1)
    study_report(result, folder).write(folder, "study")
    return result


def _search(data: CifakeData, out: Path, chosen: StudyProfile, use_ray: bool, ray_address: str | None,
            progress: bool, device: str) -> list[dict]:
    """Every trial's record: the CNN extractors (run_search, stage 1) and the residual candidates."""
    # without Ray, trials run one after another: each gets every core (threads 0), not the one Ray would give it
    summary = run_search(data, out, chosen.space, chosen.budget, use_ray=use_ray, ray_address=ray_address,
                         threads_per_trial=1 if use_ray else 0, progress=progress, stages=1, device=device)
    plan = TrialPlan(str(Path(data.source).resolve()), out.resolve(), chosen.budget, threads=0,
                     cache_root=str(data.cache_dir.parent) if data.cache_dir else None, device=device)
    residual = [run_trial(resolve_topology(name), plan) for name in chosen.residual]
    return summary["stage1"] + residual


def _train(data: CifakeData, out: Path, topology, config, split: Split, progress: bool) -> dict:
    folder = RunFolder(out)
    if folder.is_finished():
        return folder.read_record()
    return train_run(data, out, topology, config, split, resume=True, progress=progress)


def _test_split(data: CifakeData) -> str:
    return "test" if "test" in data.splits else next(iter(data.splits))


def _leave_one_out(data: CifakeData, folder: Path, topology, config, chosen: StudyProfile, test: dict,
                   progress: bool) -> list[dict]:
    """For each FAKE source (when there are two or more): the chosen topology trained without it, and how it does
    on that source's test images, beside the model that trained on every source."""
    per_source = test.get("per_source") or {}
    fakes = [name for name, row in per_source.items() if row["label"] == "FAKE"]
    if len(fakes) < 2:
        return []
    rows = []
    for source in fakes:
        split = replace(chosen.budget.split, exclude_sources=(source,))
        run = folder / "leave-one-out" / source
        _train(data, run, topology, config, split, progress)
        held_out = evaluate_run(run, data, "test", out=run)["per_source"][source]
        rows.append({"source": source, "accuracy_trained_with": per_source[source]["accuracy"],
                     "accuracy_held_out": held_out["accuracy"], "roc_auc_trained_with": per_source[source]["roc_auc"],
                     "roc_auc_held_out": held_out["roc_auc"], "n": held_out["n"]})
    return rows


def _crop_effect(model_dir: Path, data: CifakeData, chosen: StudyProfile, test: dict, device: str) -> dict:
    """Test accuracy of a crop model scored on the central crop (as evaluation does) and on the five crops
    prediction averages."""
    model, config = load_model(model_dir, device)
    images = Split.from_record(config["training"]).test(data, config["training"]["config"]["seed"])
    logits = five_crop_logits(model, images.images)
    five = compute_metrics(logits, images.labels, sources=images.sources)
    return {"central": {"accuracy": test["accuracy"], "roc_auc": test["roc_auc"], "loss": test["loss"]},
            "five_crops": {"accuracy": five["accuracy"], "roc_auc": five["roc_auc"], "loss": five["loss"]}}


def _trial_row(record: dict) -> dict:
    return {"name": record["name"], "parameters": record["parameters"], "epochs_run": record["epochs_run"],
            "val_loss": record["validation"]["loss"], "val_accuracy": record["validation"]["accuracy"],
            "test_accuracy": (record.get("test") or {}).get("accuracy"), "seconds": record["seconds"]}


def _model_row(model_dir: Path) -> dict:
    record = RunFolder(model_dir).read_record()
    return {"name": record["name"], "epochs_run": record["epochs_run"], "best_epoch": record["best_epoch"],
            "seconds": record["seconds"], "train_images_per_second": record["train_images_per_second"],
            "config": record["config"], "split": record["split"]}
