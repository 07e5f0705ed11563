"""Cold and warm load time of the whole CIFAKE source (120,000 JPEGs): `python benchmarks/bench_data.py`."""

from __future__ import annotations

import argparse
import tempfile

from common import data_path, timed

from cifake.data import load_dataset


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


if __name__ == "__main__":
    main()
