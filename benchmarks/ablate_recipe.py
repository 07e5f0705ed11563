"""Which parts of the beyond-the-study recipe help, measured: one change at a time against a base recipe.

`python benchmarks/ablate_recipe.py [--limit 10000] [--epochs 4]` trains each variant on a seeded subset of the
train split (LIMIT images per label, 10 % of them for validation) and scores it on the whole official test
split. Prints a Markdown table and writes benchmarks/results/ablate_recipe.json. A short budget ranks the
changes; it does not predict the full run's accuracy.
"""

from __future__ import annotations

import argparse
import dataclasses
import json

from common import REPO, data_path

from cifake.data import load_dataset
from cifake.experiment import evaluate_run, train_run
from cifake.models import ResNetTopology
from cifake.training import TrainConfig
from cifake.training.split import Split

BASE_TOPOLOGY = ResNetTopology(widths=(32, 64, 128), blocks=1, high_pass=True, flip_tta=True)
BASE_RECIPE = dict(optimizer="adamw", learning_rate=3e-3, weight_decay=0.05, schedule="onecycle", warmup_epochs=0.5,
                   ema=0.999, flip=True, patience=100)
VARIANTS = {
    "base": ({}, {}),
    "no high-pass branch": ({"high_pass": False}, {}),
    "no flips in training": ({}, {"flip": False}),
    "no test-time flips": ({"flip_tta": False}, {}),
    "no weight averaging": ({}, {"ema": 0.0}),
    "label smoothing 0.1": ({}, {"label_smoothing": 0.1}),
    "random degradations 0.3": ({}, {"degrade": 0.3}),
    "Adam, constant lr 1e-3": ({}, {"optimizer": "adam", "learning_rate": 1e-3, "weight_decay": 0.0,
                                    "schedule": "constant"}),
    "wider (64-128-256)": ({"widths": (64, 128, 256)}, {}),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--limit", type=int, default=10000, help="train images per label")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--only", nargs="*", help="variant names to run (default: all)")
    args = parser.parse_args()
    data = load_dataset(data_path(), progress=False)
    test = data["test"]
    out = REPO / "benchmarks" / "results" / "ablate_recipe.json"
    results = json.loads(out.read_text()) if out.exists() else {}
    print(f"{args.limit:,} training images per label (10 % for validation), {args.epochs} epochs; "
          f"test: all {len(test):,}")
    print("| variant | test accuracy | test ROC-AUC | val loss | train images/s |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, (topology_change, recipe_change) in VARIANTS.items():
        if args.only and name not in args.only:
            continue
        topology = dataclasses.replace(BASE_TOPOLOGY, **topology_change)
        config = TrainConfig(epochs=args.epochs, **(BASE_RECIPE | recipe_change))
        folder = REPO / "runs" / "ablate" / f"{args.limit}-{args.epochs}ep-{name.replace(' ', '-')}"
        record = train_run(data, folder, topology, config, Split(limit_per_label=args.limit), resume=True,
                           progress=False, plots=False)
        metrics = evaluate_run(folder, data, "test")  # the whole test split, not only limit images per label
        val_loss = record["validation"]["loss"]
        rate = record["train_images_per_second"]
        results[name] = {"limit": args.limit, "epochs": args.epochs, "accuracy": metrics["accuracy"],
                         "roc_auc": metrics["roc_auc"], "val_loss": val_loss, "images_per_second": rate,
                         "seconds": record["seconds"]}
        print(f"| {name} | {metrics['accuracy']:.4f} | {metrics['roc_auc']:.4f} | {val_loss:.4f} | {rate:,.0f} |",
              flush=True)
        out.parent.mkdir(exist_ok=True)
        out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
