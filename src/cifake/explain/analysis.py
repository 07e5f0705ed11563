"""Measured analysis of attribution maps: where the evidence lies, whether it is faithful, whether it is sane.

- Centre vs border: the share of each map's mass in the central square (half the side: pixels 8-23 of 32, a
  quarter of the image) against the border frame around it (the other three quarters). A map spread evenly
  gives 0.25.
- Faithfulness (Petsiuk et al., 2018): deletion replaces the most-attributed pixels first with a blurred copy
  of the image and follows the model's probability of its verdict; insertion starts from the blurred copy and
  restores the most-attributed pixels first. A faithful map gives a low deletion AUC and a high insertion AUC
  compared with the same curves in a random pixel order.
- Sanity (Adebayo et al., 2018): maps of the trained model against maps of the same architecture with
  re-initialised weights, all at once and layer by layer from the output down; Spearman rank correlation per
  image. A method that explains the model, not the image, gives low correlation.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable

import numpy as np
import torch
from scipy.ndimage import gaussian_filter
from scipy.stats import rankdata
from torch import nn

from cifake.choices import EXPLAIN_CHECKS
from cifake.data.sources import CIFAR10_CLASSES, LABEL_NAMES
from cifake.explain.base import OneView
from cifake.models.inference import predict_logits, sigmoid

def centre_square(size: int) -> slice:
    """The central square of half the side of a size x size map: pixels 8-23 of 32."""
    return slice(size // 4, size - size // 4)


def centre_share(maps: np.ndarray) -> np.ndarray:
    """Per map, the share of its mass in the central square of half its side; NaN for an all-zero map."""
    total = maps.sum(axis=(1, 2))
    centre = maps[:, centre_square(maps.shape[1]), centre_square(maps.shape[2])].sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, centre / total, np.nan)


def region_table(maps: np.ndarray, labels: np.ndarray, classes: np.ndarray, sources: np.ndarray | None = None
                 ) -> dict:
    """Mean centre share per label and CIFAR-10 class (border share = 1 - centre share), per source when given,
    and empty-map counts."""
    share = centre_share(maps)
    table: dict = {}
    for label in (1, 0):
        row = {}
        for k, name in enumerate(CIFAR10_CLASSES):
            chosen = (labels == label) & (classes == k)
            row[name] = _nanmean(share[chosen])
        row["all"] = _nanmean(share[labels == label])
        table[LABEL_NAMES[label]] = row
    table["all"] = _nanmean(share)
    if sources is not None:
        table["per_source"] = {str(name): _nanmean(share[sources == name]) for name in sorted(set(sources.tolist()))}
    table["empty_maps"] = int(np.isnan(share).sum())
    return table


def _nanmean(values: np.ndarray) -> float | None:
    values = values[~np.isnan(values)]
    return float(values.mean()) if len(values) else None


def blurred(images: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur over height and width of uint8 (N, H, W, 3) images: the 'information removed' baseline."""
    return gaussian_filter(images.astype(np.float32), sigma=(0, sigma, sigma, 0), mode="nearest")


CHECKS = EXPLAIN_CHECKS  # images the faithfulness curves and the randomisation check use by default


def default_checks(passes_per_map: int) -> int:
    """Images a report checks by default: CHECKS, half as many for a method whose map costs several passes
    (Integrated Gradients: 16 a map, so its randomisation check costs 16 times as much). Its gaps vary less: on 200
    images their 95 % intervals were +/-0.013 to 0.017 against Grad-CAM's 0.027 to 0.031 (docs/transformers.md),
    so 100 images still measure it more closely than 200 measure Grad-CAM."""
    return CHECKS if passes_per_map == 1 else CHECKS // 2


