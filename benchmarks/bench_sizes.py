"""Training at any image size, in bounded memory: `python benchmarks/bench_sizes.py --size 256 --images 40000`.

Makes a dataset of N images once (CIFAKE train, half REAL and half FAKE, enlarged bilinearly to SIZE px and saved
as JPEG quality 90 in a stored zip under --work), decodes it into the cache at SIZE, then trains TOPOLOGY for one
epoch through the real run (`train_run`, data read from the cache batch by batch when over RESIDENT_BYTES).
Prints decoding and training images/s and the peak resident memory of this process. The residual family's rate
per size on a smaller set:

    python benchmarks/bench_sizes.py --size 128 --images 2000 --topology resnet4
"""

from __future__ import annotations

import argparse
import io
import multiprocessing
import resource
import shutil
import tempfile
import time
import zipfile
from pathlib import Path

from common import data_path
from PIL import Image

from cifake.data import Preprocess, load_dataset
from cifake.models import Topology, resolve_topology
from cifake.training.config import TrainConfig
from cifake.workflows.experiment import train_run


def enlarge(job: tuple[list[str], int]) -> list[tuple[str, bytes]]:
    names, size = job
    with zipfile.ZipFile(data_path() / "train.zip") as archive:
        out = []
        for name in names:
            image = Image.open(io.BytesIO(archive.read(name))).convert("RGB").resize((size, size), Image.BILINEAR)
            buffer = io.BytesIO()
            image.save(buffer, "JPEG", quality=90)
            out.append((name, buffer.getvalue()))
    return out


def make_dataset(path: Path, images: int, size: int) -> Path:
    if path.is_file():
        return path
    with zipfile.ZipFile(data_path() / "train.zip") as archive:
        names = [n for n in archive.namelist() if n.endswith(".jpg")]
    real = [n for n in names if "/REAL/" in n][: images // 2]
    fake = [n for n in names if "/FAKE/" in n][: images - images // 2]
    chosen = real + fake
    jobs = [(chosen[i:i + 500], size) for i in range(0, len(chosen), 500)]
    partial = path.with_suffix(".partial")
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_STORED) as out, multiprocessing.Pool() as pool:
        for written in pool.imap(enlarge, jobs):
            for name, data in written:
                out.writestr(name, data)
    partial.rename(path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--images", type=int, default=40_000)
    parser.add_argument("--topology", default=None, help="a named topology (default: the study's CNN, 8 filters, "
                                                           "3 conv layers, no dense layer)")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "cifake-bench-sizes")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    source = make_dataset(args.work / f"cifake-{args.images}-{args.size}px.zip", args.images, args.size)
    made = time.perf_counter()
    data = load_dataset(source, preprocess=Preprocess(args.size), cache_root=args.work / "cache", refresh=True,
                        progress=False)
    decoded = time.perf_counter()
    topology = resolve_topology(args.topology) if args.topology else Topology(8, 3, ())
    shutil.rmtree(args.work / "run", ignore_errors=True)
    record = train_run(data, args.work / "run", topology, TrainConfig(epochs=1, image_size=args.size),
                       progress=False, plots=False)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    images = len(data["train"])
    print(f"{images:,} images at {args.size} px ({images * args.size ** 2 * 3 / 1e9:.1f} GB decoded); "
          f"made in {made - started:.0f} s")
    print(f"decode into the cache: {decoded - made:.1f} s ({images / (decoded - made):,.0f} images/s)")
    print(f"{record['name']}: one epoch at {record['train_images_per_second']:,.0f} training images/s; "
          f"run {record['seconds']:.0f} s")
    print(f"peak resident memory of this process: {peak:,.0f} MB")


if __name__ == "__main__":
    main()
