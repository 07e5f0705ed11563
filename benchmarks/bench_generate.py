"""Images/s of `cifake generate`: by default the tiny random-weight pipeline on this CPU.

`python benchmarks/bench_generate.py` builds the tiny pipeline in a temporary folder and times 16 images
(2 classes x 8, 50 Euler Ancestral steps, 64 px renders, batch 4). With `--model PATH --device cuda --size 512
--dtype fp16` it times a real Stable Diffusion 1.4 folder on a GPU, the study's setting.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from cifake.generate import GenerateConfig
from cifake.generate.pipeline import generate, load_pipeline
from cifake.generate.tiny import build_tiny_pipeline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", help="diffusers model folder (default: the tiny pipeline)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="fp32")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--per-class", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        model = args.model or str(build_tiny_pipeline(Path(folder) / "tiny-sd"))
        pipe = load_pipeline(model, "euler-ancestral", args.device, args.dtype)
        config = GenerateConfig(out=str(Path(folder) / "out"), classes=["airplane", "cat"], per_class=args.per_class,
                                model=model, steps=args.steps, size=args.size, device=args.device, dtype=args.dtype,
                                batch_size=args.batch_size)
        generate(GenerateConfig(**{**config.to_dict(), "out": str(Path(folder) / "warm"), "per_class": 1}), pipe,
                 progress=False)  # first call pays one-off costs
        summary = generate(config, pipe, progress=False)
    name = "tiny random-weight pipeline" if not args.model else args.model
    print(f"{name}: {summary['generated']} images, {args.steps} steps, {args.size} px, batch {args.batch_size}, "
          f"{args.device}/{args.dtype}: {summary['seconds']:.2f} s, {summary['images_per_second']:.2f} images/s "
          f"({summary['seconds'] / summary['generated']:.3f} s per image)")


if __name__ == "__main__":
    main()
