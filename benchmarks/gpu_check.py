"""The GPU check: what cifake does on an accelerator, in one run of a few minutes (3.5 on an H200). Carry a
41.7 MB subset of CIFAKE to the GPU machine (`cifake data subset $CIFAKE_DATA --out gpu-data/cifake-subset.zip
--train 10000 --test 10000`) and run `python benchmarks/gpu_check.py --data gpu-data/cifake-subset.zip`.

It writes OUT/gpu_check.json after each item: the transformer's recipe trained on the device (timm carried); the
study's CNN's training images/s on the device (also compiled) and on the CPU; that CNN trained --epochs epochs on
the device twice (determinism) and on the CPU (within 0.5 point); `resnet4`'s and a transformer's images/s at 32,
128 and 256 px; the `quick` search and a projection of `paper`. `--device cpu` runs it on the CPU (the tests do).
docs/devices.md#the-gpu-check says more, and gives one H200's figures.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import statistics
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from cifake.data import ImageSet, load_dataset
from cifake.devices import device_name, resolve_device
from cifake.models import Topology, create_model, resolve_topology
from cifake.runfolder import RunFolder
from cifake.search.grid import PROFILES
from cifake.training.config import TrainConfig, read_recipe
from cifake.training.loop import fit, seed_everything
from cifake.training.split import Split
from cifake.workflows.experiment import train_run
from cifake.workflows.search import run_search

say = functools.partial(print, flush=True)
PAPER_TRAIN_IMAGES = 90_000  # the paper profile trains on the whole train split less a tenth for validation


def main() -> None:
    args = _arguments()
    device = resolve_device(args.device)
    out = Path(args.out)
    if out.exists() and any(out.iterdir()):  # finished runs would be reused, and their times are not this run's
        raise SystemExit(f"{out} is not empty: give a new --out, so every figure is measured by this run")
    out.mkdir(parents=True, exist_ok=True)
    data = load_dataset(args.data, cache_root=args.cache, progress=False)
    report = {"device": str(device), "device_name": device_name(device), "torch": torch.__version__, "data": args.data}
    say(f"device {device} ({device_name(device)}), torch {torch.__version__}")
    for measure in (vit_recipe, throughput, training, sizes, search):  # a run stopped at its limit keeps the JSON
        report[measure.__name__] = measure(data, device, args, out)
        (out / "gpu_check.json").write_text(json.dumps(report, indent=1))
    say(f"written {out / 'gpu_check.json'}")


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="CIFAKE source, e.g. the subset zip")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", default="gpu-check", help="folder for runs and gpu_check.json")
    parser.add_argument("--cache", help="cache folder for decoded images")
    parser.add_argument("--epochs", type=int, default=5, help="epochs of the accuracy and determinism runs")
    parser.add_argument("--throughput-images", type=int, default=20_000)
    parser.add_argument("--size-images", type=int, default=2048, help="random images per size")
    parser.add_argument("--search-filters", default="16,32,64,128", help="the quick profile's, or fewer")
    parser.add_argument("--vit-recipe", default="recipes/vit.json", help="the transformer's recipe")
    parser.add_argument("--vit-epochs", type=int, help="its epochs (default: the recipe's)")
    parser.add_argument("--search-conv-layers", default="1,2,3")
    parser.add_argument("--search-dense-units", default="32,128,512")
    return parser.parse_args()


def throughput(data, device: torch.device, args, out: Path) -> dict:
    """Images/s of one training epoch of the study's CNN, best epoch after the first (which pays for compiling)."""
    train, val = data["train"].limit(args.throughput_images // 2).in_memory(), data["test"].limit(500).in_memory()
    modes = [] if device.type == "cpu" else ["off", "default", "reduce-overhead"]
    settings = {"cpu": TrainConfig(epochs=2, patience=9, device="cpu")} | {
        device.type + ("" if mode == "off" else f" compile {mode}"):
            TrainConfig(epochs=3, patience=9, device=str(device), compile=mode) for mode in modes}
    rates = {}
    for name, config in settings.items():
        seed_everything(1)
        try:
            history = fit(create_model("paper"), train, val, config, progress=False).history
            rates[name] = max(row["images_per_second"] for row in history[1:])
        except Exception as exc:  # a compile mode may not work on every stack; the check goes on
            rates[name] = f"failed: {type(exc).__name__}: {exc}"[:300]
        say(f"training throughput, study's CNN, batch 64, {len(train):,} images: {name}: {rates[name]} images/s")
    return rates


def sizes(data, device: torch.device, args, out: Path) -> dict:
    """Images/s of resnet4 and of a transformer (timm carried) at 32, 128 and 256 px, best epoch after the first
    (random pixels: the rate does not depend on them)."""
    images, rates = args.size_images, {"resnet4": {}, **({"vit": {}} if importlib.util.find_spec("timm") else {})}
    for family, size in [(family, size) for family in rates for size in (32, 128, 256)]:
        rng = np.random.default_rng(size)
        pixels, labels = rng.integers(0, 256, (images, size, size, 3), np.uint8), np.arange(images) % 2
        names = np.array(["x"] * images)
        train = ImageSet(pixels, labels.astype(np.uint8), np.zeros(images, np.int8), names,
                         np.zeros((images, 32), np.uint8), names)
        config = TrainConfig(epochs=3, patience=9, device=str(device), image_size=size)
        seed_everything(1)
        topology = "resnet4" if family == "resnet4" else f"vit-p{size // 8}-d6-w128-conv"
        history = fit(create_model(topology, config.input), train, train.take(np.arange(min(64, images))), config,
                      progress=False).history
        rates[family][size] = max(row["images_per_second"] for row in history[1:])
        say(f"training throughput, {topology}, batch 64, {images:,} at {size} px: {rates[family][size]} images/s")
    return rates


def training(data, device: torch.device, args, out: Path) -> dict:
    """The study's CNN trained on the device (twice, for determinism) and on the CPU; test metrics compared."""
    epochs = args.epochs
    config = TrainConfig(epochs=epochs, patience=epochs)
    runs = {}
    for name, spec in (("device", str(device)), ("device again", str(device)), ("cpu", "cpu")):
        if name == "cpu" and device.type == "cpu":
            runs["cpu"] = runs["device"]
            continue
        folder = out / "runs" / name.replace(" ", "-")
        runs[name] = record = train_run(data, folder, Topology(32, 2, (64,)), replace(config, device=spec),
                                        Split(0.1, None), progress=False, plots=False)
        say(f"{epochs} epochs on {spec}: test accuracy {record['test']['accuracy']:.4f}, "
            f"{record['train_images_per_second']:,.0f} images/s, {record['seconds']:.1f} s")
    identical = _scores(out / "runs" / "device") == _scores(out / "runs" / "device-again")
    gap = abs(runs["device"]["test"]["accuracy"] - runs["cpu"]["test"]["accuracy"]) * 100
    say(f"determinism: two runs on {device} give {'identical' if identical else 'DIFFERENT'} metrics")
    say(f"device vs CPU test accuracy: {gap:.2f} point apart ({'within' if gap <= 0.5 else 'MORE than'} 0.5)")
    return {"test_accuracy": {k: v["test"]["accuracy"] for k, v in runs.items()},
            "images_per_second": {k: v["train_images_per_second"] for k, v in runs.items()},
            "deterministic": identical, "device_cpu_gap_points": round(gap, 3)}


def _scores(run: Path) -> tuple:
    """What must repeat exactly: every epoch's losses and accuracies, and the validation and test metrics."""
    record = RunFolder(run).read_record()
    losses = [{k: row[k] for k in ("train_loss", "train_accuracy", "val_loss", "val_accuracy")}
              for row in RunFolder(run).read_history()]
    return json.dumps(record["test"], sort_keys=True), json.dumps(record["validation"], sort_keys=True), losses


def search(data, device: torch.device, args, out: Path) -> dict:
    """The quick profile's search (with a few dense heads, which it leaves out, to time them) on the device, and a
    projection of the paper profile from its epoch times."""
    quick = PROFILES["quick"]
    ints = lambda text: tuple(int(t) for t in text.split(","))  # noqa: E731
    space = replace(quick.space, filters=ints(args.search_filters), conv_layers=ints(args.search_conv_layers),
                    dense_units=ints(args.search_dense_units), dense_layers=(1, 2))
    started = time.perf_counter()
    summary = run_search(data, out / "quick-search", space, quick.budget, use_ray=False, device=str(device),
                         progress=False)
    wall = time.perf_counter() - started
    trials = summary["stage1"] + summary["stage2"]
    per_image = {t["name"]: _seconds_per_image(out / "quick-search" / "trials" / t["name"]) for t in trials}
    stage1 = sum(per_image[t["name"]] for t in summary["stage1"])
    heads = [per_image[t["name"]] for t in summary["stage2"]] or [0.0]
    paper_space, paper_budget = PROFILES["paper"].space, PROFILES["paper"].budget
    paper_heads = len(paper_space.dense_units) * len(paper_space.dense_layers)
    epochs = paper_budget.train.epochs
    scale = PAPER_TRAIN_IMAGES * epochs  # every trial run to its last epoch: an upper bound
    projection = (stage1 * 12 / max(1, len(summary["stage1"])) + max(heads) * paper_heads) * scale
    say(f"quick profile on {device}: {len(trials)} trials in {wall:.0f} s")
    for name, seconds in per_image.items():
        say(f"  {name}: {seconds * 1e6:.1f} us per training image per epoch (with validation)")
    say(f"paper profile projection on one {device.type} device, trials one after another: (sum over the 12 extractors "
        f"+ {paper_heads} heads x the slowest head measured) x {PAPER_TRAIN_IMAGES:,} images x {epochs} "
        f"epochs = {projection / 60:.1f} min (an upper bound: early stopping ends most trials sooner)")
    return {"quick_wall_seconds": round(wall, 1), "trials": len(trials),
            "seconds_per_image": {k: round(v, 9) for k, v in per_image.items()},
            "paper_projection_minutes": round(projection / 60, 1), "best": summary["best"]}


def vit_recipe(data, device: torch.device, args, out: Path) -> dict:
    """The transformer's recipe trained on the device, its time projected to the whole train split less a tenth."""
    if not importlib.util.find_spec("timm"):
        return {"skipped": "timm is not installed: carry its wheel"}
    topology, settings = read_recipe(args.vit_recipe)
    epochs = {"epochs": args.vit_epochs} if args.vit_epochs else {}
    config = TrainConfig.from_dict(settings | {"device": str(device)} | epochs)
    record = train_run(data, out / "runs" / "vit-recipe", resolve_topology(topology), config, Split(0.1, None),
                       progress=False, plots=False)
    minutes = _seconds_per_image(out / "runs" / "vit-recipe") * PAPER_TRAIN_IMAGES * config.epochs / 60
    say(f"{topology} by {args.vit_recipe} on {device}: {config.epochs} epochs, "
        f"{record['train_images_per_second']:,.0f} images/s, test accuracy {record['test']['accuracy']:.4f}; "
        f"{PAPER_TRAIN_IMAGES:,} images: {minutes:.1f} min")
    return {"topology": topology, "epochs": config.epochs, "train_images": record["split"]["train"],
            "seconds": round(record["seconds"], 1), "images_per_second": record["train_images_per_second"],
            "test_accuracy": record["test"]["accuracy"], "full_split_minutes": round(minutes, 1)}


def _seconds_per_image(trial: Path) -> float:
    """Median wall time per training image of a trial's epochs, validation included."""
    images = RunFolder(trial).read_record()["split"]["train"]
    return statistics.median(float(row["wall_seconds"]) for row in RunFolder(trial).read_history()) / images


if __name__ == "__main__":
    main()
