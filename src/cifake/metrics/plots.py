"""PNG plots of training and evaluation: training curves, confusion matrix, ROC curve."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display needed (servers, CI)
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
import numpy as np  # noqa: E402


def plot_training_curves(history: list[dict], path: str | Path) -> Path:
    epochs = [row["epoch"] for row in history]
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, title in ((loss_ax, "loss", "Binary cross-entropy"), (acc_ax, "accuracy", "Accuracy")):
        ax.plot(epochs, [row[f"train_{key}"] for row in history], "o-", label="train")
        ax.plot(epochs, [row[f"val_{key}"] for row in history], "o-", label="validation")
        ax.set(title=title, xlabel="epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend()
    return _save(fig, path)


def plot_confusion_matrix(confusion: dict, path: str | Path, title: str = "Confusion matrix") -> Path:
    matrix = np.asarray(confusion["matrix"])
    labels = confusion["labels"]
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.imshow(matrix, cmap="Blues")
    for (row, col), value in np.ndenumerate(matrix):
        colour = "white" if value > matrix.max() / 2 else "black"
        ax.text(col, row, f"{value:,}", ha="center", va="center", color=colour, fontsize=12)
    ax.set(xticks=range(len(labels)), yticks=range(len(labels)), xticklabels=labels, yticklabels=labels,
           xlabel="predicted", ylabel="true", title=title)
    return _save(fig, path)


def plot_roc_curve(logits: np.ndarray, labels: np.ndarray, auc: float | None, path: str | Path,
                   title: str = "ROC curve (REAL positive)") -> Path:
    from sklearn.metrics import roc_curve  # the scores' library (cifake.metrics.scores says why not torchmetrics)

    fpr, tpr, _ = roc_curve(np.asarray(labels), np.asarray(logits))  # the same order as P(REAL), so the same curve
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot(fpr, tpr, label=f"AUC {auc:.4f}" if auc is not None else None)
    ax.plot([0, 1], [0, 1], "--", color="grey", linewidth=1)
    ax.set(xlabel="false positive rate (FAKE called REAL)", ylabel="true positive rate (REAL called REAL)",
           title=title, xlim=(0, 1), ylim=(0, 1.01))
    ax.grid(alpha=0.3)
    if auc is not None:
        ax.legend(loc="lower right")
    return _save(fig, path)


def plot_per_class_accuracy(per_class: dict, path: str | Path, title: str = "Accuracy per CIFAR-10 class") -> Path:
    """Grouped bars: for each class, the accuracy on its REAL and on its FAKE images."""
    classes = list(per_class["REAL"])
    x = np.arange(len(classes))
    fig, ax = plt.subplots(figsize=(10, 4))
    for offset, label in ((-0.2, "REAL"), (0.2, "FAKE")):
        values = [np.nan if v is None else v for v in per_class[label].values()]
        ax.bar(x + offset, values, width=0.4, label=label)
    low = np.nanmin([v for row in per_class.values() for v in row.values() if v is not None] or [0.0])
    ax.set(xticks=x, xticklabels=classes, ylabel="accuracy", title=title, ylim=(max(0.0, low - 0.05), 1.0))
    ax.grid(axis="y", alpha=0.3)
    ax.legend()
    return _save(fig, path)


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_reliability(curves: dict[str, dict], path: str | Path, title: str = "Reliability diagram") -> Path:
    """Observed REAL rate against mean predicted P(REAL) per bin (from calibration.reliability_bins), per curve."""
    fig, (ax, hist) = plt.subplots(2, 1, figsize=(5, 6), height_ratios=(3, 1), sharex=True)
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
    for name, bins in curves.items():
        counts = np.asarray(bins["count"])
        used = counts > 0
        ax.plot(np.asarray(bins["predicted"])[used], np.asarray(bins["observed"])[used], "o-", label=name)
        centres = (np.asarray(bins["edges"][:-1]) + np.asarray(bins["edges"][1:])) / 2
        hist.plot(centres, counts, "o-", label=name)
    ax.set(ylabel="observed share of REAL images", title=title, xlim=(0, 1), ylim=(0, 1))
    ax.grid(alpha=0.3)
    ax.legend()
    hist.set(xlabel="predicted P(REAL)", ylabel="images", yscale="log")
    hist.grid(alpha=0.3)
    return _save(fig, path)


def plot_robustness(rows: list[dict], path: str | Path, title: str = "Robustness") -> Path:
    """Accuracy and ROC-AUC per degradation condition, as horizontal bars (clean on top)."""
    names = [row["condition"] for row in rows][::-1]
    # a one-label set (e.g. only real photographs) has no ROC-AUC: accuracy alone
    panels = [("accuracy", "accuracy")] + ([("roc_auc", "ROC-AUC")] if rows[0]["roc_auc"] is not None else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 0.35 * len(rows) + 1.5), sharey=True,
                             squeeze=False)
    for ax, (key, label) in zip(axes[0], panels):
        values = [row[key] for row in rows][::-1]
        ax.barh(names, values, color=["#4c72b0" if n != "clean" else "#55a868" for n in names])
        for y, value in enumerate(values):
            ax.text(value, y, f" {value:.3f}", va="center", fontsize=8)
        ax.set(xlabel=label, xlim=(min(0.5, min(values) - 0.02), 1.0))
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle(title)
    return _save(fig, path)
