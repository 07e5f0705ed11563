"""Inference throughput of the `paper` CNN: from decoded uint8 arrays, and from JPEG files on disk.

`python benchmarks/bench_inference.py [--run RUN_DIR]` uses the official test split (20,000 images); without
--run it times a freshly initialised model (speed does not depend on the weights). The files test reads the
20,000 test JPEGs, extracted to a temporary folder, with one process, decoding and predicting in batches.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import torch
from common import data_path

from cifake.data import decode_image, load_dataset
from cifake.models import create_model, load_model
from cifake.models.inference import predict_logits


def rate(fn, n: int, repeats: int = 3) -> float:
    best = min(_time(fn) for _ in range(repeats))
    return n / best


def _time(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def predict_files(model, paths: list[Path], batch_size: int) -> np.ndarray:
    out = []
    for start in range(0, len(paths), batch_size):
        pixels = np.stack([decode_image(p.read_bytes())[0] for p in paths[start : start + batch_size]])
        out.append(predict_logits(model, pixels, batch_size))
    return np.concatenate(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--run", type=Path, help="run folder of a trained model")
    args = parser.parse_args()
    model = load_model(args.run)[0] if args.run else create_model("paper").eval()
    model = model.to(memory_format=torch.channels_last)
    source = data_path()
    test = load_dataset(source, progress=False)["test"].in_memory()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {len(test):,} test images")
    print("| input | batch | precision | images/s |")
    print("| --- | ---: | --- | ---: |")
    for batch_size in (64, 256, 1024):
        for bf16 in (False, True):
            speed = rate(lambda: predict_logits(model, test.images, batch_size, bf16), len(test))
            print(f"| decoded uint8 array | {batch_size} | {'bf16' if bf16 else 'fp32'} | {speed:,.0f} |", flush=True)
    with tempfile.TemporaryDirectory() as folder, zipfile.ZipFile(source / "test.zip") as archive:
        archive.extractall(folder)
        paths = sorted(Path(folder).rglob("*.jpg"))
        speed = rate(lambda: predict_files(model, paths, 64), len(paths), repeats=2)
        print(f"| JPEG files on disk (read + decode + predict) | 64 | fp32 | {speed:,.0f} |")
    fp32 = predict_logits(model, test.images, 64)
    bf16 = predict_logits(model, test.images, 64, bf16=True)
    changed = int(((fp32 > 0) != (bf16 > 0)).sum())
    gap = float(np.abs(1 / (1 + np.exp(-fp32)) - 1 / (1 + np.exp(-bf16))).max())
    print(f"\nbf16 against fp32: {changed} of {len(test):,} verdicts changed, max |P difference| {gap:.4f}")


if __name__ == "__main__":
    main()
