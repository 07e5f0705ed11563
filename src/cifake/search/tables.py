"""The study's tables (rows: filters; columns: 1, 2, 3 conv layers) with the paper's value, ours and the
difference in every cell; the same layout for the dense stage (rows: units; columns: dense layers)."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import numpy as np

from cifake.report import csv_table, markdown_table

METRICS = ("accuracy", "loss", "precision", "recall", "f1")
TITLES = {"accuracy": "accuracy (%)", "loss": "loss", "precision": "precision", "recall": "recall", "f1": "F1"}


def paper_tables() -> dict:
    """The published values of the study's Tables 1-5 (stage 1), stored in the package."""
    return json.loads((resources.files("cifake.search") / "paper_tables.json").read_text())


def _ours(value: float, metric: str) -> float:
    return 100 * value if metric == "accuracy" else value  # the paper gives accuracy in %


def stage1_grid(results: list[dict], metric: str, split: str = "test") -> tuple[list[int], list[int], np.ndarray]:
    """(filters, conv layers, our values) for a stage-1 metric; NaN where a cell was not run."""
    filters = sorted({r["topology"]["filters"] for r in results})
    layers = sorted({r["topology"]["conv_layers"] for r in results})
    grid = np.full((len(filters), len(layers)), np.nan)
    for r in results:
        grid[filters.index(r["topology"]["filters"]), layers.index(r["topology"]["conv_layers"])] = \
            _ours(r[split][metric], metric)
    return filters, layers, grid


def stage2_grid(results: list[dict], metric: str, split: str = "test") -> tuple[list[int], list[int], np.ndarray]:
    units = sorted({r["topology"]["dense"][0] for r in results})
    layers = sorted({len(r["topology"]["dense"]) for r in results})
    grid = np.full((len(units), len(layers)), np.nan)
    for r in results:
        grid[units.index(r["topology"]["dense"][0]), layers.index(len(r["topology"]["dense"]))] = \
            _ours(r[split][metric], metric)
    return units, layers, grid


def paper_value(metric: str, filters: int, conv_layers: int) -> float | None:
    paper = paper_tables()
    if filters not in paper["filters"] or conv_layers not in paper["conv_layers"]:
        return None
    return paper[metric][paper["filters"].index(filters)][paper["conv_layers"].index(conv_layers)]


def paper_best_accuracy() -> tuple[float, int, int]:
    """The paper's highest stage-1 test accuracy (%) and its cell: (accuracy, filters, conv layers)."""
    paper = paper_tables()
    return max((value, f, n) for f, row in zip(paper["filters"], paper["accuracy"])
               for n, value in zip(paper["conv_layers"], row))


def stage1_rows(results: list[dict], metric: str) -> tuple[list[str], list[list[str]]]:
    """Header and rows: per filters, for each layer count 'paper / ours / difference'."""
    filters, layers, grid = stage1_grid(results, metric)
    digits = 2 if metric == "accuracy" else 3
    header = ["filters"] + [f"{n} layer{'s' if n > 1 else ''} (paper / ours / diff)" for n in layers]
    rows = []
    for i, f in enumerate(filters):
        row = [str(f)]
        for j, n in enumerate(layers):
            paper, ours = paper_value(metric, f, n), grid[i, j]
            if np.isnan(ours):
                row.append("-")
            elif paper is None:
                row.append(f"- / {ours:.{digits}f} / -")
            else:
                row.append(f"{paper:.{digits}f} / {ours:.{digits}f} / {ours - paper:+.{digits}f}")
        rows.append(row)
    return header, rows


def stage2_rows(results: list[dict], metric: str) -> tuple[list[str], list[list[str]]]:
    units, layers, grid = stage2_grid(results, metric)
    digits = 2 if metric == "accuracy" else 3
    header = ["dense units"] + [f"{n} dense layer{'s' if n > 1 else ''}" for n in layers]
    rows = [[str(u)] + ["-" if np.isnan(v) else f"{v:.{digits}f}" for v in grid[i]] for i, u in enumerate(units)]
    return header, rows


