"""Figures a person can read: 32 px images shown at 256 px with the heatmap over them and a colour bar,
and the study-style grid of classes x (REAL, FAKE) examples with their maps and verdicts."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from cifake.data.sources import CIFAR10_CLASSES, LABEL_NAMES  # noqa: E402

CMAP = "jet"
ALPHA = 0.45


def _normalised(heatmap: np.ndarray) -> np.ndarray:
    top = float(heatmap.max())
    return heatmap / top if top > 0 else heatmap


def _draw(ax, image: np.ndarray, heatmap: np.ndarray | None):
    ax.imshow(image, interpolation="nearest")  # nearest: show the 32 px truthfully, no invented detail
    shown = None
    if heatmap is not None:
        shown = ax.imshow(_normalised(heatmap), cmap=CMAP, alpha=ALPHA, vmin=0, vmax=1, interpolation="bilinear")
    ax.set_xticks([])
    ax.set_yticks([])
    return shown


def overlay_figure(image: np.ndarray, heatmap: np.ndarray, title: str, path: str | Path) -> Path:
    """The image and the image with its map, each 256 px, with a colour bar (map scaled to its maximum)."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(6.4, 3.2), dpi=100, gridspec_kw={"width_ratios": [1, 1.08]})
    _draw(left, image, None)
    left.set_title("image (32 px)", fontsize=9)
    shown = _draw(right, image, heatmap)
    right.set_title("Grad-CAM", fontsize=9)
    fig.colorbar(shown, ax=right, fraction=0.046, pad=0.04, label="share of the map's maximum")
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def class_grid_figure(
    images: np.ndarray,
    maps: np.ndarray,
    labels: np.ndarray,
    classes: np.ndarray,
    prob_real: np.ndarray,
    per_class: int,
    path: str | Path,
) -> Path:
    """Rows: CIFAR-10 classes; columns: `per_class` REAL then `per_class` FAKE examples, verdicts marked."""
    columns = [(label, i) for label in (1, 0) for i in range(per_class)]
    fig, axes = plt.subplots(len(CIFAR10_CLASSES), len(columns), figsize=(1.25 * len(columns), 13.5), squeeze=False)
    for row, class_name in enumerate(CIFAR10_CLASSES):
        for col, (label, i) in enumerate(columns):
            ax = axes[row, col]
            chosen = np.flatnonzero((labels == label) & (classes == row))
            if i >= len(chosen):
                ax.axis("off")
                continue
            k = chosen[i]
            _draw(ax, images[k], maps[k])
            verdict = 1 if prob_real[k] > 0.5 else 0
            correct = verdict == label
            confidence = max(prob_real[k], 1 - prob_real[k])
            ax.set_title(f"{'ok' if correct else 'WRONG'}: {LABEL_NAMES[verdict]} {confidence:.2f}",
                         fontsize=7, color="green" if correct else "red")
            for spine in ax.spines.values():
                spine.set_edgecolor("green" if correct else "red")
                spine.set_linewidth(2)
            if col == 0:
                ax.set_ylabel(class_name, fontsize=9)
    fig.suptitle(f"Grad-CAM for the model's verdict. Columns 1-{per_class}: true REAL; "
                 f"{per_class + 1}-{2 * per_class}: true FAKE.\n"
                 "Above each: the verdict and its probability (green right, red wrong).", fontsize=10)
    return _save(fig, path)


def mean_map_figure(maps: np.ndarray, labels: np.ndarray, path: str | Path) -> Path:
    """Average normalised map of the REAL and of the FAKE images, with the centre square outlined."""
    fig, axes = plt.subplots(1, 2, figsize=(7, 3.4))
    for ax, label in zip(axes, (1, 0)):
        chosen = maps[labels == label]
        totals = chosen.sum(axis=(1, 2), keepdims=True)
        mean = np.divide(chosen, totals, out=np.zeros_like(chosen), where=totals > 0).mean(0)
        shown = ax.imshow(mean, cmap="magma", interpolation="nearest")
        ax.add_patch(plt.Rectangle((7.5, 7.5), 16, 16, fill=False, edgecolor="cyan", linewidth=1.5))
        ax.set_title(f"true {LABEL_NAMES[label]} (n={len(chosen):,})", fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
        fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04)
    fig.suptitle("Mean Grad-CAM (each map scaled to sum 1); cyan: the centre square", fontsize=10)
    return _save(fig, path)


def centre_share_figure(table: dict, path: str | Path) -> Path:
    x = np.arange(len(CIFAR10_CLASSES))
    fig, ax = plt.subplots(figsize=(10, 3.8))
    for offset, label in ((-0.2, "REAL"), (0.2, "FAKE")):
        values = [np.nan if table[label][c] is None else table[label][c] for c in CIFAR10_CLASSES]
        ax.bar(x + offset, values, width=0.4, label=label)
    ax.axhline(0.25, color="grey", linestyle="--", linewidth=1, label="even spread (0.25)")
    ax.set(xticks=x, xticklabels=CIFAR10_CLASSES, ylabel="share of map mass in the centre", ylim=(0, 1))
    ax.set_title("Where the evidence lies: centre 16x16 square vs the border frame")
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def faithfulness_figure(result: dict, path: str | Path) -> Path:
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    fractions = result["fractions"]
    for ax, curve, better in ((axes[0], "deletion", "lower"), (axes[1], "insertion", "higher")):
        for order, style in (("map", "-"), ("random", "--")):
            data = result[f"{curve}_{order}"]
            ax.plot(fractions, data["curve"], style, label=f"{'Grad-CAM' if order == 'map' else 'random'} order "
                                                           f"(AUC {data['auc']:.3f})")
        ax.set(title=f"{curve.capitalize()} ({better} AUC is more faithful)", xlabel="share of pixels changed",
               ylabel="probability of the verdict", ylim=(0, 1))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _save(fig, path)


def _save(fig, path):
    """Save to a path (folders made as needed) or to a binary file object, as PNG."""
    if isinstance(path, (str, Path)):
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=fig.dpi, format="png")
    plt.close(fig)
    return path
