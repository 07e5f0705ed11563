"""The `cifake` command line: data, train, evaluate, explain, generate, predict, serve, search and more.

Thin: it parses, calls the library, prints.
"""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich import box
from rich.table import Column, Table

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="The `cifake` command line. Labels: REAL = 1 (positive), FAKE = 0.")
data_app = typer.Typer(no_args_is_help=True, help="Inspect and audit a CIFAKE source.")
app.add_typer(data_app, name="data")
console = Console(soft_wrap=True)  # never break file names across lines
err = Console(stderr=True, soft_wrap=True)

Source = Annotated[Path, typer.Argument(
    help="CIFAKE folder tree, zip, folder of split zips, or folder with REAL/ and FAKE/.")]
DataOption = Annotated[Path, typer.Option("--data", envvar="CIFAKE_DATA",
                                          help="CIFAKE source (default: $CIFAKE_DATA).")]
Cache = Annotated[Optional[Path], typer.Option("--cache", envvar="CIFAKE_CACHE",
                                               help="Cache folder for decoded images.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]


def main() -> None:
    app()


@contextmanager
def _user_errors():
    """A bad argument or file ends the command with its message on stderr and exit code 2, not a traceback."""
    try:
        yield
    except (ValueError, KeyError, FileNotFoundError) as exc:
        err.print(f"[red]error:[/] {exc.args[0] if isinstance(exc, KeyError) else exc}")
        raise typer.Exit(2) from None


@contextmanager
def _stoppable(how_to_resume: str):
    """Ctrl-C or a stop signal ends a long command with how to resume it and exit code 130, not a traceback."""
    from cifake.search.runner import SearchInterrupted

    try:
        yield
    except SearchInterrupted as exc:  # its message says how to resume
        err.print(f"[yellow]stopped:[/] {exc}")
        raise typer.Exit(130) from None
    except KeyboardInterrupt:
        err.print(f"[yellow]stopped:[/] interrupted. Finished work is kept; {how_to_resume}.")
        raise typer.Exit(130) from None


def _load(source: Path, cache: Path | None, quiet: bool, refresh: bool = False):
    from cifake.data import SourceError, load_dataset

    try:
        return load_dataset(source, cache_root=cache, refresh=refresh, progress=not quiet)
    except SourceError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None


@data_app.command("info")
def data_info(
    source: Source,
    cache: Cache = None,
    refresh: Annotated[bool, typer.Option(help="Decode again.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    quiet: Quiet = False,
) -> None:
    """Counts per split, label and CIFAR-10 class; skipped files with reasons; the cache location."""
    data = _load(source, cache, quiet, refresh)
    info = {
        "source": str(source), "cache": str(data.cache_dir), "converted_or_resized": data.converted,
        "splits": {name: images.counts() for name, images in data.splits.items()},
        "skipped": [{"name": s.name, "reason": s.reason} for s in data.skipped],
    }
    if as_json:
        print(json.dumps(info, indent=2))
        return
    from cifake.data import CIFAR10_CLASSES

    table = Table(title=f"{source}  (REAL = 1, positive; FAKE = 0)")
    for column in ("split", "label", "total", *CIFAR10_CLASSES):
        table.add_column(column, justify="right" if column not in ("split", "label") else "left")
    for split, counts in info["splits"].items():
        for label, row in counts.items():
            table.add_row(split, label, *(f"{row.get(c, 0):,}" for c in ("total", *CIFAR10_CLASSES)))
    console.print(table)
    unknown = sum(row.get("unknown", 0) for counts in info["splits"].values() for row in counts.values())
    if unknown:
        console.print(f"{unknown:,} images have no CIFAR-10 class in their name (class -1).")
    console.print(f"Converted or resized to 32x32 RGB: {data.converted:,}")
    console.print(f"Skipped files: {len(data.skipped):,}")
    for skipped in data.skipped:
        console.print(f"  {skipped.name}: {skipped.reason}", markup=False)
    console.print(f"Cache: {data.cache_dir}")


@data_app.command("audit")
def data_audit(
    source: Source,
    out: Annotated[Path, typer.Option(help="Folder for audit.json and audit.md.")] = Path("audit"),
    cache: Cache = None,
    quiet: Quiet = False,
) -> None:
    """Byte- and pixel-identical duplicates within and across splits (train/test leakage), as a report."""
    from cifake.data.audit import audit, write_audit

    data = _load(source, cache, quiet)
    report = audit(data)
    json_path, md_path = write_audit(report, out)
    console.print(md_path.read_text(), markup=False)
    console.print(f"Report: {md_path} and {json_path}")


@data_app.command("build")
def data_build(
    real: Annotated[Path, typer.Option(help="Source of REAL images (any layout; its REAL images are used).")],
    fake: Annotated[Path, typer.Option(help="Source of FAKE images, e.g. the output of `cifake generate`.")],
    out: Annotated[Path, typer.Option(help="New folder for the CIFAKE-layout dataset.")],
    test_fraction: Annotated[float, typer.Option(help="Share of each label (per class) put in test.")] = 1 / 6,
    seed: Annotated[int, typer.Option(help="Seed of the split.")] = 1,
) -> None:
    """Assemble train/test x REAL/FAKE in the CIFAKE layout from a real and a synthetic source."""
    from cifake.data import SourceError
    from cifake.data.build import build_dataset

    try:
        counts = build_dataset(real, fake, out, test_fraction, seed)
    except (SourceError, ValueError, FileExistsError) as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None
    for where, n in counts.items():
        console.print(f"{where}: {n:,}")
    console.print(f"Dataset: {out} (read it with `cifake data info {out}`)")


@app.command()
def generate(
    out: Annotated[Path, typer.Option(help="Output folder: FAKE/<CIFAKE name>.jpg and manifest.jsonl.")],
    classes: Annotated[Optional[str], typer.Option(
        help="Comma-separated class names (default: CIFAR-10's ten).")] = None,
    per_class: Annotated[int, typer.Option(help="Images per class.")] = 10,
    like: Annotated[Optional[Path], typer.Option(
        help="Take classes and counts from this labelled REAL source.")] = None,
    model: Annotated[str, typer.Option(
        help="Hugging Face model id or local diffusers folder.")] = "CompVis/stable-diffusion-v1-4",
    steps: Annotated[int, typer.Option(help="Denoising steps.")] = 50,
    scheduler: Annotated[str, typer.Option(
        help="euler-ancestral (the study's), euler, ddim, pndm, lms, dpm++.")] = "euler-ancestral",
    size: Annotated[int, typer.Option(help="Render size in pixels.")] = 512,
    out_size: Annotated[int, typer.Option(help="Saved size in pixels (bilinear resize).")] = 32,
    prompt_template: Annotated[str, typer.Option(
        help="Prompt; {label} and {article} (a/an) are filled in.")] = "a photograph of {article} {label}",
    seed: Annotated[int, typer.Option(help="Base seed; each image's seed derives from (seed, class, index).")] = 1,
    device: Annotated[str, typer.Option(help="cuda, cpu or mps.")] = "cpu",
    dtype: Annotated[str, typer.Option(help="fp16, bf16 or fp32.")] = "fp32",
    batch_size: Annotated[int, typer.Option(help="Images per pipeline call.")] = 4,
    keep_full_size: Annotated[bool, typer.Option(help="Also keep each full-size render as PNG.")] = False,
    shard: Annotated[str, typer.Option(help="i/n: make only shard i (from 0) of n, for several processes.")] = "0/1",
    ray_address: Annotated[Optional[str], typer.Option(
        envvar="RAY_ADDRESS", help="Fan shards out over this Ray cluster, one per GPU.")] = None,
    quiet: Quiet = False,
) -> None:
    """Render a CIFAKE-style synthetic twin with Stable Diffusion; reruns resume, shards split the work."""
    from cifake.generate import GenerateConfig, counts_like, parse_shard
    from cifake.generate.pipeline import WeightsNotFound, generate as run_generation

    try:
        names = [c.strip() for c in classes.split(",")] if classes else None
        counts: int | list[int] = per_class
        if like:
            names, counts = counts_like(like)
        config = GenerateConfig(out=str(out), per_class=counts, model=model, scheduler=scheduler, steps=steps,
                                size=size, out_size=out_size, prompt_template=prompt_template, seed=seed,
                                device=device, dtype=dtype, batch_size=batch_size, keep_full_size=keep_full_size,
                                shard=parse_shard(shard), **({"classes": names} if names else {}))
        config.counts()
        if ray_address:
            from cifake.generate.distributed import generate_on_ray

            summaries = generate_on_ray(config, ray_address)
            console.print(f"{sum(s['generated'] for s in summaries):,} images made by {len(summaries)} Ray shards")
            return
        summary = run_generation(config, progress=not quiet)
    except WeightsNotFound as exc:
        err.print(str(exc), markup=False)
        raise typer.Exit(2) from None
    except ValueError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None
    rate = f", {summary['images_per_second']} images/s" if summary.get("images_per_second") else ""
    console.print(f"{summary['generated']:,} made, {summary['skipped_existing']:,} already there "
                  f"({summary['planned']:,} in this shard){rate}. Output: {out}")


@app.command()
def train(
    data: DataOption,
    out: Annotated[Path, typer.Option(help="Run folder to write.")],
    topology: Annotated[Optional[str], typer.Option(
        help="Named topology: paper (2 conv x 32 filters, dense 64), or resnet-s / resnet / resnet-l.")] = None,
    filters: Annotated[Optional[int], typer.Option(help="Filters per conv layer.")] = None,
    conv_layers: Annotated[Optional[int], typer.Option(help="Number of conv layers.")] = None,
    dense: Annotated[Optional[str], typer.Option(help="Dense layer sizes, e.g. 64 or 128,64; 'none' for none.")] = None,
    epochs: Annotated[int, typer.Option(help="Maximum epochs.")] = 5,
    batch_size: Annotated[int, typer.Option(help="Batch size.")] = 64,
    learning_rate: Annotated[float, typer.Option("--lr", help="Adam learning rate.")] = 1e-3,
    patience: Annotated[int, typer.Option(help="Early-stopping patience in epochs (validation loss).")] = 2,
    val_fraction: Annotated[float, typer.Option(help="Share of train carved out for validation.")] = 0.1,
    limit: Annotated[Optional[int], typer.Option(help="At most N images per split and label (quick runs).")] = None,
    seed: Annotated[int, typer.Option(help="Seed for everything (the study used 1).")] = 1,
    bf16: Annotated[bool, typer.Option(help="bf16 autocast while training.")] = True,
    channels_last: Annotated[bool, typer.Option(help="channels_last memory format.")] = True,
    degrade: Annotated[float, typer.Option(
        help="Robust training: share of training images given a random JPEG / rescale / blur / noise "
             "degradation.")] = 0.0,
    optimizer: Annotated[str, typer.Option(help="adam (the study), adamw, or sgd (Nesterov momentum 0.9).")] = "adam",
    fused_adam: Annotated[bool, typer.Option(
        help="Adam/AdamW as one fused kernel (--no-fused-adam: multi-tensor).")] = True,
    weight_decay: Annotated[float, typer.Option(help="Weight decay.")] = 0.0,
    schedule: Annotated[str, typer.Option(
        help="constant, or onecycle (linear warm-up, then linear decay to 0).")] = "constant",
    warmup_epochs: Annotated[float, typer.Option(help="Warm-up length of the onecycle schedule, in epochs.")] = 0.0,
    label_smoothing: Annotated[float, typer.Option(help="Pull targets towards 0.5 by this much.")] = 0.0,
    ema: Annotated[float, typer.Option(help="Decay of a moving average of the weights (e.g. 0.999); 0: off.")] = 0.0,
    flip: Annotated[bool, typer.Option(help="Mirror a random half of each batch.")] = False,
    resume: Annotated[bool, typer.Option(help="Continue the run in --out from its last checkpoint.")] = False,
    cache: Cache = None,
    quiet: Quiet = False,
) -> None:
    """Train a CNN of the study's family, then evaluate it on validation and test."""
    from cifake.experiment import RunExists, train_run
    from cifake.models import resolve_topology
    from cifake.training import TrainConfig

    try:
        spec = resolve_topology(topology, filters, conv_layers, _parse_dense(dense))
        config = TrainConfig(epochs=epochs, batch_size=batch_size, learning_rate=learning_rate, patience=patience,
                             seed=seed, bf16=bf16, channels_last=channels_last, degrade=degrade, optimizer=optimizer,
                             weight_decay=weight_decay, schedule=schedule, warmup_epochs=warmup_epochs,
                             label_smoothing=label_smoothing, ema=ema, flip=flip, fused_adam=fused_adam)
        config.checks()
        dataset = _load(data, cache, quiet)
        console.print(f"Training {spec.name} on {data} -> {out}")
        with _stoppable("add --resume to the same command to continue from the last finished epoch"):
            result = train_run(data, out, spec, config, val_fraction=val_fraction, limit=limit, resume=resume,
                               progress=not quiet, data=dataset)
    except (ValueError, RunExists) as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None
    training = result["training"]
    console.print(f"Best epoch {training['best_epoch']} of {training['epochs_run']}; "
                  f"{training['train_images_per_second']:,.0f} training images/s; {result['seconds']:.1f} s")
    _print_metrics(result["metrics"])
    console.print(f"Run folder: {out}")


@app.command()
def evaluate(
    run_dir: Annotated[Path, typer.Argument(help="Run folder holding model.safetensors and config.json.")],
    data: DataOption,
    split: Annotated[str, typer.Option(help="Split to evaluate.")] = "test",
    exclude_leaked: Annotated[bool, typer.Option(help="Leave out test images that also occur in train.")] = False,
    out: Annotated[Optional[Path], typer.Option(help="Folder for the results (default: the run folder).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    cache: Cache = None,
    quiet: Quiet = False,
) -> None:
    """Evaluate a trained model on a split: the study's metrics (REAL positive) and more."""
    from cifake.experiment import evaluate_run

    dataset = _load(data, cache, quiet)
    with _user_errors():
        metrics = evaluate_run(run_dir, data, split, exclude_leaked, out, progress=not quiet, data=dataset)
    if as_json:
        print(json.dumps(metrics, indent=2))
        return
    if exclude_leaked:
        console.print(f"Left out {metrics['excluded_leaked']:,} leaked test images (pixel-identical to a train image).")
    _print_metrics({metrics["split"]: metrics})


@app.command()
def calibrate(
    run_dir: Annotated[Path, typer.Argument(help="Run folder holding model.safetensors and config.json.")],
    data: DataOption,
    max_real_flagged: Annotated[float, typer.Option(
        help="Target share of REAL images called FAKE (false accusations), on validation.")] = 0.01,
    max_fake_passed: Annotated[float, typer.Option(
        help="Target share of FAKE images called REAL, on validation.")] = 0.02,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    cache: Cache = None,
    quiet: Quiet = False,
) -> None:
    """Fit temperature scaling and REAL / UNSURE / FAKE thresholds on validation; store them in config.json."""
    from cifake.calibration.run import calibrate_run

    dataset = _load(data, cache, quiet)
    with _user_errors():
        report = calibrate_run(run_dir, data, max_real_flagged, max_fake_passed, progress=not quiet, data=dataset)
    if as_json:
        print(json.dumps(report, indent=2))
        return
    rule = report["decision"]
    band = (f", REAL below {rule['real_at']:.4g}, UNSURE between" if rule["real_at"] < rule["fake_at"]
            else ", else REAL (one threshold meets both targets: no unsure band)")
    console.print(f"Temperature {report['temperature']:.4f}; FAKE when P(FAKE) >= {rule['fake_at']:.4g}{band}")
    table = Table("split", "images", "ECE before", "ECE after", "unsure", "REAL called FAKE", "FAKE called REAL",
                  "accuracy when decided")
    for split in ("validation", "test", "test_without_leaked"):
        if split in report:
            row, outcome = report[split], report[split]["decision"]
            table.add_row(split, f"{row['images']:,}", f"{row['ece_before']:.4f}", f"{row['ece_after']:.4f}",
                          f"{outcome['unsure']:.2%}", f"{outcome['real_flagged_fake']:.2%}",
                          f"{outcome['fake_passed_real']:.2%}", f"{outcome['accuracy_when_decided']:.4f}")
    console.print(table)
    console.print(f"Stored in {run_dir / 'config.json'}; report {run_dir / 'calibration.json'}, "
                  f"diagram {run_dir / 'reliability.png'}")


@app.command()
def robustness(
    run_dir: Annotated[Path, typer.Argument(help="Run folder holding model.safetensors and config.json.")],
    data: DataOption,
    out: Annotated[Optional[Path], typer.Option(
        help="Folder for the table, plot and report (default: RUN_DIR/robustness).")] = None,
    condition: Annotated[Optional[list[str]], typer.Option(
        help="A condition to run (repeatable; default: all).")] = None,
    limit: Annotated[Optional[int], typer.Option(help="Test images per label (default: all).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    cache: Cache = None,
    quiet: Quiet = False,
) -> None:
    """Accuracy and ROC-AUC under JPEG re-compression, down-then-up scaling, blur and noise."""
    from cifake.robustness import evaluate_robustness

    dataset = _load(data, cache, quiet)
    folder = out or run_dir / "robustness"
    with _user_errors():
        result = evaluate_robustness(run_dir, data, folder, condition, limit, progress=not quiet, data=dataset)
    if as_json:
        print(json.dumps(result, indent=2))
        return
    table = Table("condition", "accuracy", "ROC-AUC", "REAL recall", "FAKE recall", "accuracy w/o leaked",
                  "ROC-AUC w/o leaked", title=f"{result['images']:,} test images")
    shown = ("accuracy", "roc_auc", "recall_real", "recall_fake", "accuracy_without_leaked", "roc_auc_without_leaked")
    for row in result["rows"]:
        table.add_row(row["condition"], *(f"{row[k]:.4f}" for k in shown))
    console.print(table)
    console.print(f"Report: {folder / 'robustness.md'}, {folder / 'robustness.html'}; plot {folder / 'robustness.png'}")


@app.command()
def explain(
    run_dir: Annotated[Path, typer.Argument(help="Run folder holding model.safetensors and config.json.")],
    images: Annotated[Optional[list[Path]], typer.Argument(help="Image files or folders to explain.")] = None,
    out: Annotated[Path, typer.Option(help="Folder for overlays, figures and the report.")] = Path("explain"),
    data: Annotated[Optional[Path], typer.Option("--data", help="Explain a dataset split instead of files.")] = None,
    split: Annotated[str, typer.Option(help="Split of --data.")] = "test",
    per_class: Annotated[int, typer.Option(help="Examples per class and label in the grid figure.")] = 3,
    sample: Annotated[int, typer.Option(help="Images per label analysed (seeded sample).")] = 1000,
    layer: Annotated[Optional[str], typer.Option(help="Layer for Grad-CAM (default: the last conv's ReLU).")] = None,
    target: Annotated[str, typer.Option(help="Explain the 'predicted' label, or 'REAL' or 'FAKE'.")] = "predicted",
    cache: Cache = None,
    quiet: Quiet = False,
) -> None:
    """Grad-CAM: overlays for image files, or figures and a measured report over a dataset split."""
    from cifake.explain.run import explain_dataset, explain_files

    if bool(images) == bool(data):
        err.print("[red]error:[/] give image files, or --data SOURCE, not both or neither")
        raise typer.Exit(2)
    with _user_errors():
        if data:
            dataset = _load(data, cache, quiet)
            summary = explain_dataset(run_dir, data, out, split, sample, per_class, layer, progress=not quiet,
                                      data=dataset)
            shares = summary["centre_share"]
            console.print(f"{summary['images']:,} images in {summary['seconds']} s; centre share of map mass "
                          f"REAL {shares['REAL']['all']:.3f}, FAKE {shares['FAKE']['all']:.3f} (even spread 0.25)")
            console.print(f"Report: {out / 'explain.md'} and {out / 'explain.html'}")
            return
        explained = explain_files(run_dir, images, out, layer, target)
    for result in explained.results:
        console.print(f"{result['path']}: {result['verdict']} (P(FAKE) {result['prob_fake']:.3f}) -> "
                      f"{out / result['overlay']}", markup=False)
    for path, reason in explained.failures:
        err.print(f"{path}: {reason}", markup=False)
    if explained.failures:
        raise typer.Exit(1)


@app.command()
def predict(
    paths: Annotated[list[str], typer.Argument(help="Image files, folders (searched recursively) or glob patterns.")],
    model: Annotated[Optional[Path], typer.Option(
        help="Run folder of a trained model (default: the bundled one).")] = None,
    threshold: Annotated[Optional[float], typer.Option(
        help="Call an image FAKE when P(FAKE) >= this, else REAL (default: the model's calibrated decision, "
             "which may say UNSURE).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON lines, one per image.")] = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="Print CSV.")] = False,
    backend: Annotated[str, typer.Option(help="auto (onnxruntime when installed), onnx or torch.")] = "auto",
    explain_dir: Annotated[Optional[Path], typer.Option(
        "--explain", help="Write Grad-CAM overlays into this folder.")] = None,
) -> None:
    """Is each image real or AI-generated? Bad files are named on stderr; the exit code is 1 if any failed."""
    import csv

    from cifake.predict import Detector, expand_paths

    try:
        detector = Detector.load(model, backend)
        results = detector.iter_predict(expand_paths(paths), threshold)
        failed = 0
        table = None if as_json or as_csv else Table(title=f"model {detector.model_id}; {_rule(detector, threshold)}")
        writer = None
        if table is not None:
            for column in ("path", "P(FAKE)", "verdict"):
                table.add_column(column, justify="right" if column == "P(FAKE)" else "left")
        if as_csv:
            writer = csv.DictWriter(sys.stdout, ["path", "prob_fake", "verdict", "threshold", "real_below", "model_id"])
            writer.writeheader()
        explained: list[str] = []
        for result in results:
            if result.error:
                failed += 1
                err.print(f"{result.source}: {result.error}", markup=False, highlight=False)
                continue
            row = {"path": result.source, "prob_fake": round(result.prob_fake, 6), "verdict": result.verdict,
                   "threshold": result.threshold, "real_below": result.real_below, "model_id": result.model_id}
            if as_json:
                print(json.dumps(row), flush=False)
            elif writer:
                writer.writerow(row)
            else:
                table.add_row(result.source, f"{result.prob_fake:.4f}", result.verdict)
            if explain_dir:
                explained.append(result.source)
    except ValueError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None
    if table is not None:
        console.print(table)
    if explain_dir and explained:
        from cifake.explain.run import explain_files

        explain_files(model or _bundled(), [Path(p) for p in explained], explain_dir)
        err.print(f"Grad-CAM overlays: {explain_dir}")
    if failed:
        raise typer.Exit(1)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
    model: Annotated[Optional[Path], typer.Option(
        help="Run folder of a trained model (default: the bundled one).")] = None,
    max_file_mb: Annotated[float, typer.Option(help="Largest upload, in MB.")] = 20,
    max_pixels: Annotated[int, typer.Option(
        help="Largest image, in pixels (decompression bombs are refused).")] = 40_000_000,
    max_files: Annotated[int, typer.Option(help="Most files per request.")] = 64,
    backend: Annotated[str, typer.Option(help="auto (onnxruntime when installed), onnx or torch.")] = "auto",
) -> None:
    """Serve the REST API (/v1/predict, /v1/explain, /v1/model, /healthz, /docs) and the web page at /."""
    import uvicorn

    from cifake.predict import Detector
    from cifake.serve import Limits, create_app

    limits = Limits(max_file_bytes=int(max_file_mb * 1024 * 1024), max_pixels=max_pixels, max_files=max_files)
    try:
        detector = Detector.load(model, backend)
    except (ValueError, FileNotFoundError) as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None
    application = create_app(detector, limits, model)
    console.print(f"cifake serving on http://{host}:{port}/ (API docs at /docs), scoring with {detector.backend}")
    uvicorn.run(application, host=host, port=port, log_level="warning")


@app.command()
def export(
    run_dir: Annotated[Path, typer.Argument(help="Run folder holding model.safetensors and config.json.")],
    onnx: Annotated[Path, typer.Option("--onnx", help="Where to write the ONNX model (e.g. RUN_DIR/model.onnx).")],
) -> None:
    """Export a model to ONNX: uint8 (N, 32, 32, 3) pixels in, one logit per image out (sigmoid = P(REAL))."""
    from cifake.models.export import export_onnx

    try:
        path = export_onnx(run_dir, onnx)
    except (ValueError, FileNotFoundError) as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None
    except ImportError as exc:
        err.print(f"[red]error:[/] export needs onnx and onnxscript ({exc}): pip install 'cifake[onnx]'")
        raise typer.Exit(2) from None
    console.print(f"Wrote {path} ({path.stat().st_size:,} bytes); predict and serve use a folder's model.onnx "
                  "when it matches the weights")


def _ints(text: str | None) -> tuple[int, ...] | None:
    return None if text is None else tuple(int(part) for part in text.split(","))


@app.command()
def search(
    data: DataOption,
    out: Annotated[Path, typer.Option(help="Search folder: trials/*.json, models, search.json.")],
    profile: Annotated[str, typer.Option(help="quick (reduced budget) or paper (the full protocol).")] = "paper",
    filters: Annotated[Optional[str], typer.Option(help="Stage-1 filters, e.g. 16,32,64,128.")] = None,
    conv_layers: Annotated[Optional[str], typer.Option(help="Stage-1 conv layers, e.g. 1,2,3.")] = None,
    dense_units: Annotated[Optional[str], typer.Option(help="Stage-2 units, e.g. 32,64,...,4096.")] = None,
    dense_layers: Annotated[Optional[str], typer.Option(help="Stage-2 dense layers, e.g. 1,2,3.")] = None,
    epochs: Annotated[Optional[int], typer.Option(help="Maximum epochs per trial.")] = None,
    patience: Annotated[Optional[int], typer.Option(help="Early-stopping patience per trial.")] = None,
    limit: Annotated[Optional[int], typer.Option(
        help="Images per label (data fraction); default: the profile's.")] = None,
    ray: Annotated[bool, typer.Option("--ray/--no-ray", help="Run trials through Ray Tune, or in-process.")] = True,
    ray_address: Annotated[Optional[str], typer.Option(
        envvar="RAY_ADDRESS", help="Existing Ray cluster to use.")] = None,
    threads_per_trial: Annotated[int, typer.Option(
        help="Torch threads per trial; trials run cores/threads at once.")] = 1,
    stages: Annotated[int, typer.Option(help="1: feature extractors only; 2: then the dense heads.")] = 2,
    quiet: Quiet = False,
) -> None:
    """The study's search: 12 feature extractors, then dense heads on the best; resumable, Ray-distributed."""
    from dataclasses import replace

    from cifake.search import PROFILES, run_search

    try:
        space, budget = PROFILES[profile]
    except KeyError:
        err.print(f"[red]error:[/] unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
        raise typer.Exit(2) from None
    space = replace(space, **{k: v for k, v in (("filters", _ints(filters)), ("conv_layers", _ints(conv_layers)),
                                                ("dense_units", _ints(dense_units)),
                                                ("dense_layers", _ints(dense_layers))) if v})
    budget = replace(budget, **{k: v for k, v in (("epochs", epochs), ("patience", patience),
                                                  ("limit_per_label", limit)) if v is not None})
    with _user_errors(), _stoppable("run the same command again to resume"):
        summary = run_search(data, out, space, budget, use_ray=ray, ray_address=ray_address,
                             threads_per_trial=threads_per_trial, progress=not quiet, stages=stages)
    from cifake.search.tables import markdown_table, stage1_rows, within

    console.print(markdown_table(*stage1_rows(summary["stage1"], "accuracy")), markup=False)
    close, compared = within(summary["stage1"])
    console.print(f"Best extractor {summary['best_extractor']}; best searched {summary['best']} (validation loss). "
                  f"Stage-1 test accuracy within 1 point of the paper in {close} of {compared} cells.")


@app.command("search-status")
def search_status(
    folder: Annotated[Path, typer.Argument(help="A search folder (cifake search --out) or a reproduce report folder.")],
    concurrency: Annotated[Optional[int], typer.Option(help="Trials run at once, for the wall-time estimate "
                                                               "(default: this machine's cores).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the status as JSON.")] = False,
) -> None:
    """Where a search stands (safe while it runs): finished, started and waiting trials, and time left."""
    from dataclasses import asdict

    from cifake.data.dataset import available_cores
    from cifake.search.status import search_status as read_status

    with _user_errors():
        status = read_status(folder)
    if as_json:
        trials = [asdict(t) for t in status.trials]
        console.print_json(json.dumps({"folder": str(status.folder), "trials": trials, "total": status.total,
                                       "heads_waiting_for_stage1": status.heads_waiting_for_stage1,
                                       "seconds_left": round(status.seconds_left, 1),
                                       "wall_seconds": round(status.wall_seconds, 1),
                                       "untimed_epochs": status.untimed_epochs}))
        return
    headers = ("trial", "stage", "state", "epochs", "val loss", "time", "test acc")
    table = Table(*(Column(h, no_wrap=True) for h in headers), box=box.SIMPLE_HEAD, pad_edge=False)
    for t in status.trials:
        table.add_row(t.name, str(t.stage), t.state, f"{t.epochs}/{status.budget.epochs}",
                      "-" if t.best_val_loss is None else f"{t.best_val_loss:.4f}",
                      _duration(t.seconds) if t.seconds else "-",
                      "-" if t.test_accuracy is None else f"{t.test_accuracy:.4f}")
    console.print(table)
    at_once = concurrency or available_cores()
    waiting = f"; {status.heads_waiting_for_stage1} dense heads wait for stage 1 (not in the estimate)" \
        if status.heads_waiting_for_stage1 else ""
    console.print(f"{status.count('finished')} of {status.total} trials finished, {status.count('started')} started"
                  f"{waiting}. Time left: about {_duration(status.seconds_left)} of trial time, "
                  f"{_duration(status.seconds_left / at_once)} with {at_once} at once (a rough estimate).")
    if status.wall_seconds:
        untimed = f"; {status.untimed_epochs} epochs from before clock times were recorded are not counted" \
            if status.untimed_epochs else ""
        console.print(f"Wall time so far: {_duration(status.wall_seconds)} with at least one epoch running, over "
                      f"every run of the search{untimed}.")


def _duration(seconds: float) -> str:
    minutes = round(seconds / 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m"


@app.command()
def reproduce(
    data: DataOption,
    out: Annotated[Path, typer.Option(help="Report folder.")] = Path("reports/reproduce"),
    profile: Annotated[str, typer.Option(help="quick (<= 15 min on 2 cores) or paper (the full protocol).")] = "quick",
    ray: Annotated[bool, typer.Option("--ray/--no-ray", help="Run trials through Ray Tune, or in-process.")] = True,
    ray_address: Annotated[Optional[str], typer.Option(
        envvar="RAY_ADDRESS", help="Existing Ray cluster to use.")] = None,
    quiet: Quiet = False,
) -> None:
    """The whole study: audit, search, best model on test (with and without leaks), Grad-CAM, one report."""
    from cifake.search.reproduce import reproduce as run_reproduce

    with _user_errors(), _stoppable("run the same command again to resume"):
        result = run_reproduce(data, out, profile, use_ray=ray, ray_address=ray_address, progress=not quiet)
    close, compared = result["within_1_point"]
    console.print(f"Best model {result['best']}: test accuracy {result['test']['accuracy']:.4f} "
                  f"({result['test_without_leaked']['accuracy']:.4f} without leaked duplicates); stage-1 accuracy "
                  f"within 1 point of the paper in {close} of {compared} cells; {result['seconds']:,.0f} s.")
    console.print(f"Report: {out / 'report.md'} and {out / 'report.html'}")


def _bundled() -> Path:
    from cifake.predict import bundled_model_dir

    return bundled_model_dir()


def _rule(detector, threshold: float | None) -> str:
    if threshold is not None:
        return f"FAKE when P(FAKE) >= {threshold}"
    rule = detector.decision
    if rule.real_at == rule.fake_at:
        return f"FAKE when P(FAKE) >= {rule.fake_at:.4g}"
    return f"FAKE when P(FAKE) >= {rule.fake_at:.4g}, REAL below {rule.real_at:.4g}, UNSURE between"


def _parse_dense(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    if text.strip().lower() in ("", "none", "0"):
        return ()
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise ValueError(f"--dense takes sizes like 64 or 128,64 or 'none', not {text!r}") from None


def _print_metrics(by_split: dict[str, dict]) -> None:
    table = Table(title="Metrics (REAL = positive class, as in the study)")
    table.add_column("metric")
    for split in by_split:
        table.add_column(split, justify="right")
    keys = ("n", "accuracy", "loss", "precision", "recall", "f1", "roc_auc", "average_precision",
            "fake_precision", "fake_recall", "fake_f1")
    for key in keys:
        table.add_row(key, *(_fmt(metrics.get(key)) for metrics in by_split.values()))
    console.print(table)
    for split, metrics in by_split.items():
        (tn, fp), (fn, tp) = metrics["confusion_matrix"]["matrix"]
        console.print(f"{split} confusion matrix: true FAKE -> {tn:,} FAKE, {fp:,} REAL; "
                      f"true REAL -> {fn:,} FAKE, {tp:,} REAL")


def _fmt(value) -> str:
    if value is None:
        return "-"
    return f"{value:,}" if isinstance(value, int) else f"{value:.4f}"


if __name__ == "__main__":
    sys.exit(main())
