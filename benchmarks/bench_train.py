"""Training throughput through the real trainer: precision x memory format x batch size (default model: `paper`).

`python benchmarks/bench_train.py` times one epoch over a 20,000-image subset of CIFAKE train for each setting.
`--full` also trains each precision for 5 epochs on the full train split and reports test accuracy, to check
that the faster setting is as accurate. `--topology`, `--filters`, `--conv-layers` and `--dense` pick the model;
run once more with CIFAKE_KEEP_FREED_MEMORY=0 to see what keeping freed memory gains (cifake/training/memory.py).
The precision column names what the trainer ran: `bf16` is fp32 on a CPU without bf16 kernels
(cifake.devices.cpu_runs_bf16), unless `--force-bf16` makes it run bf16 there, to measure what that costs:

    python benchmarks/bench_train.py --batch-sizes 64 --precisions fp32,bf16 --formats channels_last --force-bf16

and the largest dense head of the search:

    python benchmarks/bench_train.py --filters 64 --conv-layers 2 --dense 4096,4096,4096 --batch-sizes 64 \
        --precisions bf16 --formats channels_last --images 6000 --threads 1
"""

from __future__ import annotations

import argparse
import itertools
import os

import torch
from common import data_path, dense_units

from cifake import devices
from cifake.data import load_dataset, train_val_split
from cifake.metrics import evaluate
from cifake.models import Topology, create_model, resolve_topology
from cifake.training.config import TrainConfig
from cifake.training.loop import fit, seed_everything


def throughput(train, val, batch_size: int, bf16: bool, channels_last: bool, repeats: int,
               topology: str | Topology = "paper", device: str = "cpu", compile: str = "off") -> float:
    """Best epoch rate of `repeats` one-epoch runs: the best is the least disturbed by other work on the machine.
    A compiled model trains two epochs, and the second is timed: the first pays for compiling."""
    rates = []
    epochs = 1 if compile == "off" else 2
    for _ in range(repeats):
        seed_everything(1)
        config = TrainConfig(epochs=epochs, patience=epochs, batch_size=batch_size, bf16=bf16,
                             channels_last=channels_last, device=device, compile=compile)
        history = fit(create_model(topology), train, val, config, progress=False).history
        rates.append(history[-1]["images_per_second"])
    return max(rates)


def ran(bf16: bool, device: str) -> str:
    """The precision the trainer runs when asked for bf16 or not, on this device."""
    name = devices.precision_name(devices.mixed_precision(devices.resolve_device(device), bf16))
    return name.replace(" autocast", "").replace(" + gradient scaling", "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--batch-sizes", default="32,64,128,256")
    parser.add_argument("--repeats", type=int, default=2, help="timed epochs per setting (best is reported)")
    parser.add_argument("--full", action="store_true", help="also train 5 epochs per precision and test")
    parser.add_argument("--topology", default="paper", help="named topology, e.g. paper or resnet")
    parser.add_argument("--filters", type=int, help="override the topology's filters (the study's CNN only)")
    parser.add_argument("--conv-layers", type=int, help="override its conv layers")
    parser.add_argument("--dense", help="override its dense layers, e.g. 4096,4096,4096 or none")
    parser.add_argument("--threads", type=int, help="torch threads (default: all cores)")
    parser.add_argument("--precisions", default="fp32,bf16", help="fp32, bf16 or both")
    parser.add_argument("--formats", default="NCHW,channels_last", help="NCHW, channels_last or both")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N, mps or auto")
    parser.add_argument("--compile", default="off", help="torch.compile modes to time: off, default, reduce-overhead")
    parser.add_argument("--force-bf16", action="store_true", help="train bf16 even on a CPU without bf16 kernels")
    args = parser.parse_args()
    if args.force_bf16:
        devices.cpu_runs_bf16 = lambda: True
    if args.threads:
        torch.set_num_threads(args.threads)
    topology = resolve_topology(args.topology, filters=args.filters, conv_layers=args.conv_layers,
                                dense=dense_units(args.dense))
    data = load_dataset(data_path(), progress=False)
    train, val = train_val_split(data["train"].in_memory(), 0.1, seed=1)
    subset = train.limit(args.images // 2)
    print(f"torch {torch.__version__}, {devices.device_name(devices.resolve_device(args.device))}; {topology.name}; "
          f"{len(subset):,} images per timed epoch; keep freed memory: "
          f"{os.environ.get('CIFAKE_KEEP_FREED_MEMORY', '1') != '0'}")
    print("| batch | precision | memory format | compile | train images/s |")
    print("| ---: | --- | --- | --- | ---: |")
    for batch_size, bf16, channels_last, compile in itertools.product(
        map(int, args.batch_sizes.split(",")), [p == "bf16" for p in args.precisions.split(",")],
        [f == "channels_last" for f in args.formats.split(",")], args.compile.split(","),
    ):
        rate = throughput(subset, val.limit(500), batch_size, bf16, channels_last, args.repeats,
                          topology, args.device, compile)
        print(f"| {batch_size} | {ran(bf16, args.device)} | {'channels_last' if channels_last else 'NCHW'} "
              f"| {compile} | {rate:,.0f} |", flush=True)
    if args.full:
        print("\n| precision | epochs | best epoch | test accuracy | median train images/s |")
        print("| --- | ---: | ---: | ---: | ---: |")
        for bf16 in (False, True):
            seed_everything(1)
            model = create_model(topology)
            config = TrainConfig(epochs=5, bf16=bf16, device=args.device)  # default batch, channels_last
            result = fit(model, train, val, config, progress=False)
            metrics, _ = evaluate(model, data["test"])
            rates = sorted(row["images_per_second"] for row in result.history)
            print(f"| {ran(bf16, args.device)} | {len(result.history)} | {result.best_epoch} "
                  f"| {metrics['accuracy']:.4f} | {rates[len(rates) // 2]:,.0f} |", flush=True)


if __name__ == "__main__":
    main()
