"""Shared helpers of the benchmark scripts: where the data is, and a timer."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def data_path() -> Path:
    path = Path(os.environ.get("CIFAKE_DATA", REPO.parent / "shared" / "data" / "cifake"))
    if not path.exists():
        raise SystemExit(f"CIFAKE data not found at {path}; set CIFAKE_DATA")
    return path


def dense_units(text: str | None) -> tuple[int, ...] | None:
    """A --dense option: "4096,4096" -> (4096, 4096); "none" or "" -> (); not given -> None."""
    return None if text is None else tuple(int(u) for u in text.split(",") if u not in ("", "none"))


@contextmanager
def timed(label: str, results: dict):
    start = time.perf_counter()
    yield
    results[label] = time.perf_counter() - start


def start_server(*options: str) -> tuple[subprocess.Popen, str]:
    """`cifake serve OPTIONS` on a free loopback port, once /healthz answers: (process, base URL)."""
    import httpx

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "cifake", "serve", "--port", str(port), *options],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return server, url
        except httpx.HTTPError:
            time.sleep(0.2)
    server.kill()
    raise SystemExit("the server did not start")
