"""Explain a saved model: overlays for chosen files, or a measured report over a dataset split."""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from cifake.data import CifakeData
from cifake.data.sources import CIFAR10_CLASSES, LABEL_NAMES
from cifake.devices import describe, resolve_device
from cifake.explain.analysis import region_table, run_checks
from cifake.explain.figures import (
    centre_share_figure, class_grid_figure, faithfulness_figure, mean_map_figure, overlay_figure,
)
from cifake.explain.methods import TITLES, make_method
from cifake.files import write_json
from cifake.models import load_model, topology_from_dict
from cifake.models.inference import predict_logits, sigmoid
from cifake.report import Report
from cifake.workflows.experiment import evaluation_images

if TYPE_CHECKING:
    from collections.abc import Iterable

    from cifake.predict import Detector, Prediction


@dataclass
class FileExplanations:
    results: list[dict] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    predictions: list[Prediction] = field(default_factory=list)  # one per file, in order, failures included


def explain_files(detector: Detector, files: Iterable[Path], out: str | os.PathLike, layer: str | None = None,
                  target: str = "predicted", threshold: float | None = None, method: str = "gradcam"
                  ) -> FileExplanations:
    """One overlay PNG per image file, with the verdict `cifake predict` gives (each file decoded once); bad files
    are listed, not raised. Writes explanations.json beside the overlays."""
    found_all = detector.explanations(files, target, layer, threshold, method)  # a method that does not apply
    folder = Path(out)  # is refused there, before any output
    folder.mkdir(parents=True, exist_ok=True)
    explained, used = FileExplanations(), set()
    for found in found_all:
        prediction = found.prediction
        explained.predictions.append(prediction)
        if prediction.error:
            explained.failures.append((prediction.source, prediction.error))
            continue
        path = Path(prediction.source)
        name = _unique(f"{path.stem}_{method}.png", used)
        title = (f"{path.name}: {prediction.verdict} (P(FAKE) = {prediction.prob_fake:.3f}); "
                 f"map for {found.map_for}")
        overlay_figure(found.pixels, found.heatmap, title, folder / name, TITLES[method])
        explained.results.append({"path": prediction.source, "prob_fake": prediction.prob_fake,
                                  "verdict": prediction.verdict, "domain_score": prediction.domain_score,
                                  "in_domain": prediction.in_domain, "map_for": found.map_for, "method": method,
                                  "overlay": name})
    write_json(folder / "explanations.json", {"device": detector.device, "results": explained.results,
                                              "failures": [{"path": p, "reason": r} for p, r in explained.failures]})
    return explained


def _unique(name: str, used: set[str]) -> str:
    stem, suffix, k = name[: -len(".png")], ".png", 1
    while name in used:
        k += 1
        name = f"{stem}-{k}{suffix}"
    used.add(name)
    return name


def explain_dataset(
    run_dir: str | os.PathLike,
    data: CifakeData,
    out: str | os.PathLike,
    split: str = "test",
    sample_per_label: int = 1000,
    per_class: int = 3,
    layer: str | None = None,
    seed: int | None = None,
    device: str | torch.device = "auto",
    method: str = "gradcam",
    checks: int | None = None,
    cascade: bool | None = None,
) -> dict:
    """An explanation `method` (cifake.explain.methods) over a seeded sample of a split: figures, centre/border
    shares over the sample, faithfulness and sanity over a seeded subset of `checks` of its images; a report.
    `checks` and the cascade default by the method's cost (run_checks). The sample, the subset and the checks follow
    `seed`, by default the model's training seed (1 when its config does not say)."""
    started = time.perf_counter()
    device = resolve_device(device)
    model, config = load_model(run_dir, device)
    seed = training_seed(config) if seed is None else seed
    data.check_fits(model.preprocess, str(run_dir))
    images = evaluation_images(config, data, split)[0].limit(sample_per_label, seed).in_memory()
    explainer = make_method(method, model, layer)
    (folder := Path(out)).mkdir(parents=True, exist_ok=True)
    logits = predict_logits(model, images.images)
    prob_real = sigmoid(logits)
    maps, targets = explainer(images.images, (logits > 0).astype(np.int64))  # the verdicts, each scored once
    regions = region_table(maps, images.labels, images.classes, images.sources)
    layer = getattr(explainer, "layer_name", None)
    faithfulness, sanity = run_checks(model, images.images, maps, targets, lambda m: make_method(method, m, layer),
                                      explainer.passes_per_map, seed, checks, cascade)
    summary = {
        "run": str(run_dir), "source": data.source, "split": split, "images": len(images), "seed": seed,
        "image_size": int(images.images.shape[1]),
        "sample_sha256": hashlib.sha256("\n".join(images.names).encode()).hexdigest(),  # which images, checkably
        "per_label": {LABEL_NAMES[k]: int((images.labels == k).sum()) for k in (1, 0)},
        "method": method, "layer": layer, "target": "predicted", "centre_share": regions,
        "faithfulness": faithfulness, "randomisation": sanity,
        "accuracy_on_sample": float(((prob_real > 0.5) == (images.labels == 1)).mean()),
        **describe(device),
    }
    figures = _figures(images, maps, prob_real, regions, faithfulness, per_class, folder, method)
    summary["seconds"] = round(time.perf_counter() - started, 1)
    write_json(folder / "explain.json", summary)
    build_report(summary, figures, config).write(folder, "explain")
    return summary


