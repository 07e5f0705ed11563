"""`cifake predict | explain | serve | generate`: detect, explain, deploy, and make synthetic images."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from cifake.choices import DEVICES, TARGETS
from cifake.cli.common import (BackendOption, Cache, DeviceOption, ModelDir, Quiet, RayAddress, app, choice, console,
                               err, load, print_table, use_device, value)
from cifake.generate.pipeline import DTYPES, SCHEDULERS

Target = choice("Target", TARGETS)
Scheduler = choice("Scheduler", SCHEDULERS)
Dtype = choice("Dtype", DTYPES)
Device = choice("Device", DEVICES)
PREDICTION_FIELDS = ["path", "prob_fake", "verdict", "threshold", "real_below", "model_id"]


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

    detector = _detector(model, value(backend), device)
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
            rows.append([result.source, result.prob_fake, result.verdict])
    if not (as_json or as_csv):
        print_table(["path", "P(FAKE)", "verdict"], rows, f"model {detector.model_id}; {_rule(detector, threshold)}")
    if explain_dir:
        err.print(f"Grad-CAM overlays: {explain_dir}")
    if failed:
        raise typer.Exit(1)


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


def _detector(model: Path | None, backend: str, device: str):
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
    layer: Annotated[Optional[str], typer.Option(help="Layer for Grad-CAM (default: the last conv's ReLU; an "
                                                      "ensemble's: every member's, comma-separated).")] = None,
    target: Annotated[Target, typer.Option(help="What the maps explain: the predicted label, REAL or FAKE.")
                      ] = "predicted",
    device: DeviceOption = "auto",
    cache: Cache = None,
    quiet: Quiet = False,
) -> None:
    """Grad-CAM: overlays for image files, or figures and a measured report over a dataset split."""
    from cifake.workflows.explain_report import explain_dataset, explain_files
    from cifake.predict import expand_paths

    if bool(images) == bool(data):
        raise ValueError("give image files, or --data SOURCE, not both or neither")
    if data:
        device = use_device(device)
        summary = explain_dataset(run_dir, load(data, cache, quiet), out, split, sample, per_class, layer,
                                  device=device)
        shares = summary["centre_share"]
        console.print(f"{summary['images']:,} images in {summary['seconds']} s; centre share of map mass "
                      f"REAL {shares['REAL']['all']:.3f}, FAKE {shares['FAKE']['all']:.3f} (even spread 0.25)")
        console.print(f"Report: {out / 'explain.md'} and {out / 'explain.html'}")
        return
    explained = explain_files(_detector(run_dir, "torch", device), expand_paths(images), out, layer, value(target))
    for result in explained.results:
        console.print(f"{result['path']}: {result['verdict']} (P(FAKE) {result['prob_fake']:.3f}) -> "
                      f"{out / result['overlay']}", markup=False)
    for path, reason in explained.failures:
        err.print(f"{path}: {reason}", markup=False)
    if explained.failures:
        raise typer.Exit(1)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
    model: ModelDir = None,
    max_file_mb: Annotated[float, typer.Option(help="Largest upload, in MB.")] = 20,
    max_pixels: Annotated[int, typer.Option(
        help="Largest image, in pixels (decompression bombs are refused).")] = 40_000_000,
    max_files: Annotated[int, typer.Option(help="Most files per request.")] = 64,
    max_request_mb: Annotated[float, typer.Option(
        help="Largest request body, in MB, enforced as it streams in (also without Content-Length).")] = 64,
    max_queue: Annotated[int, typer.Option(
        min=1, help="Requests waiting for or running inference; more get 503 with Retry-After at once.")] = 16,
    timeout: Annotated[float, typer.Option(help="Seconds a request may wait for inference before a 504.")] = 30,
    api_key: Annotated[Optional[list[str]], typer.Option(
        envvar="CIFAKE_API_KEYS", help="Require this bearer token on /v1/* (repeatable: one per client; "
                                       "CIFAKE_API_KEYS holds several, comma-separated). /healthz stays open.")] = None,
    insecure: Annotated[bool, typer.Option(
        help="Allow serving on a non-loopback address without an API key.")] = False,
    cors_origin: Annotated[Optional[list[str]], typer.Option(
        help="A web origin whose pages may call the API (repeatable); none by default.")] = None,
    access_log: Annotated[bool, typer.Option(help="One JSON line per request on stderr.")] = True,
    workers: Annotated[int, typer.Option(
        min=1, help="Server processes, each with its own model and cores / N scoring threads.")] = 1,
    ray_address: Annotated[Optional[str], typer.Option(
        help="Serve with Ray Serve on this Ray cluster (or local): replicas with batching.")] = None,
    replicas: Annotated[int, typer.Option(min=1, help="Ray Serve replicas (with --ray-address).")] = 2,
    backend: BackendOption = "auto",
    device: DeviceOption = "auto",
) -> None:
    """Serve the REST API (/v1/predict, /v1/explain, /v1/model, /healthz, /metrics, /docs) and the web page at /."""
    from cifake.serve import Limits

    access = _access(host, api_key, cors_origin, insecure, ray_address)
    limits = Limits(max_file_bytes=int(max_file_mb * 1024 * 1024), max_request_bytes=int(max_request_mb * 1024 * 1024),
                    max_pixels=max_pixels, max_files=max_files, max_queue=max_queue, timeout_s=timeout)
    detector = _detector(model, value(backend), device)  # also checks the model and device before any worker starts
    if ray_address:
        from cifake.serve.ray_serve import run_on_ray

        console.print(f"cifake on Ray Serve at http://{host}:{port}/ ({replicas} replicas)")
        return run_on_ray(ray_address, host, port, str(model) if model else None, detector.backend, limits, replicas)
    console.print(f"cifake serving on http://{host}:{port}/ (API docs at /docs), scoring with {detector.backend} "
                  f"on {detector.device}; {len(access.api_keys)} API key(s); {workers} worker(s)")
    if workers == 1:
        _serve_here(host, port, detector, limits, model, access, access_log)
    else:
        _serve_with_workers(host, port, workers, model, value(backend), device, limits, access, access_log)


def _serve_here(host, port, detector, limits, model, access, access_log: bool) -> None:
    """One server process: the app over the detector already loaded."""
    import logging

    import uvicorn

    from cifake.serve import create_app

    if access_log:
        log = logging.getLogger("cifake.serve.access")
        log.addHandler(logging.StreamHandler(sys.stderr))
        log.setLevel(logging.INFO)
    uvicorn.run(create_app(detector, limits, model, access), host=host, port=port, log_level="warning")


def _serve_with_workers(host, port, workers, model, backend, device, limits, access, access_log) -> None:
    """uvicorn's process workers, each building its app from settings in the environment (cifake.serve.worker)."""
    import os
    import tempfile

    import uvicorn

    from cifake.data.dataset import available_cores
    from cifake.serve.worker import SETTINGS, settings_for_workers

    threads = max(1, available_cores() // workers)
    os.environ[SETTINGS] = settings_for_workers(model, backend, device, limits, access, threads)
    metrics_dir = None if os.environ.get("PROMETHEUS_MULTIPROC_DIR") else tempfile.TemporaryDirectory(
        prefix="cifake-metrics-")  # the workers' metric files, removed when the server stops
    if metrics_dir:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir.name
    log_config = {"version": 1, "disable_existing_loggers": False, "handlers": {
        "stderr": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr"}}, "loggers": {
        "cifake.serve.access": {"handlers": ["stderr"], "level": "INFO" if access_log else "WARNING"}}}
    uvicorn.run("cifake.serve.worker:app_from_environment", factory=True, host=host, port=port, workers=workers,
                log_level="warning", log_config=log_config)


def _access(host: str, api_key: list[str] | None, cors_origin: list[str] | None, insecure: bool,
            ray_address: str | None):
    """Who may call the service, checked against where it listens."""
    from cifake.serve import Access

    keys = tuple(k.strip() for given in api_key or () for k in given.split(",") if k.strip())
    if ray_address and keys:
        raise ValueError("API keys are the local server's; under Ray Serve, control access at the cluster's gateway")
    _check_exposure(host, keys, insecure)
    return Access(keys, tuple(cors_origin or ()))


def _check_exposure(host: str, keys: tuple[str, ...], insecure: bool) -> None:
    """Refuse to put the API on a network without a key, unless told to."""
    import ipaddress

    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        loopback = False
    if not (loopback or keys or insecure):
        raise ValueError(f"refusing to serve on {host} without an API key: anyone who reaches the port could use it. "
                         "Give --api-key KEY (or CIFAKE_API_KEYS), or --insecure to serve openly")


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
    scheduler: Annotated[Scheduler, typer.Option(help="Sampler (euler-ancestral is the study's).")
                         ] = "euler-ancestral",
    size: Annotated[int, typer.Option(help="Render size in pixels.")] = 512,
    out_size: Annotated[int, typer.Option(help="Saved size in pixels (bilinear resize).")] = 32,
    prompt_template: Annotated[str, typer.Option(
        help="Prompt; {label} and {article} (a/an) are filled in.")] = "a photograph of {article} {label}",
    seed: Annotated[int, typer.Option(help="Base seed; each image's seed derives from (seed, class, index).")] = 1,
    device: Annotated[Device, typer.Option(help="Where the pipeline runs.")] = "cpu",
    dtype: Annotated[Dtype, typer.Option(help="Pipeline precision.")] = "fp32",
    batch_size: Annotated[int, typer.Option(help="Images per pipeline call.")] = 4,
    keep_full_size: Annotated[bool, typer.Option(help="Also keep each full-size render as PNG.")] = False,
    shard: Annotated[str, typer.Option(help="i/n: make only shard i (from 0) of n, for several processes.")] = "0/1",
    ray_address: RayAddress = None,
    quiet: Quiet = False,
) -> None:
    """Render a CIFAKE-style synthetic twin with Stable Diffusion; reruns resume, shards split the work."""
    from cifake.generate import GenerateConfig, counts_like, parse_shard
    from cifake.generate.pipeline import generate as run_generation

    names = [c.strip() for c in classes.split(",")] if classes else None
    counts: int | list[int] = per_class
    if like:
        names, counts = counts_like(like)
    config = GenerateConfig(out=str(out), per_class=counts, model=model, scheduler=value(scheduler), steps=steps,
                            size=size, out_size=out_size, prompt_template=prompt_template, seed=seed,
                            device=value(device), dtype=value(dtype), batch_size=batch_size,
                            keep_full_size=keep_full_size, shard=parse_shard(shard),
                            **({"classes": names} if names else {}))
    config.counts()
    if ray_address:
        from cifake.generate.distributed import generate_on_ray

        summaries = generate_on_ray(config, ray_address)
        console.print(f"{sum(s['generated'] for s in summaries):,} images made by {len(summaries)} Ray shards")
        return
    summary = run_generation(config, progress=not quiet)
    rate = f", {summary['images_per_second']} images/s" if summary.get("images_per_second") else ""
    console.print(f"{summary['generated']:,} made, {summary['skipped_existing']:,} already there "
                  f"({summary['planned']:,} in this shard){rate}. Output: {out}")
