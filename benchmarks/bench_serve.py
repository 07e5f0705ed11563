"""Requests/s, images/s and latency of `cifake serve` on loopback, for 1 and more workers, and its 503 rate when
clients outnumber --max-queue.

`python benchmarks/bench_serve.py` starts the server on a free port for each setting, waits for /healthz, runs
the load (CIFAKE test JPEGs), prints one table row per run (requests/s, images/s, p50/p95 latency, errors other
than 503, share of 503s) and stops the server. `--workers 1,2 --files 1,16` chooses the runs; `--flood` adds a
run with 4x as many clients as `--max-queue` allows to wait.
"""

from __future__ import annotations

import argparse
import statistics
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor

import httpx
from common import data_path, start_server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", default="1,2", help="worker counts to run, e.g. 1,2")
    parser.add_argument("--files", default="1,16", help="images per request, e.g. 1,16")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=50, help="requests per client")
    parser.add_argument("--max-queue", type=int, default=16)
    parser.add_argument("--flood", action="store_true", help="also: 4 x max-queue clients, 1 file each, 1 worker")
    args = parser.parse_args()
    with zipfile.ZipFile(data_path() / "test.zip") as archive:
        images = [archive.read(info) for info in archive.infolist()[:64]]
    print("| workers | clients | files/request | requests/s | images/s | p50 ms | p95 ms | errors | 503 share |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    runs = [(w, args.clients, f) for w in map(int, args.workers.split(",")) for f in map(int, args.files.split(","))]
    if args.flood:
        runs.append((1, 4 * args.max_queue, 1))
    for workers, clients, files in runs:
        row = load_test(images, workers, clients, args.requests, files, args.max_queue)
        print(f"| {workers} | {clients} | {files} | {row['rps']:,.0f} | {row['ips']:,.0f} | {row['p50']:.0f} | "
              f"{row['p95']:.0f} | {row['errors']} | {row['busy']:.1%} |", flush=True)


def load_test(images: list[bytes], workers: int, clients: int, requests: int, files: int, max_queue: int) -> dict:
    server, url = start_server("--workers", str(workers), "--max-queue", str(max_queue), "--no-access-log")
    try:
        def client(k: int) -> list[tuple[int, float]]:
            upload = [("files", (f"{k}-{i}.jpg", images[(k + i) % len(images)])) for i in range(files)]
            answers = []
            with httpx.Client(base_url=url, timeout=120) as http:
                for _ in range(requests):
                    started = time.perf_counter()
                    code = http.post("/v1/predict", files=upload).status_code
                    answers.append((code, time.perf_counter() - started))
            return answers

        started = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            answers = [a for result in pool.map(client, range(clients)) for a in result]
        seconds = time.perf_counter() - started
    finally:
        server.terminate()
        server.wait(timeout=30)
    served = [s for code, s in answers if code == 200]
    ok = len(served)
    quantiles = statistics.quantiles(served, n=20) if len(served) > 1 else [0.0] * 19
    return {"rps": len(answers) / seconds, "ips": ok * files / seconds, "p50": 1000 * statistics.median(served),
            "p95": 1000 * quantiles[18], "errors": sum(code not in (200, 503) for code, _ in answers),
            "busy": sum(code == 503 for code, _ in answers) / len(answers)}


if __name__ == "__main__":
    main()