def _figures(images, maps, prob_real, regions: dict, faithfulness: dict, per_class: int, folder: Path,
             method: str) -> dict:
    title = TITLES[method]
    return {
        "grid": class_grid_figure(images.images, maps, images.labels, images.classes, prob_real, per_class,
                                  folder / f"{method}_grid.png", images.sources, title),
        "mean": mean_map_figure(maps, images.labels, folder / "mean_maps.png", title),
        "centre": centre_share_figure(regions, folder / "centre_share.png"),
        "faithfulness": faithfulness_figure(faithfulness, folder / "deletion_insertion.png", title),
    }


def training_seed(config: dict) -> int:
    """The seed a saved model was trained with (an ensemble's record keeps its members' shared seed); 1 if unknown."""
    return int(((config.get("training") or {}).get("config") or {}).get("seed", 1))


def _region_rows(shares: dict) -> tuple[list[str], list[list]]:
    """The centre/border table: per CIFAR-10 class and label, or per source for images without a class."""
    def pair(value):
        return [value, None if value is None else 1 - value]

    by_class = any(shares[label][c] is not None for label in ("REAL", "FAKE") for c in CIFAR10_CLASSES)
    if by_class or not shares.get("per_source"):
        rows = [[c, *pair(shares["REAL"][c]), *pair(shares["FAKE"][c])] for c in CIFAR10_CLASSES]
        rows.append(["all", *pair(shares["REAL"]["all"]), *pair(shares["FAKE"]["all"])])
        return ["class", "REAL centre", "REAL border", "FAKE centre", "FAKE border"], rows
    rows = [[name, *pair(value)] for name, value in shares["per_source"].items()]
    rows += [[f"all {label}", *pair(shares[label]["all"])] for label in ("REAL", "FAKE")]
    return ["source", "centre", "border"], rows


def claim_verdict(shares: dict, margin: float = 0.02) -> str:
    """One sentence on the study's claim, from the measured centre shares (even spread: 0.25)."""
    real, fake = shares["REAL"]["all"], shares["FAKE"]["all"]
    if real is None or fake is None:
        return "Every map of one label is empty (no map mass): the claim cannot be tested on this sample."
    below = [label for label, value in (("REAL", real), ("FAKE", fake)) if value < 0.25 - margin]
    measured = f"Measured centre share: REAL {real:.3f}, FAKE {fake:.3f} (border: {1 - real:.3f}, {1 - fake:.3f})."
    if len(below) == 2:
        return (f"{measured} Both lie below an even spread: on this sample the evidence sits in the border, "
                "as the study reports.")
    if below:
        return (f"{measured} Only {below[0]} lies below an even spread: on this sample the claim holds for "
                f"{below[0]} images alone.")
    lean = ", leaning towards the centre" if min(real, fake) > 0.25 else ""
    return (f"{measured} Neither lies below an even spread (0.25): the border holds no more than its share of the "
            "area, so on this sample the maps do not concentrate on the background as the study reports; they are "
            f"spread over the whole image{lean}.")


def _checked(checked: int, images: int) -> str:
    return f"all {images:,} images" if checked == images else f"a seeded subset of {checked:,} of the {images:,} images"


def _gap(faith: dict, curve: str) -> list:
    gap = faith.get(f"{curve}_gap")  # reports written before the gap was measured have none
    return [gap["mean"], gap["ci95"]] if gap else [None, None]


