"""A run folder end to end: data -> model -> training -> metrics -> files. `cifake train`, every search trial,
`make bundle` and the benchmarks train through `train_run`; later stages read what it wrote.

The run folder's files are cifake.runfolder's: the model (with the run's record under "training" in its config),
the checkpoint to resume from, the record with the validation and test metrics (written last, so its presence
means the run finished), the history and PNG plots.
"""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from cifake.data import CifakeData
from cifake.data.audit import leaked_mask
from cifake.devices import cpu_threads, describe, mixed_precision, precision_name, resolve_device
from cifake.metrics import evaluate
from cifake.models import Topology, create_model, count_parameters, load_model, save_model
from cifake.models.io import has_test_time_flips, set_test_time_flips
from cifake.runfolder import RunFolder
from cifake.training.checkpoint import TrainResult
from cifake.training.config import TrainConfig
from cifake.training.distill import distilled_targets
from cifake.training.loop import RESIDENT_BYTES, fit, seed_everything
from cifake.training.split import Split


class RunExists(FileExistsError):
    """The output folder already holds a run and resume was not asked for."""


def train_run(data: CifakeData, out: str | os.PathLike, topology: Topology, config: TrainConfig,
              split: Split | None = None, *, resume: bool = False, progress: bool = True, plots: bool = True) -> dict:
    """Train on the source's train split (validation carved out), score on validation and test, write the run
    folder; returns the run's record (also RUN/run.json)."""
    folder = RunFolder(out)
    if config.test_time_flips and not has_test_time_flips(topology):
        raise ValueError(f"training setting test_time_flips: {topology.name} has no test-time flips (the residual "
                         f"and transformer families have them)")
    if folder.has_checkpoint() and not resume:
        raise RunExists(f"{folder} already holds a run; pass --resume to continue it, or choose another --out")
    with cpu_threads(config.threads):
        return _train_run(data, folder, topology, config, split or Split(), resume, progress, plots)


def _train_run(data: CifakeData, folder: RunFolder, topology: Topology, config: TrainConfig, split: Split, resume: bool,
               progress: bool, plots: bool) -> dict:
    started = time.perf_counter()
    device = resolve_device(config.device)
    data.check_fits(config.input, f"a {config.image_size} px {config.preprocess} model")
    train_set, val_set = split.carve(data, config.seed)
    carved = time.perf_counter()
    train_set = train_set.resident(RESIDENT_BYTES)
    targets, teacher = (distilled_targets(train_set, config, (split.val_fraction, split.limit_per_label,
                                                              config.seed), device, progress)
                        if config.teacher else (None, None))
    taught = time.perf_counter()
    if teacher:
        teacher["seconds"] = round(taught - carved, 3)  # scoring the training images, kept out of the phases
    seed_everything(config.seed)
    model = create_model(topology, config.input)
    result = fit(model, train_set, val_set, config, folder.path, resume=resume, progress=progress, targets=targets)
    if teacher:
        teacher["targets_sha256"] = result.targets
    model = model.to(memory_format=torch.contiguous_format)
    if config.test_time_flips:  # only now: every epoch was validated on one view, as without the setting
        set_test_time_flips(model, True)
    trained = time.perf_counter()

    metrics = _scores(model, {"validation": val_set, "test": split.test(data, config.seed)}, config, folder, plots)
    record = {
        "name": topology.name, "topology": model.topology.to_dict(), "parameters": count_parameters(model),
        "config": config.to_dict(), **({"teacher": teacher} if teacher else {}),
        "split": split.to_dict() | {"train": len(train_set), "validation": len(val_set)},
        "data": {"source": data.source, "cache": str(data.cache_dir), **data.preprocess.to_dict(),
                 "sources": train_set.source_counts()},
        **_outcome(result, time.perf_counter() - started),
        "phases": _phases(result, carved - started, trained - taught, time.perf_counter() - trained),
        "environment": {"torch": torch.__version__, "threads": torch.get_num_threads(), "machine": platform.machine(),
                        **describe(device), "precision": precision_name(mixed_precision(device, config.bf16)),
                        "optimizer_kernel": result.optimizer_kernel},
    }
    save_model(model, folder.path, record)
    folder.write_history(result.history)
    if plots:
        from cifake.metrics.plots import plot_training_curves  # matplotlib: 0.7 s, not for search trials

        plot_training_curves(result.history, folder / "training_curves.png")
    folder.write_record(record | metrics)  # last: its presence means the run finished
    return record | metrics


def _scores(model: torch.nn.Module, scored: dict, config: TrainConfig, folder: RunFolder, plots: bool) -> dict:
    """The trained model's metrics on each split (a source without a test split has none), with the test plots."""
    metrics = {}
    for name, images in scored.items():
        if images is not None:
            metrics[name], logits = evaluate(model, images, config.eval_batch_size)
            if plots and name == "test":
                plot_evaluation(folder.path, "test", logits, images.labels, metrics[name])
    return metrics


