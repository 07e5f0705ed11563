"""`cifake predict` over the official test split as files on disk: files/s, and accuracy against `evaluate`.

`python benchmarks/bench_predict.py [--model RUN_DIR]` extracts the 20,000 test JPEGs to a temporary folder,
times the Detector over the folder (read + decode + predict, in-process, after start-up; then each of those
parts alone, per file) and the whole `cifake predict FOLDER --csv --threshold 0.5` command (start-up
included), and compares the accuracy of their verdicts at 0.5 with the accuracy `evaluate` computes from the
decoded dataset for the same model (calibration moves no verdict at 0.5). It then reports the model's own
decision: the shares UNSURE and OUT_OF_DOMAIN, and the accuracy of the others; and, for a model with a domain
check, files/s with the check and without it, alternated (3 rounds each).
"""

from __future__ import annotations

import argparse
import csv
import io
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
from common import data_path

from cifake.data import load_dataset
from cifake.metrics import evaluate
from cifake.predict import Detector, expand_paths


def accuracy(rows: list[tuple[str, str]]) -> str:
    """Rows of (path, FAKE or REAL); the label is the folder."""
    correct = sum((verdict == "FAKE") == ("/FAKE/" in path) for path, verdict in rows)
    return f"{correct:,} of {len(rows):,} right ({correct / len(rows):.5f})"


def breakdown(detector: Detector, folder: str) -> str:
    """Where the Detector's time per file goes, each part timed alone: finding the files, reading and decoding
    them, and scoring the decoded images (in the Detector's batches)."""
    started = time.perf_counter()
    paths = list(expand_paths([folder]))
    listed = time.perf_counter()
    pixels = np.stack([detector.pixels(path) for path in paths])
    decoded = time.perf_counter()
    detector.prob_fake(pixels)
    scored = time.perf_counter()
    parts = {"finding": listed - started, "reading and decoding": decoded - listed, "scoring": scored - decoded}
    return "Per file, timed apart: " + ", ".join(f"{name} {1e6 * seconds / len(paths):,.0f} us"
                                                 for name, seconds in parts.items())


def domain_cost(detector: Detector, folder: str, rounds: int = 3) -> str:
    """Files/s with the domain check and without (the same Detector, its check set aside), alternated."""
    check, paths = detector.domain, list(expand_paths([folder]))
    rates: dict[str, list[float]] = {"with": [], "without": []}
    for _ in range(rounds):
        for name in rates:
            detector.domain = check if name == "with" else None
            started = time.perf_counter()
            sum(1 for _ in detector.iter_predict(paths))
            rates[name].append(len(paths) / (time.perf_counter() - started))
    detector.domain = check
    with_check, without = (float(np.median(rates[name])) for name in ("with", "without"))
    return (f"Domain check, alternated {rounds}x: {with_check:,.0f} files/s with it, {without:,.0f} without "
            f"({with_check / without:.1%})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, help="run folder (default: the bundled model)")
    args = parser.parse_args()
    source = data_path()
    detector = Detector.load(args.model)
    with tempfile.TemporaryDirectory() as folder:
        with zipfile.ZipFile(source / "test.zip") as archive:
            archive.extractall(folder)
        started = time.perf_counter()
        rows = [(r.source, "FAKE" if r.prob_fake >= 0.5 else "REAL")  # OUT_OF_DOMAIN still has its P(FAKE)
                for r in detector.iter_predict(expand_paths([folder]), threshold=0.5)]
        seconds = time.perf_counter() - started
        print(f"Detector over {len(rows):,} files: {seconds:.2f} s, {len(rows) / seconds:,.0f} files/s; "
              f"accuracy {accuracy(rows)}")
        print(breakdown(detector, folder))
        command = [sys.executable, "-m", "cifake", "predict", folder, "--csv", "--threshold", "0.5"]
        if args.model:
            command += ["--model", str(args.model)]
        started = time.perf_counter()
        output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        seconds = time.perf_counter() - started
        cli_rows = [(r["path"], "FAKE" if float(r["prob_fake"]) >= 0.5 else "REAL")
                    for r in csv.DictReader(io.StringIO(output))]
        print(f"`cifake predict FOLDER --csv` (start-up included): {seconds:.2f} s, "
              f"{len(cli_rows) / seconds:,.0f} files/s; accuracy {accuracy(cli_rows)}")
        decided = [(r.source, r.verdict) for r in detector.iter_predict(expand_paths([folder]))]
        sure = [(path, verdict) for path, verdict in decided if verdict in ("REAL", "FAKE")]
        outside = sum(verdict == "OUT_OF_DOMAIN" for _, verdict in decided) / len(decided)
        print(f"The model's own decision ({detector.backend}): {1 - len(sure) / len(decided) - outside:.2%} UNSURE, "
              f"{outside:.2%} OUT_OF_DOMAIN; of the rest, accuracy {accuracy(sure)}")
        if detector.domain:
            print(domain_cost(detector, folder))
    metrics, _ = evaluate(detector.model, load_dataset(source, progress=False)["test"])
    right = round(metrics["accuracy"] * metrics["n"])
    print(f"`evaluate` on the decoded test split, same model: accuracy {right:,} of {metrics['n']:,} right "
          f"({right / metrics['n']:.5f})")


if __name__ == "__main__":
    main()
