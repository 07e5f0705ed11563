"""`cifake robustness`: each condition of cifake.data.degrade applied to the whole test split, then scored.

Writes robustness.json, robustness.csv, robustness.md / .html and robustness.png into the output folder. Every
figure is given for the whole test split and without the leaked test duplicates (pixel-identical to a train image).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import torch

from cifake.data import CifakeData
from cifake.data.audit import leaked_mask
from cifake.data.degrade import CONDITIONS, degrade
from cifake.devices import describe, resolve_device
from cifake.files import write_json
from cifake.metrics import compute_metrics
from cifake.metrics.plots import plot_robustness
from cifake.models import load_model
from cifake.models.inference import predict_logits
from cifake.progress import progress_bar
from cifake.report import Report, csv_table
from cifake.workflows.experiment import evaluation_images


def evaluate_robustness(run_dir: str | os.PathLike, data: CifakeData, out: str | os.PathLike | None = None,
                        conditions: list[str] | None = None, limit: int | None = None, seed: int = 0,
                        progress: bool = True, device: str | torch.device = "auto") -> dict:
    """Accuracy and ROC-AUC per condition on the test split (first `limit` images per label when given)."""
    conditions = conditions or list(CONDITIONS)
    unknown = [c for c in conditions if c not in CONDITIONS]
    if unknown:
        raise ValueError(f"unknown condition(s) {unknown}; known: {', '.join(CONDITIONS)}")
    device = resolve_device(device)
    model, config = load_model(run_dir, device)
    data.check_fits(model.preprocess, str(run_dir))
    test, split = evaluation_images(config, data, "test")
    if split != "test":
        raise ValueError(f"{data.source}: has no test split to measure robustness on")
    keep = ~leaked_mask(data, "test") if "test" in data.splits else np.ones(len(test), bool)
    if limit:
        chosen = test.limit_indices(limit, seed)
        test, keep = test.take(chosen), keep[chosen]
    rows, started = [], time.perf_counter()
    with progress_bar(progress) as bar:
        task = bar.add_task("robustness", total=len(conditions))
        for condition in conditions:
            logits = _degraded_logits(model, test.images, condition, seed)
            row = {"condition": condition}
            for suffix, mask in (("", slice(None)), ("_without_leaked", keep)):
                metrics = compute_metrics(logits[mask], test.labels[mask])
                row |= {f"accuracy{suffix}": metrics["accuracy"], f"roc_auc{suffix}": metrics["roc_auc"],
                        f"recall_real{suffix}": metrics["recall"], f"recall_fake{suffix}": metrics["fake_recall"]}
            rows.append(row)
            bar.advance(task)
    result = {"run": str(run_dir), "images": int(len(test)), "without_leaked": int(keep.sum()), "seed": seed,
              "rows": rows, "seconds": round(time.perf_counter() - started, 1), **describe(device)}
    if out is not None:
        write_robustness(result, Path(out))
    return result


def _degraded_logits(model, images, condition: str, seed: int, chunk_bytes: int = 1 << 30) -> np.ndarray:
    """Logits of the degraded images: all at once (as the figures in the docs were measured), or, for a set over
    `chunk_bytes`, chunk by chunk with a seed per chunk, in bounded memory."""
    per_chunk = max(1, chunk_bytes // (images.shape[1] * images.shape[2] * 3))
    if len(images) <= per_chunk:
        return predict_logits(model, degrade(np.asarray(images), condition, seed))
    return np.concatenate([predict_logits(model, degrade(np.asarray(images[start:start + per_chunk]), condition,
                                                         seed * 1_000_003 + start // per_chunk))
                           for start in range(0, len(images), per_chunk)])


def write_robustness(result: dict, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / "robustness.json", result)
    header = list(result["rows"][0])
    (folder / "robustness.csv").write_text(csv_table(header, [[row[k] for k in header] for row in result["rows"]]))
    plot_robustness(result["rows"], folder / "robustness.png", f"Robustness of {Path(result['run']).name}")
    report = Report(f"Robustness of {result['run']}")
    report.paragraph(f"Test split: {result['images']:,} images ({result['without_leaked']:,} without the leaked "
                     f"test/FAKE duplicates). Each condition is applied to every image; noise is seeded "
                     f"({result['seed']}).")
    clean = next((r for r in result["rows"] if r["condition"] == "clean"), None)
    header = ["condition", "accuracy", "ROC-AUC", "REAL recall", "FAKE recall", "accuracy w/o leaked",
              "ROC-AUC w/o leaked"] + (["accuracy change"] if clean else [])
    shown = ("accuracy", "roc_auc", "recall_real", "recall_fake", "accuracy_without_leaked", "roc_auc_without_leaked")
    table = []
    for r in result["rows"]:
        change = [f"{100 * (r['accuracy'] - clean['accuracy']):+.2f} pt"] if clean else []
        table.append([r["condition"], *(_figure(r[key]) for key in shown), *change])
    report.table(header, table)
    report.image(folder / "robustness.png", "Accuracy and ROC-AUC per condition")
    report.write(folder, "robustness")


def _figure(value: float | None) -> str:
    """A table cell; ROC-AUC is None on a one-label set (e.g. real photographs only)."""
    return "-" if value is None else f"{value:.4f}"
