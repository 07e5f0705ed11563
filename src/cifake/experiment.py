"""A run folder end to end: data -> model -> training -> metrics -> files. The CLI and later stages call this.

A run folder holds model.safetensors + config.json (the model), checkpoint.safetensors (to resume),
metrics.json (validation and test metrics), history.csv and PNG plots.
"""

from __future__ import annotations

import csv
import json
import os
import platform
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from cifake.data import CifakeData, load_dataset, train_val_split
from cifake.data.audit import leaked_mask
from cifake.metrics import compute_metrics
from cifake.metrics.plots import plot_confusion_matrix, plot_per_class_accuracy, plot_roc_curve, plot_training_curves
from cifake.models import Topology, build_model, count_parameters, load_model, save_model
from cifake.models.inference import predict_logits
from cifake.models.io import atomic_write
from cifake.training import TrainConfig, fit, has_checkpoint, seed_everything


class RunExists(FileExistsError):
    """The output folder already holds a run and --resume was not asked for."""


def train_run(
    source: str | os.PathLike,
    out: str | os.PathLike,
    topology: Topology,
    config: TrainConfig,
    *,
    val_fraction: float = 0.1,
    limit: int | None = None,
    resume: bool = False,
    progress: bool = True,
    data: CifakeData | None = None,
) -> dict:
    """Train on the source's train split (validation carved out), evaluate on validation and test, write the run."""
    folder = Path(out)
    if has_checkpoint(folder) and not resume:
        raise RunExists(f"{folder} already holds a run; pass --resume to continue it, or choose another --out")
    data = data or load_dataset(source, progress=progress)
    train_set, val_set = train_val_split(data.training_split().limit(limit, config.seed).in_memory(),
                                         val_fraction, config.seed)
    seed_everything(config.seed)
    model = build_model(topology)
    started = time.perf_counter()
    result = fit(model, train_set, val_set, config, folder, resume=resume, progress=progress)
    model = model.to(memory_format=torch.contiguous_format)

    evaluations = {"validation": val_set}
    if "test" in data.splits:
        evaluations["test"] = data["test"].limit(limit, config.seed)
    metrics = {}
    for name, images in evaluations.items():
        logits = predict_logits(model, images.images, config.eval_batch_size)
        metrics[name] = compute_metrics(logits, images.labels, images.classes)
        if name == "test":
            _plot_evaluation(folder, "test", logits, images.labels, metrics[name])

    training = {
        "config": asdict(config),
        "data": {"source": str(source), "cache": str(data.cache_dir), "limit_per_label": limit,
                 "val_fraction": val_fraction, "train": len(train_set), "validation": len(val_set)},
        "best_epoch": result.best_epoch, "epochs_run": len(result.history), "stopped_early": result.stopped_early,
        "resumed_from_epoch": result.resumed_from_epoch,
        "train_images_per_second": _median([row["images_per_second"] for row in result.history]),
        "parameters": count_parameters(model),
        "environment": {"torch": torch.__version__, "threads": torch.get_num_threads(), "machine": platform.machine()},
    }
    save_model(model, folder, training)
    _write_json(folder / "metrics.json", metrics)
    _write_history(folder / "history.csv", result.history)
    plot_training_curves(result.history, folder / "training_curves.png")
    return {"metrics": metrics, "training": training, "seconds": time.perf_counter() - started}


def evaluate_run(
    run_dir: str | os.PathLike,
    source: str | os.PathLike,
    split: str = "test",
    exclude_leaked: bool = False,
    out: str | os.PathLike | None = None,
    progress: bool = True,
    data: CifakeData | None = None,
) -> dict:
    """Metrics of a saved model on one split; with exclude_leaked, test images that also occur in train are left out."""
    model, _ = load_model(run_dir)
    data = data or load_dataset(source, progress=progress)
    if split not in data.splits and len(data.splits) == 1:
        split = next(iter(data.splits))  # a REAL/FAKE folder of one's own has a single split
    images = data[split]
    excluded = 0
    if exclude_leaked:
        mask = leaked_mask(data, split)
        excluded = int(mask.sum())
        images = images.take(np.flatnonzero(~mask))
    logits = predict_logits(model, images.images)
    metrics = compute_metrics(logits, images.labels, images.classes)
    metrics |= {"split": split, "source": str(source), "excluded_leaked": excluded}
    folder = Path(out or run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"eval-{split}{'-no-leaked' if exclude_leaked else ''}"
    _write_json(folder / f"{stem}.json", metrics)
    _plot_evaluation(folder, stem, logits, images.labels, metrics)
    return metrics


def _plot_evaluation(folder: Path, stem: str, logits, labels, metrics: dict) -> None:
    plot_confusion_matrix(metrics["confusion_matrix"], folder / f"{stem}_confusion_matrix.png",
                          f"Confusion matrix ({stem})")
    plot_roc_curve(logits, labels, metrics["roc_auc"], folder / f"{stem}_roc.png", f"ROC curve ({stem}), REAL positive")
    if "per_class_accuracy" in metrics:
        plot_per_class_accuracy(metrics["per_class_accuracy"], folder / f"{stem}_per_class.png",
                                f"Accuracy per CIFAR-10 class ({stem})")


def _median(values: list[float]) -> float | None:
    return float(np.median(values)) if values else None


def _write_json(path: Path, value) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(value, indent=2)))


def _write_history(path: Path, history: list[dict]) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=list(history[0]) if history else ["epoch"])
            writer.writeheader()
            writer.writerows(history)

    atomic_write(path, write)