def checked_subset(count: int, checks: int, seed: int) -> np.ndarray:
    """Sorted indices of a seeded subset of `checks` of `count` images (all of them when there are no more): the
    images the faithfulness and randomisation checks run on. Those cost about 60 and 2-12 model passes per image
    and map, where the centre shares cost nothing beyond the maps."""
    if checks >= count:
        return np.arange(count)
    return np.sort(np.random.default_rng(seed).choice(count, checks, replace=False))


def run_checks(model: nn.Module, images: np.ndarray, maps: np.ndarray, targets: np.ndarray,
               make_method: Callable[[nn.Module], Callable], passes_per_map: int, seed: int,
               checks: int | None = None, cascade: bool | None = None) -> tuple[dict, dict]:
    """(faithfulness, randomisation check) on a seeded subset of `checks` images (default_checks when None); the
    cascade by default only where a map costs one pass (not Integrated Gradients)."""
    checks = default_checks(passes_per_map) if checks is None else checks
    cascade = passes_per_map == 1 if cascade is None else cascade
    checked = checked_subset(len(images), checks, seed)
    pixels, maps, targets = images[checked], maps[checked], targets[checked]
    return (deletion_insertion(model, pixels, maps, targets, seed=seed),
            randomisation_check(model, pixels, maps, targets, make_method, seed, cascade))


