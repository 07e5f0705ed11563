"""The quick profile's trade-off: how many of the 12 stage-1 cells land near the paper's test accuracy, against
the search's wall time, for several training budgets (images per label x epochs).

Each budget is the quick profile's search (its space and recipe, another number of images per label and epochs;
Ray, one thread per trial, two at once on 2 cores) in OUT/<budget>; a rerun skips finished ones, and a
`make reproduce` search folder (reports/quick/search) copied to OUT/45000x2-onecycle-lr0.005 counts as its
point. Prints a table and draws OUT/quick_budget.png (cells within 1 and 2 points against minutes).

    python benchmarks/quick_budget.py --out /tmp/quick-budget --budgets 20000x2,45000x2,fullx2
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

from common import data_path

from cifake.data import load_dataset
from cifake.search import run_search, search_status
from cifake.search.grid import PROFILES
from cifake.search.tables import within


def parse_budget(text: str) -> tuple[int | None, int]:
    """'35000x2' -> (35000, 2): images per label of train, epochs; 'full' for the whole train split."""
    images, epochs = text.split("x")
    return (None if images == "full" else int(images)), int(epochs)


def measure(data, out: Path, limit: int | None, epochs: int, args) -> dict:
    quick = PROFILES["quick"]
    budget = replace(quick.budget, epochs=epochs, patience=epochs, limit_per_label=limit, learning_rate=args.lr,
                     schedule=args.schedule, warmup_epochs=args.warmup_epochs)
    summary = run_search(data, out, quick.space, budget, stages=1, device="cpu")
    return {"images_per_label": limit or 50_000, "epochs": epochs, "schedule": args.schedule, "lr": args.lr,
            "within_1": within(summary["stage1"], 1.0)[0], "within_2": within(summary["stage1"], 2.0)[0],
            "minutes": search_status(out).wall_seconds / 60}


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    minutes = [r["minutes"] for r in rows]
    for key, label in (("within_2", "within 2 points"), ("within_1", "within 1 point")):
        ax.plot(minutes, [r[key] for r in rows], "o-", label=label)
    for r in rows:
        ax.annotate(f"{r['images_per_label'] // 1000}k x {r['epochs']}", (r["minutes"], r["within_2"]),
                    textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set(xlabel="stage-1 search wall time (min, 2 cores)", ylabel="cells of 12 near the paper", ylim=(0, 12.5),
           title="Quick profile: budget against agreement with the paper")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--budgets", default="20000x2,45000x2,fullx2",
                        help="images per label x epochs, comma-separated")
    parser.add_argument("--schedule", default="onecycle")
    parser.add_argument("--lr", type=float, default=0.005)
    parser.add_argument("--warmup-epochs", type=float, default=0.2)
    args = parser.parse_args()
    data = load_dataset(data_path(), progress=False)
    rows = []
    for text in args.budgets.split(","):
        limit, epochs = parse_budget(text)
        name = f"{text}-{args.schedule}-lr{args.lr:g}"
        rows.append(measure(data, args.out / name, limit, epochs, args))
        print(json.dumps(rows[-1]), flush=True)
    print("| images per label | epochs | schedule, lr | within 1 point | within 2 points | minutes |")
    print("| ---: | ---: | --- | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['images_per_label']:,} | {r['epochs']} | {r['schedule']}, {r['lr']:g} | {r['within_1']} | "
              f"{r['within_2']} | {r['minutes']:.1f} |")
    plot(sorted(rows, key=lambda r: r["minutes"]), args.out / "quick_budget.png")


if __name__ == "__main__":
    main()
