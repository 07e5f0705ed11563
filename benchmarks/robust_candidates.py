"""Candidates for the bundled detector, trained with random degradations on a short budget and scored on each.

`python benchmarks/robust_candidates.py [NAME ...] [--limit 9000] [--epochs 6] [--test-limit 2500]` (default:
the first four candidates) trains each candidate with the bundled recipe (AdamW, one-cycle, EMA, flips; random
shifts only where the candidate names them) for EPOCHS epochs on a seeded LIMIT images per label of the train
split (10 % of them for validation), 2 threads, then scores it with `cifake robustness` on TEST_LIMIT test
images per label (0: all) under every condition. Run folders go to runs/robust-candidates/NAME (with
-LIMITxEPOCHS off the default budget; a rerun resumes them); one JSON line per candidate is appended to
benchmarks/results/robust_candidates.jsonl, and a table of every line is printed. The default budget and test
subset are benchmarks/robust_tradeoff.py's, whose `--degrade 0.5` row is the 32-64-128 network under the same
training. The longer budget of docs/detect.md (20,000 per label, 20 epochs, 5,000 test images per label)
overfits in its last epochs as the full run does, so it ranks regularisers.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from common import REPO, data_path

import cifake.data.degrade as degradations
from cifake.data import load_dataset
from cifake.experiment import train_run
from cifake.models.resnet import ResNetTopology
from cifake.robustness import evaluate_robustness
from cifake.training import TrainConfig
from cifake.training.config import read_recipe
from cifake.training.split import Split

# Wider draws than TRAINING_FAMILIES: stronger rescaling and blur, to reach the hardest test conditions.
WIDE_FAMILIES = [
    lambda rng: degradations.jpeg(int(rng.integers(25, 96))),
    lambda rng: degradations.rescale(float(rng.uniform(0.4, 0.95))),
    lambda rng: degradations.blur(float(rng.uniform(0.3, 1.5))),
    lambda rng: degradations.noise(float(rng.uniform(1.0, 12.0))),
]
FOUR_STAGES = (16, 32, 64, 128)
CANDIDATES = {  # name: (widths, residual blocks per stage, share degraded, families, recipe changes)
    "resnet4": (FOUR_STAGES, 1, 0.5, "base", {}),
    "resnet4-b2": (FOUR_STAGES, 2, 0.5, "base", {}),
    "resnet4-wide-0.6": (FOUR_STAGES, 1, 0.6, "wide", {}),
    "resnet4-wide-0.5": (FOUR_STAGES, 1, 0.5, "wide", {}),
    "resnet4-translate-2": (FOUR_STAGES, 1, 0.5, "base", {"translate": 2}),
    "resnet4-translate-3": (FOUR_STAGES, 1, 0.5, "base", {"translate": 3}),
    "resnet4-translate-2-wd-0.2": (FOUR_STAGES, 1, 0.5, "base", {"translate": 2, "weight_decay": 0.2}),
}
DEFAULT_NAMES = list(CANDIDATES)[:4]
LIMIT, EPOCHS, TEST_LIMIT = 9000, 6, 2500


def run_candidate(name: str, data, limit: int, epochs: int, test_limit: int) -> dict:
    widths, blocks, degrade, families, changes = CANDIDATES[name]
    base = list(degradations.TRAINING_FAMILIES)
    if families == "wide":  # robust training draws from the module's list: swap it for this run only
        degradations.TRAINING_FAMILIES[:] = WIDE_FAMILIES
    try:
        _, bundled = read_recipe(REPO / "recipes" / "bundled.json")
        # the candidates' own settings; the recipe's shifts only where a candidate names them
        recipe = {k: v for k, v in bundled.items()
                  if k not in ("epochs", "patience", "topology", "degrade", "translate")}
        budget = "" if (limit, epochs) == (LIMIT, EPOCHS) else f"-{limit}x{epochs}"
        folder = REPO / "runs" / "robust-candidates" / (name + budget)
        config = TrainConfig(epochs=epochs, patience=epochs, degrade=degrade, **(recipe | changes))
        started = time.time()
        trained = train_run(data, folder, ResNetTopology(widths=widths, blocks=blocks), config,
                            Split(limit_per_label=limit), resume=True, progress=False, plots=False)
        seconds = time.time() - started
    finally:
        degradations.TRAINING_FAMILIES[:] = base
    scored = evaluate_robustness(folder, data, folder / "robustness", limit=test_limit or None,
                                 progress=False)
    accuracy = {r["condition"]: r["accuracy"] for r in scored["rows"]}
    degraded = [v for k, v in accuracy.items() if k != "clean"]
    return {"name": name, "widths": list(widths), "blocks": blocks, "degrade": degrade, "families": families,
            "changes": changes, "limit": limit, "epochs": epochs, "test_limit": test_limit,
            "best_epoch": trained["best_epoch"],
            "train_images_per_second": trained["train_images_per_second"], "seconds": round(seconds),
            "val_loss": trained["validation"]["loss"], "clean": accuracy["clean"],
            "mean_degraded": sum(degraded) / len(degraded), "min_degraded": min(degraded), "accuracy": accuracy}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("names", nargs="*", choices=[[], *CANDIDATES], default=DEFAULT_NAMES)
    parser.add_argument("--limit", type=int, default=LIMIT, help="train images per label")
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--test-limit", type=int, default=TEST_LIMIT, help="test images per label; 0: all")
    args = parser.parse_args()
    torch.set_num_threads(2)
    data = load_dataset(data_path(), progress=False)
    out = REPO / "benchmarks" / "results" / "robust_candidates.jsonl"
    for name in args.names or DEFAULT_NAMES:
        result = run_candidate(name, data, args.limit, args.epochs, args.test_limit)
        with out.open("a") as handle:
            handle.write(json.dumps(result) + "\n")
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    print("| candidate | budget | clean | mean of 11 degraded | worst degraded | train images/s |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for r in rows:
        budget = f"{r.get('limit', LIMIT):,}x{r.get('epochs', EPOCHS)}"
        print(f"| {r['name']} | {budget} | {r['clean']:.4f} | {r['mean_degraded']:.4f} | {r['min_degraded']:.4f} | "
              f"{r['train_images_per_second']:,.0f} |")


if __name__ == "__main__":
    main()
