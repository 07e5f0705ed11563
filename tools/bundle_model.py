"""Copy a trained run into the package as the bundled default model, with its model card.

    python tools/bundle_model.py RUN_DIR    (`make bundle` trains, evaluates and runs this)

Writes src/cifake/models/bundled/{model.safetensors, config.json, metrics.json, MODEL_CARD.md}. Every number in
the card is read from the run's metrics.json and eval-test-no-leaked.json, which `cifake train` and
`cifake evaluate --exclude-leaked` wrote.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

BUNDLED = Path(__file__).resolve().parents[1] / "src" / "cifake" / "models" / "bundled"
ROWS = [("accuracy", "accuracy"), ("loss", "loss (binary cross-entropy)"), ("precision", "precision (REAL positive)"),
        ("recall", "recall (REAL positive)"), ("f1", "F1 (REAL positive)"), ("fake_precision", "precision (FAKE positive)"),
        ("fake_recall", "recall (FAKE positive)"), ("fake_f1", "F1 (FAKE positive)"), ("roc_auc", "ROC-AUC"),
        ("average_precision", "average precision")]


def card(config: dict, test: dict, no_leaks: dict) -> str:
    topology, training = config["topology"], config["training"]
    lines = [
        "# Model card: cifake bundled detector",
        "",
        "## Model",
        f"The CIFAKE study's CNN, topology `paper`: {topology['conv_layers']} conv layers (3x3, ReLU, 2x2 max-pool) of "
        f"{topology['filters']} filters, dense {topology['dense']}, one logit; {training['parameters']:,} parameters. "
        "Input: a 32x32 RGB image (any other size is resized bilinearly, as in the study). "
        "Output: one logit, the evidence for REAL; P(REAL) = sigmoid(logit), P(FAKE) = 1 - P(REAL).",
        "",
        "**Label convention:** REAL = 1 is the positive class (as in the study), FAKE = 0. `cifake predict` reports "
        "P(FAKE) and calls an image FAKE when P(FAKE) >= the threshold (0.5 by default).",
        "",
        "## Training",
        f"CIFAKE train split ({training['data']['train']:,} images for training, {training['data']['validation']:,} "
        f"carved out for validation, seeded and stratified), Adam lr {training['config']['learning_rate']}, batch "
        f"{training['config']['batch_size']}, at most {training['config']['epochs']} epochs with early stopping on "
        f"validation loss (best epoch {training['best_epoch']} of {training['epochs_run']}), seed {training['config']['seed']}, "
        "bf16 autocast on CPU. Command: `make bundle` (`cifake train --data $CIFAKE_DATA --topology paper "
        "--out runs/bundled`, then `cifake evaluate runs/bundled --data $CIFAKE_DATA --exclude-leaked`).",
        "",
        "## Test metrics (official CIFAKE test split)",
        "",
        f"| metric | all {test['n']:,} test images | without the {no_leaks['excluded_leaked']} leaked FAKE duplicates |",
        "| --- | ---: | ---: |",
        *[f"| {label} | {test[key]:.4f} | {no_leaks[key]:.4f} |" for key, label in ROWS],
        "",
        "## Intended use",
        "Research and auditing on CIFAKE-like images: 32x32 thumbnails of the ten CIFAR-10 classes, real photographs "
        "against Stable Diffusion 1.4 renders, reproducing and extending the study.",
        "",
        "## Limits",
        "- One generator: every FAKE training image came from Stable Diffusion 1.4 (Euler Ancestral, 50 steps, 512 px "
        "resized to 32 px). Images of other generators (other diffusion models, GANs, newer SD versions, edited "
        "photos) are out of distribution; its verdicts on them are not validated.",
        "- Heavily resized inputs: everything is shrunk to 32x32 first. Large photographs lose the fine detail the "
        "model reads, and re-compression, blur or noise shift its evidence.",
        "- Ten object classes of CIFAR-10; other content is out of distribution.",
        f"- The probability is not calibrated, and {100 * (1 - test['accuracy']):.1f} % of the test images are misclassified.",
        "- Not a forensic tool: do not accuse anyone of faking an image on its verdict alone.",
        "",
    ]
    return "\n".join(lines)


def main(run_dir: str) -> None:
    run = Path(run_dir)
    config = json.loads((run / "config.json").read_text())
    config["training"]["data"].pop("cache", None)  # a path on the machine that trained it
    metrics = json.loads((run / "metrics.json").read_text())
    no_leaks = json.loads((run / "eval-test-no-leaked.json").read_text())
    BUNDLED.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(run / "model.safetensors", BUNDLED / "model.safetensors")
    (BUNDLED / "config.json").write_text(json.dumps(config, indent=2))
    summary = {"test": metrics["test"], "test_without_leaked": no_leaks, "validation": metrics["validation"]}
    (BUNDLED / "metrics.json").write_text(json.dumps(summary, indent=2))
    (BUNDLED / "MODEL_CARD.md").write_text(card(config, metrics["test"], no_leaks))
    print(f"bundled {run} into {BUNDLED}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    main(sys.argv[1])
