"""`cifake train | evaluate | calibrate | robustness | export | ensemble`: a run folder, from training to deployment."""

from __future__ import annotations

import functools
import inspect
from pathlib import Path
from typing import Annotated, Optional

import typer

from cifake.cli.common import (AsJson, Cache, DataOption, DeviceOption, ExcludeSource, Quiet, RunDir, TestShare, app,
                               choice, console, fmt, load, load_for_model, percent, print_json, print_metrics,
                               print_table, use_device, value)
from cifake.cli.options import settings_options
from cifake.data.degrade import CONDITIONS
from cifake.runfolder import RunFolder
from cifake.training.config import TrainConfig, read_recipe


def training_options(command):
    """Give `command` one option per TrainConfig field and --recipe FILE; it receives `config: TrainConfig` (the
    recipe's settings, overridden by the options given on the command line) and `recipe_topology`."""

    @functools.wraps(command)
    def with_config(recipe: Optional[Path] = None, given: dict | None = None, **options):
        topology, settings = read_recipe(recipe) if recipe else (None, {})
        return command(**options, config=TrainConfig.from_dict(settings | given), recipe_topology=topology)

    own = [p for p in inspect.signature(command, eval_str=True).parameters.values()
           if p.name not in ("config", "recipe_topology")]
    recipe = inspect.Parameter("recipe", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[
        Optional[Path], typer.Option(help="JSON file of training settings (and optionally \"topology\"); options "
                                          "given here override it.")])
    with_config.__signature__ = inspect.Signature(own + [recipe, inspect.Parameter(
        "given", inspect.Parameter.KEYWORD_ONLY, annotation=dict)])
    return settings_options(TrainConfig, "given", "Training settings", only_given=True)(with_config)


@app.command()
@training_options
def train(
    data: DataOption,
    out: Annotated[Path, typer.Option(help="Run folder to write.")],
    config: TrainConfig,
    recipe_topology: str | None,
    topology: Annotated[Optional[str], typer.Option(
        help="Named topology: paper (2 conv x 32 filters, dense 64), or the residual resnet-s / resnet / "
             "resnet-l / resnet4 / resnet4-b2.")] = None,
    filters: Annotated[Optional[int], typer.Option(help="Filters per conv layer.")] = None,
    conv_layers: Annotated[Optional[int], typer.Option(help="Number of conv layers.")] = None,
    dense: Annotated[Optional[str], typer.Option(help="Dense layer sizes, e.g. 64 or 128,64; 'none' for none.")] = None,
    val_fraction: Annotated[float, typer.Option(help="Share of train carved out for validation.")] = 0.1,
    limit: Annotated[Optional[int], typer.Option(help="At most N images per split and label (quick runs).")] = None,
    test_share: TestShare = 0.2,
    exclude_source: ExcludeSource = None,
    resume: Annotated[bool, typer.Option(help="Continue the run in --out from its last checkpoint.")] = False,
    cache: Cache = None,
    as_json: AsJson = False,
    quiet: Quiet = False,
) -> None:
    """Train a CNN of the study's family (or the residual CNN), then evaluate it on validation and test."""
    from cifake.devices import cpu_threads
    from cifake.models import resolve_topology
    from cifake.training.split import Split
    from cifake.workflows.experiment import train_run

    spec = resolve_topology(topology or recipe_topology, filters=filters, conv_layers=conv_layers,
                            dense=_parse_dense(dense))
    split = Split(val_fraction, limit, test_share, tuple(exclude_source or ()))
    with cpu_threads(config.threads):  # here already, so the device line names the threads the run uses
        use_device(config.device)
        dataset = load(data, cache, quiet, preprocess=config.input)
        if not as_json:
            console.print(f"Training {spec.name} on {data} -> {out}")
        record = train_run(dataset, out, spec, config, split, resume=resume, progress=not quiet)
    if as_json:
        return print_json(record)
    console.print(f"Best epoch {record['best_epoch']} of {record['epochs_run']}; "
                  f"{record['train_images_per_second']:,.0f} training images/s; {record['seconds']:.1f} s")
    print_metrics({split: record[split] for split in ("validation", "test") if split in record})
    console.print(f"Run folder: {out}")


