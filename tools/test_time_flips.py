"""Copy a model folder so that it scores with test-time flips or without them: the same weights, two views or one.

    python tools/test_time_flips.py RUN_DIR OUT_DIR          # without: one view
    python tools/test_time_flips.py RUN_DIR OUT_DIR --on     # with: the mean logit of the image and its mirror

A `resnet*` model trained with `flip_tta` averages the logits of each image and its mirror, which doubles its
cost; an ensemble's members already score without (`cifake ensemble`). A transformer trained with `--flip` scores
one view, and may gain from both (a run with the training setting `test_time_flips` is saved with them). This
writes OUT_DIR/model.safetensors and OUT_DIR/config.json (the run's, with `flip_tta` set;
`cifake.models.io.save_with_flips`), so evaluate, calibrate, export, robustness, predict and bench_predict.py
measure the model as chosen. The run record stays, so `cifake calibrate` and `evaluate --split
validation` carve the run's own validation images again.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cifake.models.io import save_with_flips


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--on", action="store_true", help="score with test-time flips (default: without)")
    args = parser.parse_args()
    try:
        save_with_flips(args.run, args.out, flips=args.on)
    except (FileNotFoundError, ValueError) as exc:
        parser.exit(1, f"{exc}\n")
    print(f"{args.out}: {args.run}'s model {'with' if args.on else 'without'} test-time flips")


if __name__ == "__main__":
    main()
