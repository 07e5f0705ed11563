"""One trial of the search: train a topology, score it on validation and test, write the result atomically.

A trial folder holds the model and its per-epoch checkpoint, so a trial killed half-way resumes from its last
epoch; `<name>.json` is written only when the trial is finished, so its presence means "done".
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from cifake.data import load_dataset, train_val_split
from cifake.metrics import compute_metrics
from cifake.models import Topology, build_model, count_parameters, save_model
from cifake.models.inference import predict_logits
from cifake.models.io import atomic_write
from cifake.search.grid import Budget
from cifake.training import TrainConfig, fit, seed_everything

RECORDED = ("accuracy", "loss", "precision", "recall", "f1", "roc_auc")


def result_path(out: Path, topology: Topology) -> Path:
    return out / "trials" / f"{topology.name}.json"


def run_trial(topology: Topology, budget: Budget, source: str, out: str, threads: int = 1,
              cache_root: str | None = None) -> dict:
    """Train and score one topology; returns (and writes) its result. Selection must use validation only."""
    folder = Path(out)
    done = result_path(folder, topology)
    if done.exists():
        return json.loads(done.read_text())
    torch.set_num_threads(threads)
    started = time.perf_counter()
    data = load_dataset(source, cache_root=cache_root, progress=False)
    train_set, val_set = train_val_split(data.training_split().limit(budget.limit_per_label, budget.seed).in_memory(),
                                         budget.val_fraction, budget.seed)
    seed_everything(budget.seed)
    model = build_model(topology)
    config = TrainConfig(epochs=budget.epochs, batch_size=budget.batch_size, patience=budget.patience, seed=budget.seed)
    run_dir = folder / "trials" / topology.name
    history = fit(model, train_set, val_set, config, run_dir, resume=True, progress=False)
    model = model.to(memory_format=torch.contiguous_format)
    scores = {"validation": val_set}
    if "test" in data.splits:
        scores["test"] = data["test"].limit(budget.limit_per_label, budget.seed)
    result = {"name": topology.name, "topology": topology.to_dict(), "parameters": count_parameters(model),
              "epochs_run": len(history.history), "best_epoch": history.best_epoch, "threads": threads}
    for split, images in scores.items():
        metrics = compute_metrics(predict_logits(model, images.images), images.labels)
        result[split] = {key: metrics[key] for key in RECORDED}
    save_model(model, run_dir, {"budget": budget.to_dict(), "search_trial": topology.name})
    # A resumed trial also counts the epochs of its earlier runs (rows from before wall_seconds existed give
    # their training time only).
    earlier = history.history[:history.resumed_from_epoch]
    result["seconds"] = round(time.perf_counter() - started
                              + sum(row.get("wall_seconds", row["seconds"]) for row in earlier), 2)
    done.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(done, lambda tmp: Path(tmp).write_text(json.dumps(result, indent=1)))
    return result
