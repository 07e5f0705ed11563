"""The study CNN's training step with each conv block in the study's order (conv, ReLU, pool) and pooling first
(conv, pool, ReLU: what `CifakeCNN` runs while training; the same weights bit for bit), alternated in one
process on one batch of 64, through the trainer's own step (autocast where the CPU has bf16 kernels, channels_last,
fused Adam):

    python benchmarks/bench_pool_first.py --threads 2 --rounds 15      # the study's CNN, f32-c2-d64
    python benchmarks/bench_pool_first.py --filters 128 --conv-layers 3 --dense none --threads 1 --rounds 5
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from common import dense_units

from cifake.models import build_model, resolve_topology
from cifake.models.cnn import CifakeCNN
from cifake.training import TrainConfig
from cifake.training.memory import keep_freed_memory
from cifake.training.trainer import _Step

ORDERS = {"conv, ReLU, pool (the study's)": lambda self, x: self.features(x), "conv, pool, ReLU": CifakeCNN._features}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--filters", type=int, help="the study's CNN (paper) unless given")
    parser.add_argument("--conv-layers", type=int)
    parser.add_argument("--dense", help="units per dense layer, e.g. 4096,4096 or none")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=15, help="alternations of 10 timed steps per order")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    keep_freed_memory()
    torch.manual_seed(1)
    topology = resolve_topology("paper", args.filters, args.conv_layers, dense_units(args.dense))
    model = build_model(topology).to(memory_format=torch.channels_last)
    config = TrainConfig()
    step = _Step(model, config, torch.device("cpu"), None)
    pixels = torch.randint(0, 256, (64, 3, 32, 32)).float().to(memory_format=torch.channels_last)
    labels = (torch.rand(64) > 0.5).float()
    for _ in range(5):  # the first steps allocate Adam's moments and warm the allocator
        step(pixels, labels, config)
    times: dict[str, list[float]] = {order: [] for order in ORDERS}
    try:
        for _ in range(args.rounds):
            for order, features in ORDERS.items():
                CifakeCNN._features = features
                start = time.perf_counter()
                for _ in range(10):
                    step(pixels, labels, config)
                times[order].append((time.perf_counter() - start) / 10)
    finally:
        CifakeCNN._features = ORDERS["conv, pool, ReLU"]
    print(f"{topology.name}, batch 64, {args.threads} thread(s), {step.precision or 'fp32'}")
    print("| order | median ms/step | min ms/step |")
    print("| --- | ---: | ---: |")
    for order, seconds in times.items():
        print(f"| {order} | {1000 * statistics.median(seconds):.1f} | {1000 * min(seconds):.1f} |")


if __name__ == "__main__":
    main()
