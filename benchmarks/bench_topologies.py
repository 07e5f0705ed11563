"""Scoring speed of residual topologies on onnxruntime, before any training: random weights, random pixels.

`python benchmarks/bench_topologies.py WIDTHS:BLOCKS:HIGH_PASS:FLIPS ...`, e.g. `32,64,128:1:1:0
16,32,64,128:1:1:0` (widths per stage, residual blocks per stage, high-pass branch 0/1, test-time flips 0/1),
exports each `ResidualCNN` with `cifake export`'s exporter and prints its parameter count and images/s: 8,192 uint8
images at batch 256, 2 intra-op threads, best of 3 passes. Speed does not depend on the weights, so this ranks
candidate networks for the bundled detector without training them.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort

from cifake.models import save_model
from cifake.models.export import export_onnx
from cifake.models.resnet import ResidualCNN, ResNetTopology


def images_per_second(path: Path, batch: int = 256, count: int = 8192) -> float:
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = 2, 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    pixels = np.random.randint(0, 256, (count, 32, 32, 3), dtype=np.uint8)
    session.run(None, {"pixels": pixels[:batch]})  # warm-up
    best = 0.0
    for _ in range(3):
        started = time.perf_counter()
        for start in range(0, count, batch):
            session.run(None, {"pixels": pixels[start : start + batch]})
        best = max(best, count / (time.perf_counter() - started))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("specs", nargs="+", help="WIDTHS:BLOCKS:HIGH_PASS:FLIPS, e.g. 16,32,64,128:1:1:0")
    args = parser.parse_args()
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory() as folder:
        for spec in args.specs:
            widths, blocks, high_pass, flips = spec.split(":")
            topology = ResNetTopology(widths=tuple(int(w) for w in widths.split(",")), blocks=int(blocks),
                                      high_pass=high_pass == "1", flip_tta=flips == "1")
            model = ResidualCNN(topology).eval()
            path = export_onnx(save_model(model, Path(folder) / spec.replace(":", "_").replace(",", "-")))
            parameters = sum(p.numel() for p in model.parameters())
            print(f"{spec}: {parameters:,} parameters, {images_per_second(path):,.0f} images/s", flush=True)


if __name__ == "__main__":
    main()
