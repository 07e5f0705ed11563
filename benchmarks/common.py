"""Shared helpers of the benchmark scripts: where the data is, and a timer."""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def data_path() -> Path:
    path = Path(os.environ.get("CIFAKE_DATA", REPO.parent / "shared" / "data" / "cifake"))
    if not path.exists():
        raise SystemExit(f"CIFAKE data not found at {path}; set CIFAKE_DATA")
    return path


@contextmanager
def timed(label: str, results: dict):
    start = time.perf_counter()
    yield
    results[label] = time.perf_counter() - start
