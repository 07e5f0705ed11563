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
    ax.imshow(image, interpolation="nearest")  # nearest: show the pixels truthfully, no invented detail
    shown = None
    if heatmap is not None:
        shown = ax.imshow(_normalised(heatmap), cmap=CMAP, alpha=ALPHA, vmin=0, vmax=1, interpolation="bilinear")
    ax.set_xticks([])
    ax.set_yticks([])
    return shown


def overlay_figure(image: np.ndarray, heatmap: np.ndarray, title: str, path: str | Path,
                   method: str = "Grad-CAM") -> Path:
    """The image and the image with its map, each 256 px, with a colour bar (map scaled to its maximum)."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(6.4, 3.2), dpi=100, gridspec_kw={"width_ratios": [1, 1.08]})
    _draw(left, image, None)
    left.set_title(f"image ({image.shape[0]} px)", fontsize=9)
    shown = _draw(right, image, heatmap)
    right.set_title(method, fontsize=9)
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
    sources: np.ndarray | None = None,
    method: str = "Grad-CAM",
) -> Path:
    """Rows: CIFAR-10 classes, columns `per_class` REAL then `per_class` FAKE examples; for images without a
    CIFAR-10 class, rows are their sources (each of one label), with 2 x `per_class` examples. Verdicts marked."""
    grid = _grid_rows(labels, classes, sources, per_class)
    columns = 2 * per_class
    fig, axes = plt.subplots(len(grid), columns, figsize=(1.25 * columns, 1.35 * len(grid) + 0.8), squeeze=False)
    for row, (row_name, cells) in enumerate(grid):
        for col, k in enumerate(cells):
            ax = axes[row, col]
            if col == 0:
                ax.set_ylabel(row_name, fontsize=9)
            if k is None:
                ax.set_xticks([])
                ax.set_yticks([])
                ax.set_frame_on(False)
                continue
            label = labels[k]
            _draw(ax, images[k], maps[k])
            verdict = 1 if prob_real[k] > 0.5 else 0
            correct = verdict == label
            confidence = max(prob_real[k], 1 - prob_real[k])
            ax.set_title(f"{'ok' if correct else 'WRONG'}: {LABEL_NAMES[verdict]} {confidence:.2f}",
                         fontsize=7, color="green" if correct else "red")
            for spine in ax.spines.values():
                spine.set_edgecolor("green" if correct else "red")
                spine.set_linewidth(2)
    by_class = (classes >= 0).any() or sources is None
    columns_say = (f"Columns 1-{per_class}: true REAL; {per_class + 1}-{2 * per_class}: true FAKE." if by_class
                   else "A row per source.")
    fig.suptitle(f"{method} for the model's verdict. {columns_say}\n"
                 "Above each: the verdict and its probability (green right, red wrong).", fontsize=10)
    return _save(fig, path)


def _grid_rows(labels: np.ndarray, classes: np.ndarray, sources: np.ndarray | None, per_class: int
               ) -> list[tuple[str, list[int | None]]]:
    """(row name, image index or None per column) of the example grid: by CIFAR-10 class, else by source."""
    def padded(chosen, width):
        return [int(k) for k in chosen[:width]] + [None] * max(0, width - len(chosen))

    if (classes >= 0).any() or sources is None:
        return [(name, padded(np.flatnonzero((labels == 1) & (classes == row)), per_class)
                 + padded(np.flatnonzero((labels == 0) & (classes == row)), per_class))
                for row, name in enumerate(CIFAR10_CLASSES)]
    return [(str(name), padded(np.flatnonzero(sources == name), 2 * per_class))
            for name in sorted(set(sources.tolist()), key=lambda n: (n != "REAL", n))]


def mean_map_figure(maps: np.ndarray, labels: np.ndarray, path: str | Path, method: str = "Grad-CAM") -> Path:
    """Average normalised map of the REAL and of the FAKE images, with the centre square outlined."""
    fig, axes = plt.subplots(1, 2, figsize=(7, 3.4))
    for ax, label in zip(axes, (1, 0)):
        chosen = maps[labels == label]
        totals = chosen.sum(axis=(1, 2), keepdims=True)
        mean = np.divide(chosen, totals, out=np.zeros_like(chosen), where=totals > 0).mean(0)
        shown = ax.imshow(mean, cmap="magma", interpolation="nearest")
        size = mean.shape[0]  # the centre square: half the side (pixels 8-23 of 32)
        ax.add_patch(plt.Rectangle((size // 4 - 0.5, size // 4 - 0.5), size - 2 * (size // 4), size - 2 * (size // 4),
                                   fill=False, edgecolor="cyan", linewidth=1.5))
        ax.set_title(f"true {LABEL_NAMES[label]} (n={len(chosen):,})", fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
        fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04)
    fig.suptitle(f"Mean {method} (each map scaled to sum 1); cyan: the centre square", fontsize=10)
    return _save(fig, path)


def centre_share_figure(table: dict, path: str | Path) -> Path:
    """Centre share per CIFAR-10 class and label, or per source for images without a class."""
    fig, ax = plt.subplots(figsize=(10, 3.8))
    if any(table[label][c] is not None for label in ("REAL", "FAKE") for c in CIFAR10_CLASSES) or \
            not table.get("per_source"):
        x = np.arange(len(CIFAR10_CLASSES))
        for offset, label in ((-0.2, "REAL"), (0.2, "FAKE")):
            values = [np.nan if table[label][c] is None else table[label][c] for c in CIFAR10_CLASSES]
            ax.bar(x + offset, values, width=0.4, label=label)
        names = CIFAR10_CLASSES
    else:
        names = list(table["per_source"])
        x = np.arange(len(names))
        ax.bar(x, [np.nan if v is None else v for v in table["per_source"].values()], width=0.6, label="source")
    ax.axhline(0.25, color="grey", linestyle="--", linewidth=1, label="even spread (0.25)")
    ax.set(xticks=x, xticklabels=names, ylabel="share of map mass in the centre", ylim=(0, 1))
    ax.set_title("Where the evidence lies: the centre square (half the side) vs the border frame")
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def faithfulness_figure(result: dict, path: str | Path, method: str = "Grad-CAM") -> Path:
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    fractions = result["fractions"]
    for ax, curve, better in ((axes[0], "deletion", "lower"), (axes[1], "insertion", "higher")):
        for order, style in (("map", "-"), ("random", "--")):
            data = result[f"{curve}_{order}"]
            ax.plot(fractions, data["curve"], style, label=f"{method if order == 'map' else 'random'} order "
                                                           f"(AUC {data['auc']:.3f})")
        ax.set(title=f"{curve.capitalize()} ({better} AUC is more faithful)", xlabel="share of pixels changed",
               ylabel="probability of the verdict", ylim=(0, 1))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _save(fig, path)


def side_by_side_figure(images: np.ndarray, columns: dict[str, np.ndarray], labels: np.ndarray, chosen: np.ndarray,
                        path: str | Path) -> Path:
    """The study's Figure 7 for several maps at once: a row per chosen image (true label on the left), the image
    and then each column's map of it over the image (columns: {title: maps of every image})."""
    fig, axes = plt.subplots(len(chosen), len(columns) + 1, figsize=(1.7 * (len(columns) + 1), 1.7 * len(chosen)),
                             squeeze=False)
    for row, index in enumerate(chosen):
        _draw(axes[row, 0], images[index], None)
        axes[row, 0].set_ylabel(f"true {LABEL_NAMES[int(labels[index])]}", fontsize=8)
        for col, (title, maps) in enumerate(columns.items(), start=1):
            _draw(axes[row, col], images[index], maps[index])
            if row == 0:
                axes[row, col].set_title(title, fontsize=8)
    axes[0, 0].set_title("image", fontsize=8)
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
