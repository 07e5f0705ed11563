"""Soak `cifake serve`: many requests from many clients on loopback, with the server's resident memory sampled.

`python benchmarks/soak_serve.py` sends 20,000 requests (one JPEG each; every 10th a bad file, every 50th an
oversized one) from 16 clients to a fresh server, and prints the error count (answers other than the expected
200 / 422 / 413) and the server's resident memory after the first tenth of the requests (once warm) and at the
end. `--requests` and `--clients` scale it; the test suite runs a short one.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from common import REPO, start_server

sys.path.insert(0, str(REPO / "tests"))
from conftest import jpeg_bytes, synthetic_image  # noqa: E402  (the tests' own synthetic images)


def resident_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def soak(requests: int, clients: int) -> dict:
    server, url = start_server("--max-file-mb", "0.1", "--no-access-log", "--max-queue", str(2 * clients))
    inputs = [(jpeg_bytes(synthetic_image(i % 2, i)), 200) for i in range(8)]
    bad, oversized = (b"not an image", 422), (b"\xff" * 200_000, 413)
    done, warm = [0], {}
    lock = threading.Lock()
    try:
        def client(k: int) -> list[int]:
            wrong = []
            with httpx.Client(base_url=url, timeout=60) as http:
                for j in range(k, requests, clients):
                    data, expected = oversized if j % 50 == 49 else bad if j % 10 == 9 else inputs[j % 8]
                    code = http.post("/v1/predict", files=[("files", (f"{j}.jpg", data))]).status_code
                    if code != expected:
                        wrong.append(code)
                    with lock:
                        done[0] += 1
                        if done[0] == requests // 10:
                            warm["mb"] = resident_mb(server.pid)
            return wrong

        started = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            wrong = [c for result in pool.map(client, range(clients)) for c in result]
        seconds = time.perf_counter() - started
        end_mb = resident_mb(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=30)
    return {"requests": requests, "clients": clients, "seconds": round(seconds, 1),
            "requests_per_second": round(requests / seconds, 1), "errors": len(wrong),
            "error_codes": sorted(set(wrong)), "resident_mb_warm": round(warm["mb"], 1),
            "resident_mb_end": round(end_mb, 1), "growth": round(end_mb / warm["mb"] - 1, 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--clients", type=int, default=16)
    args = parser.parse_args()
    result = soak(args.requests, args.clients)
    print(json.dumps(result))
    print(f"{result['requests']:,} requests from {result['clients']} clients in {result['seconds']} s "
          f"({result['requests_per_second']:,} /s): {result['errors']} errors; resident memory "
          f"{result['resident_mb_warm']} MB when warm, {result['resident_mb_end']} MB at the end "
          f"({result['growth']:+.1%})")


if __name__ == "__main__":
    main()
