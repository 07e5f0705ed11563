"""Cold and warm load time of the whole CIFAKE source (120,000 JPEGs): `python benchmarks/bench_data.py`."""

from __future__ import annotations

import argparse
import io
import tempfile
import time
import zipfile

import numpy as np
from common import data_path, timed
from PIL import Image

from cifake.data import decode_image, load_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", type=int, default=None, help="decode processes (default: all cores)")
    args = parser.parse_args()
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
    compare_decoders(source)


def compare_decoders(source, count: int = 4000) -> None:
    """Per-image decode time of the fast path (simplejpeg) against Pillow, and whether the pixels agree."""
    with zipfile.ZipFile(source / "train.zip") as archive:
        blobs = [archive.read(info) for info in archive.infolist()[:count]]
    start = time.perf_counter()
    fast = [decode_image(blob)[0] for blob in blobs]
    fast_us = (time.perf_counter() - start) / count * 1e6
    start = time.perf_counter()
    pillow = [np.asarray(Image.open(io.BytesIO(blob)).convert("RGB")) for blob in blobs]
    pillow_us = (time.perf_counter() - start) / count * 1e6
    same = all(np.array_equal(a, b) for a, b in zip(fast, pillow))
    print(f"decode_image {fast_us:.0f} us/image, Pillow {pillow_us:.0f} us/image over {count:,} CIFAKE files; "
          f"pixels identical: {same}")


if __name__ == "__main__":
    main()
