"""`cifake predict | explain`: is each image real or AI-generated, and why."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from cifake.calibration.decision import OUT_OF_DOMAIN
from cifake.choices import EXPLAIN_CHECKS, EXPLANATIONS, TARGETS
from cifake.cli.common import (BackendOption, Cache, DeviceOption, ModelDir, Quiet, app, choice, console, err, fmt,
                               load_for_model, print_table, use_device, value)

Target = choice("Target", TARGETS)
Method = choice("Method", EXPLANATIONS)
PREDICTION_FIELDS = ["path", "prob_fake", "verdict", "threshold", "real_below", "model_id", "upscaled",
                     "domain_score", "in_domain"]


@app.command()
def predict(
    paths: Annotated[list[str], typer.Argument(help="Image files, folders (searched recursively) or glob patterns.")],
    model: ModelDir = None,
    threshold: Annotated[Optional[float], typer.Option(
        min=0, max=1, help="Call an image FAKE when P(FAKE) >= this, else REAL (default: the model's calibrated "
                           "decision, which may say UNSURE).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON lines, one per image.")] = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="Print CSV.")] = False,
    backend: BackendOption = "auto",
    device: DeviceOption = "auto",
    explain_dir: Annotated[Optional[Path], typer.Option(
        "--explain", help="Write Grad-CAM overlays into this folder.")] = None,
    ray_address: Annotated[Optional[str], typer.Option(
        help="Score on a Ray cluster with Ray Data (HOST:PORT, ray://HOST:PORT, auto, or local for a Ray instance "
             "on this machine); files and model on storage every node sees.")] = None,
    actors: Annotated[Optional[int], typer.Option(
        min=1, help="Scoring actors with --ray-address (default: one per CPU of the cluster).")] = None,
) -> None:
    """Is each image real or AI-generated? Bad files are named on stderr; the exit code is 1 if any failed."""
    from cifake.predict import expand_paths

    detector = detector_for(model, value(backend), device)
    results = _predictions(detector, expand_paths(paths), threshold, explain_dir, ray_address, model, actors)
    rows, failed = [], 0
    writer = csv.DictWriter(sys.stdout, PREDICTION_FIELDS) if as_csv else None
    if writer:
        writer.writeheader()
    for result in results:
        if result.error:
            failed += 1
            err.print(f"{result.source}: {result.error}", markup=False, highlight=False)
            continue
        row = {"path": result.source, "prob_fake": round(result.prob_fake, 6), **{
            k: getattr(result, k) for k in PREDICTION_FIELDS[2:]}}
        if as_json:
            print(json.dumps(row))
        elif writer:
            writer.writerow(row)
        else:
            rows.append([result.source, result.prob_fake, result.verdict + ("*" if result.upscaled else ""),
                         *([_domain_cell(result)] if detector.domain else [])])
    if not (as_json or as_csv):
        _print_predictions(detector, rows, threshold)
    if explain_dir:
        err.print(f"Grad-CAM overlays: {explain_dir}")
    if failed:
        raise typer.Exit(1)


def _print_predictions(detector, rows: list[list], threshold: float | None) -> None:
    header = ["path", "P(FAKE)", "verdict", *(["domain"] if detector.domain else [])]
    print_table(header, rows, f"model {detector.model_id}; {_rule(detector, threshold)}")
    if any(row[2].endswith("*") for row in rows):
        console.print(f"* smaller than the model's {detector.preprocess.size} px crop: enlarged to fit")
    if any(row[2].startswith(OUT_OF_DOMAIN) for row in rows):
        console.print(f"{OUT_OF_DOMAIN}: unlike every image the model was trained on (domain score above 1, or a "
                      f"size no training file had: {detector.domain.describe_size()}); its P(FAKE) is a guess")


def _domain_cell(result) -> str:
    """The domain score; `size` when the features are in domain but the file's size is not."""
    return f"{result.domain_score:.3f}" + (" size" if not result.in_domain and result.domain_score <= 1 else "")


def _predictions(detector, files, threshold, explain_dir, ray_address, model, actors):
    """The predictions `cifake predict` prints: here (in chunks: bounded memory), here with Grad-CAM overlays
    (each image decoded and scored once, so the overlays' scores are the printed ones), or on Ray."""
    if ray_address:
        if explain_dir:
            raise ValueError("--explain runs here, not on Ray: leave out --ray-address to write overlays")
        from cifake.predict.bulk import predict_on_ray

        return predict_on_ray(files, ray_address, str(model) if model else None, detector.backend, threshold, actors)
    if explain_dir:
        from cifake.workflows.explain_report import explain_files  # here: captum and matplotlib cost 1.1 s of start-up

        return explain_files(detector, files, explain_dir, threshold=threshold).predictions
    return detector.iter_predict(files, threshold)


def detector_for(model: Path | None, backend: str, device: str):
    """The Detector of a command, its device said on stderr (onnxruntime scores on the CPU)."""
    from cifake.predict import Detector

    detector = Detector.load(model, backend, device)
    use_device(detector.device)
    return detector


