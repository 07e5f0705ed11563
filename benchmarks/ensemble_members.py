"""Which trained models to ensemble: every single model and every combination, with and without test-time flips.

`python benchmarks/ensemble_members.py RUN_DIR RUN_DIR [...] [--json]` scores the official test split once per
model and view (as trained, and without its test-time flips where it has them), then every combination of two or
more models by their mean logit (each member as trained, and all members without flips). Prints right answers,
accuracy and ROC-AUC; the choice of the bundle's members rests on this table (docs/detect.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
from pathlib import Path

import numpy as np
from common import data_path

from cifake.data import load_dataset
from cifake.metrics import compute_metrics
from cifake.models import load_model
from cifake.models.inference import predict_logits
from cifake.report import markdown_table


def member_logits(run: Path, images: np.ndarray) -> dict[str, np.ndarray]:
    """{"as trained": logits, "no flips": logits} (one entry when the model has no test-time flips)."""
    model, _ = load_model(run)
    views = {"as trained": predict_logits(model, images)}
    if getattr(model.topology, "flip_tta", False):
        model.topology = dataclasses.replace(model.topology, flip_tta=False)
        views["no flips"] = predict_logits(model, images)
    else:
        views["no flips"] = views["as trained"]
    return views


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("runs", type=Path, nargs="+", help="run folders of trained models")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = parser.parse_args()
    test = load_dataset(data_path(), progress=False)["test"]
    logits = {run: member_logits(run, test.images) for run in args.runs}
    rows = []
    for size in range(1, len(args.runs) + 1):
        for combination in itertools.combinations(args.runs, size):
            for view in ("as trained", "no flips"):
                mean = np.mean([logits[run][view] for run in combination], axis=0)
                metrics = compute_metrics(mean, test.labels)
                rows.append({"models": " + ".join(run.name for run in combination), "view": view,
                             "right": int(round(metrics["accuracy"] * len(test))),
                             "accuracy": metrics["accuracy"], "roc_auc": metrics["roc_auc"]})
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    print(markdown_table(["models", "view", "right of 20,000", "accuracy", "ROC-AUC"],
                         [[r["models"], r["view"], f"{r['right']:,}", f"{r['accuracy']:.4f}", f"{r['roc_auc']:.4f}"]
                          for r in rows]))


if __name__ == "__main__":
    main()
