"""Cold and warm load time of the whole CIFAKE source (120,000 JPEGs): `python benchmarks/bench_data.py`.

`--faces DIR --size 128` instead loads the face set (DIR/faces.zip: 240 JPEGs of 512 px) at 128 px, cold, and
compares the scaled decoding (simplejpeg at 1/4 scale) with Pillow's draft mode per image."""

from __future__ import annotations

import argparse
import io
import tempfile
import zipfile
from pathlib import Path

import numpy as np
from common import data_path, timed
from PIL import Image

from cifake.data import Preprocess, decode_image, load_dataset
from cifake.data.decode import image_to_pixels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", type=int, default=None, help="decode processes (default: all cores)")
    parser.add_argument("--faces", type=Path, default=None, help="folder of faces.zip: time it instead of CIFAKE")
    parser.add_argument("--size", type=int, default=32, help="decode at this size (with --faces)")
    args = parser.parse_args()
    if args.faces:
        return load_faces(args.faces / "faces.zip", args.size, args.workers)
    source, results = data_path(), {}
    with tempfile.TemporaryDirectory() as cache:
        with timed("cold", results):
            data = load_dataset(source, cache_root=cache, workers=args.workers, progress=False)
        with timed("warm", results):
            again = load_dataset(source, cache_root=cache, progress=False)
        images = sum(len(s) for s in again.splits.values())
        print(f"source: {source}  images: {images:,}  skipped: {len(data.skipped)}")
        print(f"cold load (decode + write cache): {results['cold']:.2f} s  ({images / results['cold']:,.0f} images/s)")
        print(f"warm load (memory-map the cache): {results['warm']:.3f} s")
    with zipfile.ZipFile(source / "train.zip") as archive:
        compare_decoders([archive.read(info) for info in archive.infolist()[:4000]])


def load_faces(source: Path, size: int, workers: int | None) -> None:
    results = {}
    for attempt in range(3):  # cold each time: a new cache
        with tempfile.TemporaryDirectory() as cache, timed(attempt, results):
            data = load_dataset(source, preprocess=Preprocess(size), cache_root=cache, workers=workers, progress=False)
    images = sum(len(s) for s in data.splits.values())
    print(f"{source}: {images} images to {size} px, cold load (decode + cache) best of 3 {min(results.values()):.3f} s "
          f"({images / min(results.values()):,.0f} images/s)")
    with zipfile.ZipFile(source) as archive:
        compare_decoders([archive.read(name) for name in archive.namelist()], size, "face")


def compare_decoders(blobs: list[bytes], size: int = 32, what: str = "CIFAKE") -> None:
    """Per-image decode time of the fast path (simplejpeg) against Pillow, and whether the pixels agree."""
    timings, decoded = {}, {}
    for name, decode in (("decode_image", lambda b: decode_image(b, size)[0]),
                         ("Pillow", lambda b: image_to_pixels(Image.open(io.BytesIO(b)), size)[0])):
        with timed(name, timings):
            decoded[name] = [decode(blob) for blob in blobs]
    same = all(np.array_equal(a, b) for a, b in zip(*decoded.values()))
    print(f"decode_image {timings['decode_image'] / len(blobs) * 1e6:.0f} us/image, Pillow "
          f"{timings['Pillow'] / len(blobs) * 1e6:.0f} us/image over {len(blobs):,} {what} files (one core); "
          f"pixels identical: {same}")


if __name__ == "__main__":
    main()