def _rule(detector, threshold: float | None) -> str:
    if threshold is not None:
        return f"FAKE when P(FAKE) >= {threshold}"
    rule = detector.decision
    if rule.real_at == rule.fake_at:
        return f"FAKE when P(FAKE) >= {rule.fake_at:.4g}"
    return f"FAKE when P(FAKE) >= {rule.fake_at:.4g}, REAL below {rule.real_at:.4g}, UNSURE between"


@app.command()
def explain(
    run_dir: Annotated[Path, typer.Argument(help="Run folder holding model.safetensors and config.json.")],
    images: Annotated[Optional[list[Path]], typer.Argument(help="Image files or folders to explain.")] = None,
    out: Annotated[Path, typer.Option(help="Folder for overlays, figures and the report.")] = Path("explain"),
    data: Annotated[Optional[Path], typer.Option("--data", help="Explain a dataset split instead of files.")] = None,
    split: Annotated[str, typer.Option(help="Split of --data.")] = "test",
    per_class: Annotated[int, typer.Option(help="Examples per class and label in the grid figure.")] = 3,
    sample: Annotated[int, typer.Option(help="Images per label analysed (seeded sample).")] = 1000,
    checks: Annotated[Optional[int], typer.Option(help=(
        "Images of the sample (a seeded subset) for the faithfulness and randomisation checks, which cost about 60 "
        f"and 2-12 model passes an image (default {EXPLAIN_CHECKS}; {EXPLAIN_CHECKS // 2} for ig: 16 a map)."))] = None,
    cascade: Annotated[Optional[bool], typer.Option(
        "--cascade/--no-cascade", help="The randomisation check layer by layer, a set of maps per layer (default: "
                                       "for every method but ig, whose maps cost 16 passes).")] = None,
    seed: Annotated[Optional[int], typer.Option(
        help="Seed of the sample and of the analysis (default: the seed the model was trained with, or 1).")] = None,
    layer: Annotated[Optional[str], typer.Option(help="Layer for Grad-CAM (default: the last conv's ReLU; an "
                                                      "ensemble's: every member's, comma-separated).")] = None,
    target: Annotated[Target, typer.Option(help="What the maps explain: the predicted label, REAL or FAKE.")
                      ] = "predicted",
    compare: Annotated[Optional[list[Path]], typer.Option(
        help="With --data: other run folders (e.g. a transformer) explained on the same images, every method that "
             "applies to each, side by side in one report (compare.md).")] = None,
    method: Annotated[Method, typer.Option(
        help="gradcam (any family; a transformer's patch-token map), rollout or grad-rollout (attention rollout, "
             "plain or gradient-weighted: transformers only), ig (Integrated Gradients, any family).")] = "gradcam",
    device: DeviceOption = "auto",
    cache: Cache = None,
    quiet: Quiet = False,
) -> None:
    """Explanations (Grad-CAM by default): overlays for image files, or figures and a measured report over a
    dataset split."""
    from cifake.predict import expand_paths
    from cifake.workflows.explain_report import explain_dataset, explain_files

    if compare and not data:
        raise ValueError("--compare explains a dataset split: give --data SOURCE")
    if bool(images) == bool(data):
        raise ValueError("give image files, or --data SOURCE, not both or neither")
    if data:
        device = use_device(device)  # a missing device is named before any data is read
        source = load_for_model(data, cache, quiet, run_dir)
        if compare:
            return _compare([run_dir, *compare], source, out, split, sample, seed, device, checks)
        summary = explain_dataset(run_dir, source, out, split, sample, per_class, layer, seed, device=device,
                                  method=value(method), checks=checks, cascade=cascade)
        return _explained_dataset(summary, out)
    _explained_files(explain_files(detector_for(run_dir, "torch", device), expand_paths(images), out, layer,
                                   value(target), method=value(method)), out)


def _compare(runs: list[Path], data, out: Path, split: str, sample: int, seed: int | None, device,
             checks: int | None) -> None:
    from cifake.workflows.explain_compare import compare_explanations

    checks = EXPLAIN_CHECKS if checks is None else checks  # every method alike: one subset for the comparison
    summary = compare_explanations(runs, data, out, split, sample, seed, device, checks=checks)
    console.print(f"{summary['images']:,} images, {len(summary['models'])} models in {summary['seconds']} s")
    console.print(f"Report: {out / 'compare.md'} and {out / 'compare.html'}")


def _explained_dataset(summary: dict, out: Path) -> None:
    shares = summary["centre_share"]
    console.print(f"{summary['images']:,} images in {summary['seconds']} s; centre share of map mass "
                  f"REAL {fmt(shares['REAL']['all'])}, FAKE {fmt(shares['FAKE']['all'])} (even spread 0.25; "
                  "- where every map is empty)")
    console.print(f"Report: {out / 'explain.md'} and {out / 'explain.html'}")


def _explained_files(explained, out: Path) -> None:
    for result in explained.results:
        console.print(f"{result['path']}: {result['verdict']} (P(FAKE) {result['prob_fake']:.3f}) -> "
                      f"{out / result['overlay']}", markup=False)
    for path, reason in explained.failures:
        err.print(f"{path}: {reason}", markup=False)
    if explained.failures:
        raise typer.Exit(1)
