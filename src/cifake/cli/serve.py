"""`cifake serve`: the REST API and web page, here (one process or several) or on Ray Serve."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from cifake.cli.common import BackendOption, DeviceOption, ModelDir, app, console, value
from cifake.cli.options import settings_options
from cifake.cli.predict import detector_for
from cifake.serve.limits import Limits


@app.command()
@settings_options(Limits, "limits", "Limits")
def serve(
    limits: Limits,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
    model: ModelDir = None,
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
    from cifake.serve.launch import access_for, serve_here, serve_with_workers

    access = access_for(host, api_key, cors_origin, insecure, ray_address)
    detector = detector_for(model, value(backend), device)  # also checks the model and device before any worker
    if ray_address:
        from cifake.serve.ray_serve import run_on_ray

        console.print(f"cifake on Ray Serve at http://{host}:{port}/ ({replicas} replicas)")
        return run_on_ray(ray_address, host, port, str(model) if model else None, detector.backend, limits, replicas)
    console.print(f"cifake serving on http://{host}:{port}/ (API docs at /docs), scoring with {detector.backend} "
                  f"on {detector.device}; {len(access.api_keys)} API key(s); {workers} worker(s)")
    if workers == 1:
        serve_here(host, port, detector, limits, model, access, access_log)
    else:
        serve_with_workers(host, port, workers, model, value(backend), device, limits, access, access_log)
