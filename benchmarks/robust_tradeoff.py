"""Robust training's trade-off, measured: the bundled recipe trained with and without random degradations.

`python benchmarks/robust_tradeoff.py [--limit 9000] [--epochs 6] [--degrade 0.5] [--test-limit 2500]` trains the
bundled model's recipe (residual CNN, AdamW, one-cycle, EMA, flips) twice on the same seeded subset of the train
split (LIMIT images per label, 10 % of them for validation): once on clean images, once with `--degrade P` (each
image, with probability P, gets one random JPEG / rescale / blur / noise degradation). Both are then scored by
`cifake robustness` on the same TEST_LIMIT images per label of the official test split under every condition.
Prints a Markdown table and writes benchmarks/results/robust_tradeoff.json; run folders go to
runs/robust-tradeoff/ (rerunning resumes them). A short budget shows the direction and size of the trade-off,
not the full run's accuracy.
"""

from __future__ import annotations

import argparse
import json

import torch
from common import REPO, data_path

from cifake.data import load_dataset
from cifake.data.degrade import CONDITIONS
from cifake.experiment import train_run
from cifake.models import resolve_topology
from cifake.robustness import evaluate_robustness
from cifake.training import TrainConfig
from cifake.training.config import read_recipe
from cifake.training.split import Split

_, BUNDLED = read_recipe(REPO / "recipes" / "bundled.json")
RECIPE = {k: v for k, v in BUNDLED.items() if k not in ("epochs", "patience", "degrade")}  # shorter; degrade varies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--topology", default="resnet")
    parser.add_argument("--limit", type=int, default=9000, help="train images per label (before validation)")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--degrade", type=float, default=0.5, help="probability of a degradation per image")
    parser.add_argument("--test-limit", type=int, default=2500, help="test images per label to score")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    source = data_path()
    data = load_dataset(source, progress=False)
    topology = resolve_topology(args.topology)
    results = {"settings": vars(args) | {"recipe": RECIPE}, "runs": {}}
    for degrade in (0.0, args.degrade):
        name = f"degrade-{degrade:g}"
        folder = REPO / "runs" / "robust-tradeoff" / f"{args.topology}-{args.limit}-{args.epochs}ep-{name}"
        config = TrainConfig(epochs=args.epochs, patience=args.epochs, degrade=degrade, **RECIPE)
        trained = train_run(data, folder, topology, config, Split(limit_per_label=args.limit), resume=True)
        scored = evaluate_robustness(folder, data, folder / "robustness", limit=args.test_limit, progress=False)
        results["runs"][name] = {"train_images_per_second": trained["train_images_per_second"],
                                 "rows": scored["rows"]}
    out = REPO / "benchmarks" / "results" / "robust_tradeoff.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    names = list(results["runs"])
    print(f"{args.topology}, {args.limit:,} train images per label, {args.epochs} epochs; test: {args.test_limit:,} "
          "per label. Accuracy (ROC-AUC):")
    print("| condition | " + " | ".join(names) + " | change |")
    print("| --- |" + " ---: |" * (len(names) + 1))
    rows = {name: {r["condition"]: r for r in results["runs"][name]["rows"]} for name in names}
    for condition in CONDITIONS:
        cells = [rows[name][condition] for name in names]
        print(f"| {condition} | " + " | ".join(f"{c['accuracy']:.4f} ({c['roc_auc']:.4f})" for c in cells)
              + f" | {100 * (cells[-1]['accuracy'] - cells[0]['accuracy']):+.2f} pt |")
    degraded = [c for c in CONDITIONS if c != "clean"]
    means = [sum(rows[name][c]["accuracy"] for c in degraded) / len(degraded) for name in names]
    print(f"| mean of the {len(degraded)} degradations | " + " | ".join(f"{m:.4f}" for m in means)
          + f" | {100 * (means[-1] - means[0]):+.2f} pt |")
    without = [(rows[name]["clean"]["accuracy_without_leaked"],
                sum(rows[name][c]["accuracy_without_leaked"] for c in degraded) / len(degraded)) for name in names]
    print("Without the leaked test duplicates: clean " + " -> ".join(f"{w[0]:.4f}" for w in without)
          + ", mean of the degradations " + " -> ".join(f"{w[1]:.4f}" for w in without))


if __name__ == "__main__":
    main()
