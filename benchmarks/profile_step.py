"""Where one training step's time goes: torch.profiler over the trainer's step (bf16 autocast, channels_last,
fused Adam) on random pixels.

`python benchmarks/profile_step.py --filters 64 --conv-layers 2 --dense 4096,4096,4096 --threads 1` prints the
mean step time and the operators that took the most time, per step.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.nn import functional as F
from torch.profiler import ProfilerActivity, profile

from cifake.models import Topology, build_model
from cifake.training.memory import keep_freed_memory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--filters", type=int, default=64)
    parser.add_argument("--conv-layers", type=int, default=2)
    parser.add_argument("--dense", default="4096,4096,4096", help="units per dense layer, e.g. 4096,4096 or none")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    keep_freed_memory()  # as fit() does
    torch.set_num_threads(args.threads)
    torch.manual_seed(1)
    dense = tuple(int(u) for u in args.dense.split(",") if u not in ("", "none"))
    model = build_model(Topology(args.filters, args.conv_layers, dense)).to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    pixels = torch.randint(0, 256, (args.batch_size, 3, 32, 32)).float().contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, 2, (args.batch_size,)).float()

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model(pixels)
        loss = F.binary_cross_entropy_with_logits(logits.float(), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    for _ in range(3):  # warm-up: oneDNN primitives, the allocator's heap
        step()
    started = time.perf_counter()
    for _ in range(args.steps):
        step()
    print(f"{Topology(args.filters, args.conv_layers, dense).name}, batch {args.batch_size}, {args.threads} thread(s): "
          f"{(time.perf_counter() - started) / args.steps * 1000:.1f} ms per step")
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        for _ in range(args.steps):
            step()
    print("| operator | ms per step |\n| --- | ---: |")
    for event in sorted(profiler.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)[:8]:
        print(f"| {event.key} | {event.self_cpu_time_total / 1000 / args.steps:.1f} |")


if __name__ == "__main__":
    main()
