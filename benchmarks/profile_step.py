"""Where a training step's time goes: torch.profiler over one epoch of the real trainer (`fit`, with its
defaults: bf16 autocast where the CPU has bf16 kernels, channels_last, fused Adam) on random pixels.

`python benchmarks/profile_step.py --filters 64 --conv-layers 2 --dense 4096,4096,4096 --threads 1` prints the
time per step and the operators that took the most of it (per step, the epoch's fixed work included).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from common import dense_units
from torch.profiler import ProfilerActivity, profile

from cifake.data.dataset import ImageSet
from cifake.models import Topology, create_model
from cifake.training.config import TrainConfig
from cifake.training.loop import fit


def random_images(n: int) -> ImageSet:
    rng = np.random.default_rng(1)
    return ImageSet(rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), rng.integers(0, 2, n).astype(np.uint8),
                    np.zeros(n, np.int8), np.array([f"random-{i}" for i in range(n)]), np.zeros((n, 32), np.uint8))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--filters", type=int, default=64)
    parser.add_argument("--conv-layers", type=int, default=2)
    parser.add_argument("--dense", default="4096,4096,4096", help="units per dense layer, e.g. 4096,4096 or none")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=30, help="steps in the profiled epoch")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    topology = Topology(args.filters, args.conv_layers, dense_units(args.dense))
    train, val = random_images(args.steps * args.batch_size), random_images(args.batch_size)
    config = TrainConfig(epochs=1, batch_size=args.batch_size)
    fit(create_model(topology), train, val, config, progress=False)  # warm-up: oneDNN primitives, the heap
    model = create_model(topology)  # initialised outside the profile
    with profile(activities=[ProfilerActivity.CPU]) as profiler:  # the epoch's fixed work (a copy of the weights,
        epoch = fit(model, train, val, config, progress=False).history[0]  # validation) is spread over the steps
    print(f"{topology.name}, batch {args.batch_size}, {args.threads} thread(s): "
          f"{epoch['seconds'] / args.steps * 1000:.1f} ms per step (profiled)")
    print("| operator | ms per step |\n| --- | ---: |")
    for event in sorted(profiler.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)[:8]:
        print(f"| {event.key} | {event.self_cpu_time_total / 1000 / args.steps:.1f} |")


if __name__ == "__main__":
    main()