def deletion_insertion(
    model: nn.Module,
    images: np.ndarray,
    maps: np.ndarray,
    targets: np.ndarray,
    steps: int = 16,
    sigma: float = 4.0,
    seed: int = 1,
    chunk: int = 1000,
) -> dict:
    """Deletion and insertion curves and AUCs, in the maps' order and in a random order, and each curve's gap
    between the two orders (the mean per-image AUC difference, with its 95 % interval).

    The model is scored as the maps explain it (`OneView`: the image as given). The curves' ends, the image and its
    blurred copy, are scored once for both orders. Images are processed `chunk` at a time (at 32 px; as many
    pixels in all at other sizes), so memory stays bounded however many there are and whatever their size.
    """
    n, height, width = maps.shape
    chunk = max(1, chunk * 32 * 32 // (height * width))
    random_keys = np.random.default_rng(seed).random((n, height * width))
    scored = OneView(model)
    probabilities = {(curve, order): np.empty((steps + 1, n), np.float32)
                     for curve in ("deletion", "insertion") for order in ("map", "random")}
    for start in range(0, n, chunk):
        part = slice(start, start + chunk)
        sign = np.where(targets[part] == 1, 1.0, -1.0).astype(np.float32)  # probability of the target label

        def probability(pixels: np.ndarray, sign=sign) -> np.ndarray:
            return sigmoid(sign * predict_logits(scored, pixels))

        original, base = images[part].astype(np.float32), blurred(images[part], sigma)
        ends = {"original": probability(images[part]), "base": probability(_to_uint8(base))}
        orders = {"map": np.argsort(-maps[part].reshape(len(original), -1), axis=1, kind="stable"),
                  "random": np.argsort(random_keys[part], axis=1)}
        for order_name, order in orders.items():
            rank = np.empty_like(order)
            np.put_along_axis(rank, order, np.broadcast_to(np.arange(height * width), order.shape), axis=1)
            rank = rank.reshape(len(original), height, width, 1)
            for curve in ("deletion", "insertion"):
                (begin, end), values = _curve_ends(curve, original, base), probabilities[curve, order_name]
                values[0, part], values[steps, part] = _curve_ends(curve, ends["original"], ends["base"])
                for step in range(1, steps):
                    changed = rank < round(step / steps * height * width)
                    values[step, part] = probability(_to_uint8(np.where(changed, end, begin)))
    return _curve_summary(probabilities, np.linspace(0, 1, steps + 1), sigma)


def _curve_ends(curve: str, original, base) -> tuple:
    """(start, end) of a curve: deletion goes from the image to its blurred copy, insertion back."""
    return (original, base) if curve == "deletion" else (base, original)


def _to_uint8(pixels: np.ndarray) -> np.ndarray:
    return np.rint(pixels).clip(0, 255).astype(np.uint8)


def _curve_summary(probabilities: dict, fractions: np.ndarray, sigma: float) -> dict:
    n = next(iter(probabilities.values())).shape[1]
    result: dict = {"fractions": fractions.tolist(), "sigma": sigma, "images": n}
    aucs = {key: np.trapezoid(values, fractions, axis=0) for key, values in probabilities.items()}
    for (curve, order_name), values in probabilities.items():
        auc = aucs[curve, order_name]
        result[f"{curve}_{order_name}"] = {"curve": values.mean(1).tolist(), "auc": float(auc.mean()),
                                           "auc_std": float(auc.std())}
    for curve in ("deletion", "insertion"):
        gap = aucs[curve, "map"] - aucs[curve, "random"]  # paired: the same images in both orders
        half_width = 1.96 * gap.std(ddof=1) / np.sqrt(n) if n > 1 else float("nan")
        result[f"{curve}_gap"] = {"mean": float(gap.mean()), "ci95": float(half_width)}
    return result


def rank_correlation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman correlation of each pair of maps; NaN where either map is constant (e.g. all zero)."""
    ra = rankdata(a.reshape(len(a), -1), axis=1)
    rb = rankdata(b.reshape(len(b), -1), axis=1)
    ra -= ra.mean(1, keepdims=True)
    rb -= rb.mean(1, keepdims=True)
    denominator = np.sqrt((ra**2).sum(1) * (rb**2).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, (ra * rb).sum(1) / denominator, np.nan)


def randomisation_check(
    model: nn.Module,
    images: np.ndarray,
    maps: np.ndarray,
    targets: np.ndarray,
    make_method: Callable[[nn.Module], Callable],
    seed: int = 1,
    cascade: bool = True,
) -> dict:
    """Rank correlation of the trained model's maps with maps after re-initialising weights (Adebayo et al.).
    The cascade steps through a CNN's layers one by one and through a transformer's blocks one by one (each block's
    layers at once: 4 steps per block otherwise, each costing a whole set of maps); without `cascade`, only all
    layers at once."""
    rows = []
    randomised = copy.deepcopy(model)
    torch.manual_seed(seed)
    for name, layers in reversed(_cascade_steps(model) if cascade else []):  # the output layer first, then down
        for layer in layers:
            _reinitialise(randomised.get_submodule(layer))
        randomised_maps = make_method(randomised)(images, targets)[0]
        rows.append({"randomised_down_to": name, **_correlation_summary(maps, randomised_maps)})
    full = copy.deepcopy(model)
    torch.manual_seed(seed + 1)
    for module in full.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            _reinitialise(module)
    return {"full": _correlation_summary(maps, make_method(full)(images, targets)[0]), "cascading": rows}


def _cascade_steps(model: nn.Module) -> list[tuple[str, list[str]]]:
    """(step name, layer names) input side first: each convolution and dense layer alone, except that the layers
    of a transformer block (`...blocks.N.`) make one step named after the block."""
    steps: dict[str, list[str]] = {}
    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            block = re.match(r"(.*\bblocks\.\d+)\.", name)
            steps.setdefault(block.group(1) if block else name, []).append(name)
    return list(steps.items())


def _reinitialise(module: nn.Module) -> None:
    nn.init.xavier_uniform_(module.weight)
    if module.bias is not None:  # the residual family's convolutions have none (batch norm follows them)
        nn.init.uniform_(module.bias, -0.1, 0.1)  # non-zero, so ReLUs pass signal as in a trained net


def _correlation_summary(reference: np.ndarray, other: np.ndarray) -> dict:
    rho = rank_correlation(reference, other)
    valid = rho[~np.isnan(rho)]
    return {
        "mean": float(valid.mean()) if len(valid) else None,
        "median": float(np.median(valid)) if len(valid) else None,
        "undefined": int(np.isnan(rho).sum()),  # a constant (e.g. all-zero) map has no ranks
    }
