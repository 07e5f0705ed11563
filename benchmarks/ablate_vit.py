"""Which parts of the transformer's recipe help, measured: one change at a time against recipes/vit.json.

`python benchmarks/ablate_vit.py [--limit 5000] [--epochs 5]` trains each variant on a seeded subset of the train
split (LIMIT images per label, 10 % of them for validation; warm-up kept at the recipe's share of the epochs) and
scores it on the whole official test split. The distilled variant's teacher is resnet4 trained by
recipes/bundled.json on the same subset (it must hold out the student's validation images). Prints a Markdown
table and writes benchmarks/results/ablate_vit.json. A short budget ranks the changes; it does not predict the
full run's accuracy. Resumable: finished variants are read back from their run folders.
"""

from __future__ import annotations

import argparse
import json

from common import REPO, data_path

from cifake.data import load_dataset
from cifake.models import resolve_topology

from cifake.training.config import TrainConfig, read_recipe
from cifake.training.split import Split
from cifake.workflows.experiment import evaluate_run, train_run

VARIANTS = {
    "base (recipes/vit.json)": {},
    "convolutional stem": {"topology": "-conv"},
    "no warm-up": {"warmup_epochs": 0.0},
    "one-cycle schedule": {"schedule": "onecycle"},
    "no weight decay": {"weight_decay": 0.0},
    "no weight averaging": {"ema": 0.0},
    "no random degradations": {"degrade": 0.0},
    "no flips or shifts": {"flip": False, "translate": 0},
    "Adam, constant lr 1e-3 (the study's)": {"optimizer": "adam", "weight_decay": 0.0, "schedule": "constant",
                                             "warmup_epochs": 0.0},
    "distilled from resnet4 (share 0.5)": {"teacher": "TEACHER", "distill": 0.5},
}

def teacher(data, split: Split, epochs: int) -> str:
    """A resnet4 trained by the bundled recipe on the student's subset, for the distilled variant."""
    name, settings = read_recipe(REPO / "recipes" / "bundled.json")
    folder = REPO / "runs" / "ablate-vit" / f"{split.limit_per_label}-{epochs}ep-teacher"
    config = TrainConfig(**(settings | {"epochs": epochs, "patience": epochs}))
    train_run(data, folder, resolve_topology(name), config, split, resume=True, progress=False, plots=False)
    return str(folder)

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--limit", type=int, default=5000, help="train images per label")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--only", nargs="*", help="variant names to run (default: all)")
    args = parser.parse_args()
    data = load_dataset(data_path(), progress=False)
    name, recipe = read_recipe(REPO / "recipes" / "vit.json")
    recipe |= {"epochs": args.epochs, "patience": args.epochs,
               "warmup_epochs": recipe["warmup_epochs"] * args.epochs / recipe["epochs"]}
    split = Split(limit_per_label=args.limit)
    out = REPO / "benchmarks" / "results" / "ablate_vit.json"
    results = json.loads(out.read_text()) if out.exists() else {}
    print(f"{args.limit:,} training images per label (10 % for validation), {args.epochs} epochs; test: all "
          f"{len(data['test']):,}\n| variant | val accuracy | test accuracy | test ROC-AUC | train images/s |\n"
          "| --- | ---: | ---: | ---: | ---: |")
    for label, change in VARIANTS.items():
        if args.only and label not in args.only:
            continue
        topology = resolve_topology(name + change.pop("topology", ""))
        if change.get("teacher"):
            change["teacher"] = teacher(data, split, args.epochs * 2)
        config = TrainConfig(**(recipe | change))
        folder = REPO / "runs" / "ablate-vit" / f"{args.limit}-{args.epochs}ep-{label.split(' (')[0].replace(' ', '-')}"
        record = train_run(data, folder, topology, config, split, resume=True, progress=False,
                           plots=False)
        metrics = evaluate_run(folder, data, "test")  # the whole test split, not only LIMIT images per label
        results[label] = {"limit": args.limit, "epochs": args.epochs, "val_accuracy": record["validation"]["accuracy"],
                          "accuracy": metrics["accuracy"], "roc_auc": metrics["roc_auc"],
                          "images_per_second": record["train_images_per_second"], "seconds": record["seconds"]}
        row = results[label]
        print(f"| {label} | {row['val_accuracy']:.4f} | {row['accuracy']:.4f} | {row['roc_auc']:.4f} | "
              f"{row['images_per_second']:,.0f} |", flush=True)
        out.write_text(json.dumps(results, indent=1))

if __name__ == "__main__":
    main()
