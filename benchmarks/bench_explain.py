"""Seconds per explanation method for a model's maps of N test images (the maps alone, not the report's analysis).

    python benchmarks/bench_explain.py runs/vit --images 1000      # every method that applies, seeded sample
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from cifake.data import load_dataset
from cifake.devices import describe, resolve_device
from cifake.explain.methods import make_method
from cifake.models import load_model
from cifake.workflows.experiment import evaluation_images
from cifake.workflows.explain_compare import methods_for


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--data", default=os.environ.get("CIFAKE_DATA", "../shared/data/cifake"))
    parser.add_argument("--images", type=int, default=1000, help="test images, half of each label")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    device = resolve_device("auto")
    model, config = load_model(args.run, device)
    data = load_dataset(args.data, preprocess=model.preprocess, progress=False)
    images = evaluation_images(config, data, "test")[0].limit(args.images // 2, args.seed).in_memory().images
    rows = {}
    for method in methods_for(model):
        started = time.perf_counter()
        make_method(method, model)(images, "predicted")
        seconds = time.perf_counter() - started
        rows[method] = {"images": len(images), "seconds": round(seconds, 1),
                        "images_per_second": round(len(images) / seconds, 1)}
        print(f"{method:>12}: {len(images):,} images in {seconds:.1f} s ({len(images) / seconds:,.0f} images/s)",
              flush=True)
    print(json.dumps({"run": str(args.run), "methods": rows, **describe(device)}))


if __name__ == "__main__":
    main()