def _shape(topology: dict) -> str:
    if "conv_layers" in topology:  # the study's CNN
        dense = topology["dense"] or "none"
        return f"{topology['conv_layers']} conv layers x {topology['filters']} filters, dense {dense}"
    return topology_from_dict(topology).name


def build_report(summary: dict, figures: dict[str, Path], config: dict) -> Report:
    method = TITLES[summary.get("method", "gradcam")]
    layer = f" on layer `{summary['layer']}`" if summary.get("layer") else ""
    report = Report(f"{method} explanations and the study's claim")
    report.paragraph(
        f"Model `{summary['run']}` ({_shape(config['topology'])}); {summary['images']:,} `{summary['split']}` "
        f"images of `{summary['source']}` "
        f"({summary['per_label']['REAL']:,} REAL, {summary['per_label']['FAKE']:,} FAKE, a seeded sample), accuracy "
        f"on them {summary['accuracy_on_sample']:.4f}. {method}{layer} for the model's "
        f"verdict: for REAL it explains the logit, for FAKE the negative logit. {summary['seconds']} s in all.")
    report.heading("Examples")
    report.image(figures["grid"], f"Per CIFAR-10 class, REAL and FAKE examples with their {method} maps; green: "
                                  "right verdict, red: wrong.")
    report.heading("Where the evidence lies")
    size = summary.get("image_size", 32)
    report.paragraph(f"Regions: the centre is the central {size // 2}x{size // 2} square of the {size}x{size} image "
                     f"(pixels {size // 4}-{size - size // 4 - 1}, a quarter of its area), where the object mostly "
                     f"sits; the border is the {size // 4}-pixel frame around it. A map "
                     "spread evenly puts 0.25 of its mass in the centre. The study reports that the model looks at "
                     "small imperfections in the background rather than at the object: that predicts centre shares "
                     "below 0.25.")
    shares = summary["centre_share"]
    report.table(*_region_rows(shares))
    report.paragraph(f"Maps with no mass at all (zero everywhere after the positive part): "
                     f"{shares['empty_maps']:,}; they are left out of the shares.")
    report.paragraph(claim_verdict(shares))
    report.image(figures["centre"], "Share of map mass in the centre square, per class and label.")
    report.image(figures["mean"], "Mean map of the REAL and of the FAKE images.")
    report.heading("Faithfulness: deletion and insertion")
    faith = summary["faithfulness"]
    report.paragraph(f"On {_checked(faith['images'], summary['images'])}, pixels are replaced, in order of "
                     f"attribution, by a Gaussian-blurred copy of the image (sigma {faith['sigma']}), in "
                     f"{len(faith['fractions']) - 1} steps; the curve follows the probability of the model's verdict "
                     "for the image as given, the view the maps explain. Deletion: lower AUC is more faithful; "
                     "insertion: higher. The gap is the mean per-image difference between the two orders, with its "
                     "95 % interval: one that spans 0 tells the orders apart no better than chance.")
    report.table(["curve", f"{method} order AUC", "random order AUC", "gap", "gap 95 % +/-"],
                 [[c, faith[f"{c}_map"]["auc"], faith[f"{c}_random"]["auc"], *_gap(faith, c)]
                  for c in ("deletion", "insertion")])
    report.image(figures["faithfulness"], f"Deletion and insertion curves, {method} order against random order.")
    _sanity_section(report, summary)
    return report


def _sanity_section(report: Report, summary: dict) -> None:
    faith = summary["faithfulness"]
    report.heading("Sanity check: model randomisation (Adebayo et al., 2018)")
    sanity = summary["randomisation"]
    cascade = "" if sanity["cascading"] else (" The layer-by-layer cascade costs a set of maps per layer and was "
                                              "left out (--cascade runs it).")
    report.paragraph(f"Spearman rank correlation between each image's map from the trained model and from the same "
                     f"architecture with re-initialised weights, on {_checked(faith['images'], summary['images'])}. "
                     f"Low correlation means the maps depend on what the model learned, as they should.{cascade}")
    rows = [["all layers at once", sanity["full"]["mean"], sanity["full"]["median"], sanity["full"]["undefined"]]]
    rows += [[f"output down to {r['randomised_down_to']}", r["mean"], r["median"], r["undefined"]]
             for r in sanity["cascading"]]
    report.table(["weights re-initialised", "mean rho", "median rho", "undefined (constant map)"], rows)