def _phases(result: TrainResult, carving: float, fitting: float, scoring: float) -> dict:
    """Where this run's seconds went (epochs from an earlier, resumed run not included): carving the split,
    training steps, validation after each epoch, the rest of fit (copies, checkpoints), scoring val and test."""
    epochs = result.history[result.resumed_from_epoch:]
    training = sum(row["seconds"] for row in epochs)
    validation = sum(row["wall_seconds"] - row["seconds"] for row in epochs)
    return {name: round(value, 3) for name, value in (
        ("split", carving), ("training", training), ("validation", validation),
        ("checkpoints_and_setup", fitting - training - validation), ("scoring", scoring))}


def _outcome(result: TrainResult, seconds: float) -> dict:
    """How training went; a resumed run's seconds include the epochs its earlier runs trained."""
    earlier = result.history[:result.resumed_from_epoch]
    return {"best_epoch": result.best_epoch, "epochs_run": len(result.history), "stopped_early": result.stopped_early,
            "resumed_from_epoch": result.resumed_from_epoch,
            "train_images_per_second": _median([row["images_per_second"] for row in result.history]),
            "seconds": round(seconds + sum(row["wall_seconds"] for row in earlier), 2)}


def validation_split(config: dict, data: CifakeData):
    """The validation images a saved model was trained against, carved again exactly as training carved them."""
    training = config.get("training")
    if not training or "split" not in training:
        raise ValueError("the model's config.json does not record how its validation split was made")
    return Split.from_record(training).carve(data, training["config"]["seed"])[1]


def evaluate_run(run_dir: str | os.PathLike, data: CifakeData, split: str = "test", exclude_leaked: bool = False,
                 out: str | os.PathLike | None = None, device: str | torch.device = "auto") -> dict:
    """Metrics of a saved model on one split; with exclude_leaked, test images that also occur in train are left out.
    Split "validation" is, where the data has none of its own, the part of train the model was trained against."""
    device = resolve_device(device)
    model, config = load_model(run_dir, device)
    data.check_fits(model.preprocess, str(run_dir))
    images, split = evaluation_images(config, data, split, exclude_leaked)
    excluded = 0
    if exclude_leaked:
        mask = leaked_mask(data, split)
        excluded = int(mask.sum())
        images = images.take(np.flatnonzero(~mask))
    metrics, logits = evaluate(model, images)
    metrics |= {"split": split, "source": data.source, "excluded_leaked": excluded, **describe(device)}
    folder = RunFolder(out or run_dir)
    folder.path.mkdir(parents=True, exist_ok=True)
    folder.write_evaluation(metrics, split, exclude_leaked)
    plot_evaluation(folder.path, RunFolder.evaluation_stem(split, exclude_leaked), logits, images.labels, metrics)
    return metrics


def evaluation_images(config: dict, data: CifakeData, split: str, exclude_leaked: bool = False):
    """(images, split name) a saved model is evaluated on: a split of the source, or one carved again as its
    training carved it (validation from train; test from a source with no split of its own)."""
    training = config.get("training") or {}
    if split == "test" and "test" not in data.splits and "train" not in data.splits and "split" in training:
        return Split.from_record(training).test(data, training["config"]["seed"]), "test"  # the recorded share
    carve = split == "validation" and split not in data.splits and ("train" in data.splits or "split" in training)
    if carve and exclude_leaked:
        raise ValueError("--exclude-leaked leaves out test images found in train; the validation split is part "
                         "of train, so there is nothing to exclude")
    if carve:
        return validation_split(config, data), split
    if split not in data.splits and len(data.splits) == 1:
        split = next(iter(data.splits))  # a REAL/FAKE folder of one's own, scored by a model trained elsewhere
    return data[split], split


def plot_evaluation(folder: Path, stem: str, logits, labels, metrics: dict) -> None:
    # matplotlib loads only to plot: runs without plots (search trials, benchmarks/gpu_check.py) do without it
    from cifake.metrics.plots import plot_confusion_matrix, plot_per_class_accuracy, plot_roc_curve

    plot_confusion_matrix(metrics["confusion_matrix"], folder / f"{stem}_confusion_matrix.png",
                          f"Confusion matrix ({stem})")
    plot_roc_curve(logits, labels, metrics["roc_auc"], folder / f"{stem}_roc.png", f"ROC curve ({stem}), REAL positive")
    if "per_class_accuracy" in metrics:
        plot_per_class_accuracy(metrics["per_class_accuracy"], folder / f"{stem}_per_class.png",
                                f"Accuracy per CIFAR-10 class ({stem})")


def _median(values: list[float]) -> float | None:
    return float(np.median(values)) if values else None