def trial_rows(summary: dict) -> tuple[list[str], list[list[str]]]:
    """Every trial of both stages, in the order they are listed: size, epochs, scores and time."""
    header = ["trial", "stage", "parameters", "epochs (best)", "val loss", "val accuracy", "test accuracy",
              "test ROC-AUC", "minutes"]
    rows = []
    for stage in (1, 2):
        for r in summary[f"stage{stage}"]:
            rows.append([r["name"], str(stage), f"{r['parameters']:,}", f"{r['epochs_run']} ({r['best_epoch']})",
                         f"{r['validation']['loss']:.4f}", f"{r['validation']['accuracy']:.4f}",
                         f"{r['test']['accuracy']:.4f}", f"{r['test']['roc_auc']:.4f}", f"{r['seconds'] / 60:.1f}"])
    return header, rows


def cost_plot(summary: dict, path: str | Path) -> Path:
    """Trial wall time per epoch run (data, validation and scoring included) against parameters, both stages."""
    import matplotlib  # here: `search` and `search-status` print these tables without plotting

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for stage, marker in ((1, "o"), (2, "s")):
        results = summary[f"stage{stage}"]
        ax.scatter([r["parameters"] for r in results], [r["seconds"] / 60 / r["epochs_run"] for r in results],
                   marker=marker, label=f"stage {stage}")
    ax.set(xscale="log", xlabel="parameters", ylabel="trial wall minutes / epochs run",
           title="Trial cost")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def within(results: list[dict], points: float = 1.0) -> tuple[int, int]:
    """Stage-1 accuracy cells within `points` percentage points of the paper's, and cells compared."""
    filters, layers, grid = stage1_grid(results, "accuracy")
    close = compared = 0
    for i, f in enumerate(filters):
        for j, n in enumerate(layers):
            paper = paper_value("accuracy", f, n)
            if paper is not None and not np.isnan(grid[i, j]):
                compared += 1
                close += int(abs(grid[i, j] - paper) <= points)
    return close, compared


def heatmap(results: list[dict], metric: str, stage: int, path: str | Path) -> Path:
    """Our values as a heatmap; stage-1 cells also show the paper's value in brackets."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, cols, grid = (stage1_grid if stage == 1 else stage2_grid)(results, metric)
    fig, ax = plt.subplots(figsize=(1.6 * len(cols) + 2.5, 0.55 * len(rows) + 1.8))
    shown = ax.imshow(grid, cmap="viridis_r" if metric == "loss" else "viridis", aspect="auto")
    digits = 2 if metric == "accuracy" else 3
    for (i, j), value in np.ndenumerate(grid):
        if np.isnan(value):
            continue
        paper = paper_value(metric, rows[i], cols[j]) if stage == 1 else None
        text = f"{value:.{digits}f}" + (f"\n({paper:.{digits}f})" if paper is not None else "")
        ax.text(j, i, text, ha="center", va="center", fontsize=8, color="white")
    ax.set(xticks=range(len(cols)), xticklabels=cols, yticks=range(len(rows)), yticklabels=rows,
           xlabel="conv layers" if stage == 1 else "dense layers", ylabel="filters" if stage == 1 else "dense units",
           title=f"Stage {stage}: test {TITLES[metric]}" + (" (paper in brackets)" if stage == 1 else ""))
    fig.colorbar(shown, ax=ax)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def write_tables(summary: dict, folder: str | Path) -> dict[str, list[Path]]:
    """Markdown, CSV and heatmap PNG of every metric of both stages, and the list of trials with their cost;
    returns the files by kind."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written: dict[str, list[Path]] = {"markdown": [], "csv": [], "png": []}
    for stage, results, rows_of in ((1, summary["stage1"], stage1_rows), (2, summary["stage2"], stage2_rows)):
        for metric in METRICS if results else ():  # a profile may search no dense heads
            header, rows = rows_of(results, metric)
            stem = folder / f"stage{stage}_{metric}"
            stem.with_suffix(".md").write_text(markdown_table(header, rows) + "\n")
            stem.with_suffix(".csv").write_text(csv_table(header, rows))
            written["markdown"].append(stem.with_suffix(".md"))
            written["csv"].append(stem.with_suffix(".csv"))
            written["png"].append(heatmap(results, metric, stage, stem.with_suffix(".png")))
    header, rows = trial_rows(summary)
    (folder / "trials.md").write_text(markdown_table(header, rows) + "\n")
    (folder / "trials.csv").write_text(csv_table(header, rows))
    written["markdown"].append(folder / "trials.md")
    written["csv"].append(folder / "trials.csv")
    written["png"].append(cost_plot(summary, folder / "trial_cost.png"))
    return written
