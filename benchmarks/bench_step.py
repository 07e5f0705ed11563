"""Time per training step of the search's trials, per way of running them: precision, Adam's implementation and
how the two cores are shared (one trial on 1 thread, two trials at once on 1 thread each, one on 2 threads), and
which thread runs the steps (`--runners`): the process's main thread, as `cifake train` does; a second thread, as a
Ray Tune trial does (glibc serves a second thread from an arena of its own, which maps and unmaps every allocation
over 64 MiB afresh); or a second thread with `MALLOC_ARENA_MAX=1`, as the search starts its Ray workers.

Each setting runs in fresh processes (the trainer's own step: `cifake.training.loop.Step`, batch 64, channels_last,
random pixels); settings are alternated `--rounds` times and the median is printed, so a slow spell on the machine
does not favour one setting. "steps/s" is the machine's throughput: the trials at once divided by the time per step.

    python benchmarks/bench_step.py --topologies f64-c2-d4096-4096-4096,f128-c1-dnone --rounds 3
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time

PLACEMENTS = {"1x1": (1, 1), "2x1": (2, 1), "1x2": (1, 2)}  # trials at once x threads each
RUNNERS = {"main": {}, "thread": {}, "thread-one-arena": {"MALLOC_ARENA_MAX": "1"}}  # runner -> environment


def parse_topology(name: str):
    """f64-c2-d4096-4096 -> Topology(64, 2, (4096, 4096)); f128-c1-dnone -> no dense layers."""
    from cifake.models import Topology

    found = re.fullmatch(r"f(\d+)-c(\d+)-d(none|[\d-]+)", name)
    if not found:
        raise SystemExit(f"{name}: expected a trial name such as f64-c2-d4096-4096 or f128-c1-dnone")
    dense = () if found[3] == "none" else tuple(int(u) for u in found[3].split("-"))
    return Topology(int(found[1]), int(found[2]), dense)


def worker(topology: str, precision: str, adam: str, threads: int, steps: int, runner: str) -> None:
    """One trial's steps in this process, on its main thread or a second one; prints the mean seconds per step."""
    if runner == "main":
        return time_steps(topology, precision, adam, threads, steps)
    second = threading.Thread(target=time_steps, args=(topology, precision, adam, threads, steps))
    second.start()
    second.join()


def time_steps(topology: str, precision: str, adam: str, threads: int, steps: int) -> None:
    """Build the trial's model and optimiser, warm up, time `steps` steps and print the mean as JSON."""
    import torch

    from cifake.models import create_model
    from cifake.training.config import TrainConfig
    from cifake.training.loop import Step
    from cifake.training.memory import keep_freed_memory

    torch.set_num_threads(threads)
    keep_freed_memory()
    torch.manual_seed(1)
    model = create_model(parse_topology(topology)).to(memory_format=torch.channels_last)
    config = TrainConfig(bf16=precision == "bf16")
    step = Step(model, config, torch.device("cpu"), None)
    if adam != "fused":
        step.optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate, foreach=True)
    x = torch.rand(64, 3, 32, 32).to(memory_format=torch.channels_last)
    y = (torch.rand(64) > 0.5).float()
    for _ in range(5):  # the first steps allocate the optimizer's moments and warm the allocator
        step(x, y, config)
    start = time.perf_counter()
    for _ in range(steps):
        step(x, y, config)
    print(json.dumps({"seconds_per_step": (time.perf_counter() - start) / steps}))


def measure(topology: str, precision: str, adam: str, placement: str, runner: str, steps: int) -> float:
    """Mean seconds per step of the trials run together under `placement`."""
    trials, threads = PLACEMENTS[placement]
    command = [sys.executable, __file__, "--worker", topology, precision, adam, str(threads), str(steps), runner]
    # the caller's own MALLOC_ARENA_MAX would make "thread" the one-arena runner too
    environment = {**{k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}, **RUNNERS[runner]}
    runs = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=environment) for _ in range(trials)]
    times = [json.loads(run.communicate()[0])["seconds_per_step"] for run in runs]
    return statistics.mean(times)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        topology, precision, adam, threads, steps, runner = sys.argv[2:8]
        return worker(topology, precision, adam, int(threads), int(steps), runner)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--topologies", default="f64-c2-d4096-4096-4096,f128-c1-dnone")
    parser.add_argument("--precisions", default="bf16,fp32")
    parser.add_argument("--adam", default="fused,foreach")
    parser.add_argument("--placements", default="1x1,2x1,1x2", help=f"of {', '.join(PLACEMENTS)}")
    parser.add_argument("--runners", default="main", help=f"of {', '.join(RUNNERS)}")
    parser.add_argument("--steps", type=int, default=30, help="timed steps per trial")
    parser.add_argument("--rounds", type=int, default=3, help="alternations of every setting (median shown)")
    args = parser.parse_args()
    settings = list(itertools.product(args.topologies.split(","), args.precisions.split(","), args.adam.split(","),
                                      args.placements.split(","), args.runners.split(",")))
    times: dict[tuple, list[float]] = {s: [] for s in settings}
    for _ in range(args.rounds):
        for setting in settings:
            times[setting].append(measure(*setting, args.steps))
    from cifake.devices import cpu_runs_bf16

    if "bf16" in args.precisions and not cpu_runs_bf16():
        print("This CPU has no bf16 kernels: the trainer runs the bf16 rows in fp32 (cifake.devices.cpu_runs_bf16).")
    print("| trial | precision | Adam | trials x threads | runner | ms/step | steps/s |")
    print("| --- | --- | --- | --- | --- | ---: | ---: |")
    for (topology, precision, adam, placement, runner), seconds in times.items():
        median = statistics.median(seconds)
        print(f"| {topology} | {precision} | {adam} | {placement} | {runner} | {1000 * median:.1f} | "
              f"{PLACEMENTS[placement][0] / median:.1f} |")


if __name__ == "__main__":
    main()
