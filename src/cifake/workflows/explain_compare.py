"""The study's question asked of several models at once: every explanation method that applies to each model, on
the same seeded images, with where the evidence lies, how faithful and how sane each map is, and how far the
models' maps agree. `cifake explain CNN --data D --compare VIT` writes it; `reproduce --with-vit` includes it."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import numpy as np
import torch

from cifake.data import CifakeData
from cifake.devices import describe, resolve_device
from cifake.explain.analysis import CHECKS, checked_subset, rank_correlation, region_table, run_checks
from cifake.explain.figures import side_by_side_figure
from cifake.explain.methods import METHODS, TITLES, make_method
from cifake.explain.rollout import attention_modules
from cifake.files import write_json
from cifake.models import load_model
from cifake.models.inference import predict_logits
from cifake.report import Report
from cifake.workflows.experiment import evaluation_images
from cifake.workflows.explain_report import training_seed


def methods_for(model: torch.nn.Module) -> list[str]:
    """The methods that apply to a model: all four to a transformer, Grad-CAM and Integrated Gradients to a CNN."""
    return [m for m in METHODS if "rollout" not in m or attention_modules(model)]


def compare_explanations(runs: list[str | os.PathLike], data: CifakeData, out: str | os.PathLike,
                         split: str = "test", sample_per_label: int = 250, seed: int | None = None,
                         device: str | torch.device = "auto", examples: int = 3, checks: int = CHECKS) -> dict:
    """Each applicable method of each model over the same seeded sample of a split (the first model's seed by
    default): centre shares, deletion/insertion and the randomisation check (all layers at once) on a seeded
    subset of `checks` of its images, the rank correlation between every two models' maps, and a side-by-side
    figure; a report in `out`."""
    started = time.perf_counter()
    device = resolve_device(device)
    folder = Path(out)
    columns: dict[str, np.ndarray] = {}
    models, names, images = [], [], None
    for run in runs:
        model, config = load_model(run, device)
        seed = training_seed(config) if seed is None else seed
        chosen = evaluation_images(config, data, split)[0].limit(sample_per_label, seed).in_memory()
        if images is not None and list(chosen.names) != list(images.names):
            raise ValueError(f"{run}: its sample holds other images than {runs[0]}'s (other input sizes or "
                             "sources): the maps could not be compared image by image")
        images = chosen
        models.append({"run": str(run), "topology": config["topology"], "methods": {}})
        names.append(Path(run).name if Path(run).name not in names else str(run))  # columns are keyed by it
        logits = predict_logits(model, images.images)
        models[-1]["accuracy_on_sample"] = float(((logits > 0) == (images.labels == 1)).mean())
        for method in methods_for(model):
            models[-1]["methods"][method], columns[f"{names[-1]}: {TITLES[method]}"] = _measure(
                model, method, images, seed, checks)
    folder.mkdir(parents=True, exist_ok=True)
    summary = {
        "split": split, "source": data.source, "images": len(images), "seed": seed,
        "checked_images": len(checked_subset(len(images), checks, seed)),
        "sample_sha256": hashlib.sha256("\n".join(images.names).encode()).hexdigest(),
        "models": models, "agreement": _agreement(columns), **describe(device),
    }
    figure = side_by_side_figure(images.images, columns, images.labels,
                                 _examples(images.labels, examples, seed), folder / "side_by_side.png")
    summary["seconds"] = round(time.perf_counter() - started, 1)
    write_json(folder / "compare.json", summary)
    build_comparison(summary, figure).write(folder, "compare")
    return summary


def _measure(model, method: str, images, seed: int, checks: int) -> tuple[dict, np.ndarray]:
    started = time.perf_counter()
    maps, targets = make_method(method, model)(images.images, "predicted")
    map_seconds = time.perf_counter() - started
    regions = region_table(maps, images.labels, images.classes)
    faithful, sanity = run_checks(model, images.images, maps, targets, lambda m: make_method(method, m),
                                  passes_per_map=1, seed=seed, checks=checks, cascade=False)
    return {"centre_share": {k: regions[k]["all"] for k in ("REAL", "FAKE")}, "empty_maps": regions["empty_maps"],
            "deletion": {o: faithful[f"deletion_{o}"]["auc"] for o in ("map", "random")},
            "insertion": {o: faithful[f"insertion_{o}"]["auc"] for o in ("map", "random")},
            "gaps": {c: faithful[f"{c}_gap"] for c in ("deletion", "insertion")},
            "randomisation_rho": sanity["full"]["mean"],
            "map_seconds": round(map_seconds, 1)}, maps


def _agreement(columns: dict[str, np.ndarray]) -> list[dict]:
    """Mean and median Spearman rho, image by image, between every two maps of different models."""
    rows = []
    titles = list(columns)
    for i, a in enumerate(titles):
        for b in titles[i + 1:]:
            if a.split(":")[0] == b.split(":")[0]:
                continue
            rho = rank_correlation(columns[a], columns[b])
            valid = rho[~np.isnan(rho)]
            rows.append({"a": a, "b": b, "mean": float(valid.mean()) if len(valid) else None,
                         "median": float(np.median(valid)) if len(valid) else None,
                         "undefined": int(np.isnan(rho).sum())})
    return rows


def _examples(labels: np.ndarray, per_label: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.choice(np.flatnonzero(labels == label), min(per_label, int((labels == label).sum())),
                                      replace=False) for label in (1, 0)])


def build_comparison(summary: dict, figure: Path) -> Report:
    report = Report("Where the models look: explanation methods side by side")
    checked = summary.get("checked_images", summary["images"])
    report.paragraph(f"{summary['images']:,} `{summary['split']}` images of `{summary['source']}` (a seeded sample, "
                     f"seed {summary['seed']}), the same for every model; each map explains the model's verdict. "
                     f"Faithfulness and the randomisation check use {checked:,} of them (a seeded subset). "
                     f"{summary['seconds']} s in all.")
    report.image(figure, "The same images under each model's maps (the study's Figure 7, for every method).")
    rows = []
    for model in summary["models"]:
        for method, m in model["methods"].items():
            rows.append([Path(model["run"]).name, TITLES[method], m["centre_share"]["REAL"], m["centre_share"]["FAKE"],
                         m["deletion"]["map"], m["deletion"]["random"], m["insertion"]["map"],
                         m["insertion"]["random"], m["randomisation_rho"], m["map_seconds"]])
    report.heading("Where the evidence lies, how faithful, how sane")
    report.paragraph("Centre share: the share of map mass in the central square (even spread 0.25; the study's "
                     "claim predicts less). Deletion AUC: lower is more faithful; insertion AUC: higher; each "
                     "beside the same curve in a random pixel order. Randomisation rho: the rank correlation of "
                     "the maps with those of the same model re-initialised (low: the maps depend on the weights).")
    report.table(["model", "method", "centre REAL", "centre FAKE", "deletion", "random", "insertion", "random",
                  "randomisation rho", "maps s"], rows)
    report.heading("Do the models agree?")
    report.table(["map", "against", "mean rho", "median rho", "undefined"],
                 [[r["a"], r["b"], r["mean"], r["median"], r["undefined"]] for r in summary["agreement"]])
    return report
