"""How `cifake serve` runs the service: who may reach it (the exposure rule), one process or uvicorn's workers
(the cores shared out, Prometheus in multiprocess mode), the access log. The CLI parses; this decides."""

from __future__ import annotations

import ipaddress
import logging
import os
import sys
import tempfile
from pathlib import Path

import uvicorn

from cifake.data.dataset import available_cores
from cifake.serve.app import create_app
from cifake.serve.limits import Access, Limits
from cifake.serve.worker import SETTINGS, settings_for_workers


def access_for(host: str, api_keys: list[str] | None, cors_origins: list[str] | None, insecure: bool,
               ray_address: str | None) -> Access:
    """Who may call the service, checked against where it listens: keys may come several to an option,
    comma-separated (as CIFAKE_API_KEYS holds them)."""
    keys = tuple(k.strip() for given in api_keys or () for k in given.split(",") if k.strip())
    if ray_address and keys:
        raise ValueError("API keys are the local server's; under Ray Serve, control access at the cluster's gateway")
    check_exposure(host, keys, insecure)
    return Access(keys, tuple(cors_origins or ()))


def check_exposure(host: str, keys: tuple[str, ...], insecure: bool) -> None:
    """Refuse to put the API on a network without a key, unless told to."""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        loopback = False
    if not (loopback or keys or insecure):
        raise ValueError(f"refusing to serve on {host} without an API key: anyone who reaches the port could use it. "
                         "Give --api-key KEY (or CIFAKE_API_KEYS), or --insecure to serve openly")


def serve_here(host: str, port: int, detector, limits: Limits, model: Path | None, access: Access,
               access_log: bool) -> None:
    """One server process: the app over the detector already loaded."""
    if access_log:
        log = logging.getLogger("cifake.serve.access")
        log.addHandler(logging.StreamHandler(sys.stderr))
        log.setLevel(logging.INFO)
    uvicorn.run(create_app(detector, limits, model, access), host=host, port=port, log_level="warning")


def serve_with_workers(host: str, port: int, workers: int, model: Path | None, backend: str, device: str,
                       limits: Limits, access: Access, access_log: bool) -> None:
    """uvicorn's process workers, each building its app from settings in the environment (cifake.serve.worker),
    each scoring with cores / workers threads."""
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
