"""Requests/s of `cifake serve`: 8 clients x 50 requests of one CIFAKE-size JPEG each, on loopback.

`python benchmarks/bench_serve.py` starts the server on a free port, waits for /healthz, runs the load,
checks every answer is 200, prints requests/s, and stops the server.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor

import httpx
from common import data_path

CLIENTS, REQUESTS = 8, 50


def main() -> None:
    with zipfile.ZipFile(data_path() / "test.zip") as archive:
        images = [archive.read(info) for info in archive.infolist()[:CLIENTS]]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "cifake", "serve", "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)

        def client(k: int) -> list[int]:
            with httpx.Client(base_url=url, timeout=60) as http:
                return [http.post("/v1/predict", files=[("files", ("x.jpg", images[k]))]).status_code
                        for _ in range(REQUESTS)]

        started = time.perf_counter()
        with ThreadPoolExecutor(CLIENTS) as pool:
            codes = [c for result in pool.map(client, range(CLIENTS)) for c in result]
        seconds = time.perf_counter() - started
        errors = sum(code != 200 for code in codes)
        print(f"{CLIENTS} clients x {REQUESTS} requests: {len(codes) / seconds:,.0f} requests/s, {errors} errors")
    finally:
        server.terminate()
        server.wait(timeout=20)


if __name__ == "__main__":
    main()
