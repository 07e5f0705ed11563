"""ONNX Runtime against torch for inference: parity and images/s on the official test split.

`python benchmarks/bench_onnx.py [--run RUN_DIR]` (default: the bundled model) exports the model to a temporary
ONNX file, checks the largest |difference in P(REAL)| over all 20,000 test images, and times both paths from
decoded uint8 arrays at several batch sizes (best of --repeats passes).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import data_path

from cifake.data import load_dataset
from cifake.data.dataset import available_cores
from cifake.models import load_model
from cifake.models.export import OnnxRunner, export_onnx
from cifake.models.inference import predict_logits, sigmoid
from cifake.predict import bundled_model_dir
from cifake.runfolder import RunFolder


def best_rate(fn, n: int, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return n / min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--run", type=Path, default=None, help="run folder (default: the bundled model)")
    parser.add_argument("--batch-sizes", default="1,16,64,256,1024")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per setting (best is reported)")
    args = parser.parse_args()
    run = args.run or bundled_model_dir()
    test = load_dataset(data_path(), progress=False)["test"].in_memory()
    model, _ = load_model(run)
    with tempfile.TemporaryDirectory() as folder:
        for part in (RunFolder(run).weights, RunFolder(run).config):
            shutil.copy(part, folder)
        runner = OnnxRunner(export_onnx(folder), threads=available_cores())
        torch_prob = sigmoid(predict_logits(model, test.images))
        onnx_prob = sigmoid(runner(test.images))
        gap = np.abs(torch_prob - onnx_prob).max()
        print(f"{len(test):,} test images; max |P(REAL) torch - onnxruntime| = {gap:.2e}; "
              f"verdicts that differ at 0.5: {int(((torch_prob >= 0.5) != (onnx_prob >= 0.5)).sum())}")
        print(f"torch {torch.__version__} ({torch.get_num_threads()} threads), onnxruntime, {available_cores()} cores")
        print("| batch | torch fp32 images/s | onnxruntime images/s |")
        print("| ---: | ---: | ---: |")
        for batch in map(int, args.batch_sizes.split(",")):
            images = test.images[: 2000 if batch == 1 else len(test)]
            t = best_rate(lambda: predict_logits(model, images, batch), len(images), args.repeats)
            o = best_rate(lambda: runner(images, batch), len(images), args.repeats)
            print(f"| {batch} | {t:,.0f} | {o:,.0f} |", flush=True)


if __name__ == "__main__":
    main()
