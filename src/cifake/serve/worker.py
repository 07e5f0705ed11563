"""`cifake serve --workers N`: uvicorn starts N processes, and each builds its own app (its own model) from the
settings the command puts in the environment. The cores are shared out: each worker scores with cores / N
threads, so N workers do not oversubscribe them. Prometheus metrics are then kept in prometheus-client's
multiprocess mode, so /metrics reports the sum over the workers whichever of them answers."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

import torch

from cifake.predict.detector import Detector
from cifake.serve.app import create_app
from cifake.serve.limits import Access, Limits

SETTINGS = "CIFAKE_SERVE_SETTINGS"


def settings_for_workers(model: Path | None, backend: str, device: str, limits, access, threads: int) -> str:
    """The settings every worker builds its app from, as the JSON the command puts in the environment."""
    return json.dumps({"model": str(model) if model else None, "backend": backend, "device": device,
                       "limits": asdict(limits), "access": asdict(access), "threads": threads})


def app_from_environment():
    """The app of one worker process (uvicorn's factory)."""
    settings = json.loads(os.environ[SETTINGS])
    torch.set_num_threads(settings["threads"])
    detector = Detector.load(settings["model"], settings["backend"], settings["device"], threads=settings["threads"])
    access = settings["access"]
    return create_app(detector, Limits(**settings["limits"]), Path(settings["model"]) if settings["model"] else None,
                      Access(tuple(access["api_keys"]), tuple(access["cors_origins"])))