def _parse_dense(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    if text.strip().lower() in ("", "none", "0"):
        return ()
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise ValueError(f"--dense takes sizes like 64 or 128,64 or 'none', not {text!r}") from None


@app.command()
def evaluate(
    run_dir: RunDir,
    data: DataOption,
    split: Annotated[str, typer.Option(help="Split to evaluate.")] = "test",
    exclude_leaked: Annotated[bool, typer.Option(help="Leave out test images that also occur in train.")] = False,
    out: Annotated[Optional[Path], typer.Option(help="Folder for the results (default: the run folder).")] = None,
    device: DeviceOption = "auto",
    as_json: AsJson = False,
    cache: Cache = None,
    quiet: Quiet = False,
) -> None:
    """Evaluate a trained model on a split: the study's metrics (REAL positive) and more."""
    from cifake.workflows.experiment import evaluate_run

    device = use_device(device)
    metrics = evaluate_run(run_dir, load_for_model(data, cache, quiet, run_dir), split, exclude_leaked, out, device)
    if as_json:
        return print_json(metrics)
    if exclude_leaked:
        console.print(f"Left out {metrics['excluded_leaked']:,} leaked test images (pixel-identical to a train image).")
    print_metrics({metrics["split"]: metrics})


@app.command()
def calibrate(
    run_dir: RunDir,
    data: DataOption,
    max_real_flagged: Annotated[float, typer.Option(
        help="Target share of REAL images called FAKE (false accusations), on validation.")] = 0.01,
    max_fake_passed: Annotated[float, typer.Option(
        help="Target share of FAKE images called REAL, on validation.")] = 0.02,
    max_out_of_domain: Annotated[float, typer.Option(
        min=0.0001, max=0.5, help="Share of validation images the domain check may call OUT_OF_DOMAIN.")] = 0.01,
    domain_check: Annotated[bool, typer.Option(
        help="Fit the domain check (OUT_OF_DOMAIN for images unlike the training data).")] = True,
    device: DeviceOption = "auto",
    as_json: AsJson = False,
    cache: Cache = None,
    quiet: Quiet = False,
) -> None:
    """Fit temperature scaling, REAL / UNSURE / FAKE thresholds and the domain check on validation; store them
    with the model."""
    from cifake.workflows.calibrate import calibrate_run

    device = use_device(device)
    report = calibrate_run(run_dir, load_for_model(data, cache, quiet, run_dir), max_real_flagged, max_fake_passed,
                           device, max_out_of_domain if domain_check else None)
    if as_json:
        return print_json(report)
    rule = report["decision"]
    band = (f", REAL below {rule['real_at']:.4g}, UNSURE between" if rule["real_at"] < rule["fake_at"]
            else ", else REAL (one threshold meets both targets: no unsure band)")
    console.print(f"Temperature {report['temperature']:.4f}; FAKE when P(FAKE) >= {rule['fake_at']:.4g}{band}")
    splits = [s for s in ("validation", "test", "test_without_leaked") if s in report]
    measures = [("images", lambda r: r["images"]), ("ECE before", lambda r: r["ece_before"]),
                ("ECE after", lambda r: r["ece_after"]), ("unsure", lambda r: percent(r["decision"]["unsure"])),
                ("REAL called FAKE", lambda r: percent(r["decision"]["real_flagged_fake"])),
                ("FAKE called REAL", lambda r: percent(r["decision"]["fake_passed_real"])),
                ("accuracy when decided", lambda r: r["decision"]["accuracy_when_decided"])]
    print_table(["", *(s.replace("_", " ") for s in splits)],
                [[name, *(get(report[s]) for s in splits)] for name, get in measures])
    if "domain" in report:
        domain = report["domain"]
        tested = (f"; test images flagged {percent(domain['test_flagged'])}, accuracy of the decided in domain "
                  f"{fmt(domain['test_accuracy_when_decided'])}" if "test_flagged" in domain else "")
        console.print(f"Domain check: {domain['fitted_on']}{tested}")
    console.print(f"Stored in {RunFolder(run_dir).config}; report {RunFolder(run_dir).calibration}, "
                  f"diagram {run_dir / 'reliability.png'}")


Condition = choice("Condition", CONDITIONS)


@app.command()
def robustness(
    run_dir: RunDir,
    data: DataOption,
    out: Annotated[Optional[Path], typer.Option(
        help="Folder for the table, plot and report (default: RUN_DIR/robustness).")] = None,
    condition: Annotated[Optional[list[Condition]], typer.Option(
        help="A condition to run (repeatable; default: all).")] = None,
    limit: Annotated[Optional[int], typer.Option(help="Test images per label (default: all).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the --limit sample and of the noise.")] = 0,
    device: DeviceOption = "auto",
    as_json: AsJson = False,
    cache: Cache = None,
    quiet: Quiet = False,
) -> None:
    """Accuracy and ROC-AUC under JPEG re-compression, down-then-up scaling, blur and noise."""
    from cifake.workflows.robustness import evaluate_robustness

    folder = out or run_dir / "robustness"
    conditions = [value(c) for c in condition] if condition else None
    device = use_device(device)
    result = evaluate_robustness(run_dir, load_for_model(data, cache, quiet, run_dir), folder, conditions, limit, seed,
                                 progress=not quiet, device=device)
    if as_json:
        return print_json(result)
    shown = ("accuracy", "roc_auc", "recall_real", "recall_fake", "accuracy_without_leaked", "roc_auc_without_leaked")
    print_table(["condition", "accuracy", "ROC-AUC", "REAL\nrecall", "FAKE\nrecall", "accuracy\nno leaks",
                 "ROC-AUC\nno leaks"], [[row["condition"], *(row[k] for k in shown)] for row in result["rows"]],
                f"{result['images']:,} test images ({result['without_leaked']:,} without leaked duplicates)")
    console.print(f"Report: {folder / 'robustness.md'}, {folder / 'robustness.html'}; plot {folder / 'robustness.png'}")


@app.command()
def export(
    run_dir: RunDir,
    onnx: Annotated[Path, typer.Option("--onnx", help="Where to write the ONNX model (e.g. RUN_DIR/model.onnx).")],
) -> None:
    """Export a model to ONNX: uint8 (N, 32, 32, 3) pixels in, one logit per image out (sigmoid = P(REAL))."""
    from cifake.models.export import export_onnx

    path = export_onnx(run_dir, onnx)
    console.print(f"Wrote {path} ({path.stat().st_size:,} bytes); predict and serve use a folder's model.onnx "
                  "when it matches the weights")


@app.command()
def ensemble(
    run_dirs: Annotated[list[Path], typer.Argument(help="Two or more run folders of trained models.")],
    out: Annotated[Path, typer.Option(help="Folder for the ensemble (a model folder like any run's).")],
) -> None:
    """Combine trained models into one: the mean of their logits, scored without test-time flips."""
    from cifake.models import save_ensemble

    folder = save_ensemble(run_dirs, out)
    console.print(f"Wrote the ensemble of {len(run_dirs)} models to {folder}; evaluate, calibrate, export and "
                  "robustness take it like any run folder")
