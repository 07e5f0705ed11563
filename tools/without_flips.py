"""Copy a residual CNN's model folder so that it scores without test-time flips: the same weights, one view.

    python tools/without_flips.py RUN_DIR OUT_DIR

A `resnet*` model trained with `flip_tta` averages the logits of each image and its mirror, which doubles its
cost; an ensemble's members already score without (`cifake ensemble`). This writes OUT_DIR/model.safetensors and
OUT_DIR/config.json (the run's, with `flip_tta` false; `cifake.models.io.save_with_flips`), so evaluate,
calibrate, export, robustness, predict and bench_predict.py measure the single-view model. The run record stays,
so `cifake calibrate` and `evaluate --split validation` carve the run's own validation images again.
"""

from __future__ import annotations

import sys
from pathlib import Path

from cifake.models.io import save_with_flips


def main(run: Path, out: Path) -> None:
    try:
        save_with_flips(run, out, flips=False)
    except (FileNotFoundError, ValueError) as exc:
        sys.exit(str(exc))
    print(f"{out}: {run}'s model without test-time flips")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(Path(sys.argv[1]), Path(sys.argv[2]))
