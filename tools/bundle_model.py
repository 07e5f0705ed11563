"""Copy a trained run into the package as the bundled default model, with its model card.

    python tools/bundle_model.py RUN_DIR    (`make bundle` trains, evaluates and runs this)

Writes src/cifake/models/bundled/{model.safetensors, model.onnx, config.json, metrics.json, MODEL_CARD.md}. Every
number in the card is read from files the run's commands wrote: config.json (`cifake train` or `cifake ensemble`),
eval-{test,validation,test-no-leaked}.json (`cifake evaluate`, `--split validation`, `--exclude-leaked`),
calibration.json (`cifake calibrate`),
robustness/robustness.json (`cifake robustness`), outside-{photos,faces}/robustness.json (`cifake robustness`
on the real photographs of tools/outside_photos.py: the generalisation check) and domain-check.json
(tools/domain_check.py: what the domain check changes on those photographs and in domain).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from cifake.report import markdown_table
from cifake.runfolder import RunFolder

sys.path.insert(0, str(Path(__file__).resolve().parent))
from domain_check import verdict_table  # noqa: E402  (a sibling script, not a package)

BUNDLED = Path(__file__).resolve().parents[1] / "src" / "cifake" / "models" / "bundled"
ROWS = [("accuracy", "accuracy"), ("loss", "loss (binary cross-entropy)"), ("precision", "precision (REAL positive)"),
        ("recall", "recall (REAL positive)"), ("f1", "F1 (REAL positive)"),
        ("fake_precision", "precision (FAKE positive)"),
        ("fake_recall", "recall (FAKE positive)"), ("fake_f1", "F1 (FAKE positive)"), ("roc_auc", "ROC-AUC"),
        ("average_precision", "average precision")]


def describe(config: dict) -> str:
    topology, training = config["topology"], config["training"]
    if topology.get("family") == "ensemble":
        shapes = list(dict.fromkeys(_network(m) for m in topology["members"]))
        members = shapes[0] if len(shapes) == 1 else "; ".join(f"member {i}: {s}" for i, s in enumerate(shapes, 1))
        return (f"An ensemble of {len(topology['members'])} networks (`cifake ensemble`: the mean of their logits, "
                f"each scored without test-time flips), {'each ' if len(shapes) == 1 else ''}{members}; "
                f"{training['parameters']:,} parameters in all.")
    return f"{_network(topology)}; {training['parameters']:,} parameters."


def _network(topology: dict) -> str:
    if topology.get("family") == "resnet":
        return (f"a residual CNN (`cifake.models.resnet`, {topology['family']} "
                f"{'-'.join(map(str, topology['widths']))}, {topology['blocks']} residual block(s) per stage, batch "
                f"norm, {'a high-pass input branch, ' if topology['high_pass'] else ''}"
                f"{'test-time flip averaging, ' if topology['flip_tta'] else ''}global average + max pooling), "
                f"one logit")
    return (f"the CIFAKE study's CNN: {topology['conv_layers']} conv layers (3x3, ReLU, 2x2 max-pool) of "
            f"{topology['filters']} filters, dense {topology['dense']}, one logit")


def recipe(training: dict) -> str:
    if "members" in training:
        return "; ".join(f"member {i} (`{m['run']}`): {recipe(m)}" for i, m in enumerate(training["members"], 1))
    c = training["config"]
    parts = [f"{c['optimizer']} lr {c['learning_rate']}", f"batch {c['batch_size']}",
             f"{c['epochs']} epochs at most (best epoch {training['best_epoch']} of "
             f"{training['epochs_run']} by validation loss)"]
    if c["schedule"] != "constant":
        parts.append(f"{c['schedule']} schedule ({c['warmup_epochs']} warm-up epochs)")
    for key, text in (("weight_decay", "weight decay {}"), ("label_smoothing", "label smoothing {}"),
                      ("ema", "weight averaging (EMA {})"), ("degrade", "random degradations on {} of images"),
                      ("translate", "random shifts of up to {} pixels")):
        if c.get(key):
            parts.append(text.format(c[key]))
    if c.get("flip"):
        parts.append("random flips")
    return ", ".join(parts) + f", seed {c['seed']}, bf16 autocast on CPU"


def _degraded_summary(rows: list[dict]) -> str:
    degraded = [r for r in rows if r["condition"] != "clean"]
    worst = min(degraded, key=lambda r: r["accuracy"])
    return (f"Mean accuracy over the {len(degraded)} degradations: "
            f"{sum(r['accuracy'] for r in degraded) / len(degraded):.4f}; the lowest: {worst['accuracy']:.4f} "
            f"({worst['condition']}).")


def _decision_row(title: str, key: str, test: dict, no_leaks: dict, spec: str) -> list[str]:
    return [title, f"{test['decision'][key]:{spec}}", f"{no_leaks['decision'][key]:{spec}}"]


OUTSIDE_SETS = {  # generalisation check: folders tools/outside_photos.py writes, scored by `cifake robustness`
    "photos": "real colour photographs shipped with matplotlib, scikit-learn and scikit-image (each whole and "
              "tiled at 1/2 and 1/4 of its short side)",
    "faces": "grayscale faces of Labeled Faces in the Wild shipped with scikit-image (25 x 25, upscaled to 32)",
}


def outside_limits(outside: dict[str, dict]) -> list[str]:
    """The card's generalisation lines: real photographs from outside CIFAKE called FAKE, clean and degraded."""
    lines = []
    for name, result in outside.items():
        rows = {r["condition"]: r for r in result["rows"]}
        degraded = [1 - r["accuracy"] for c, r in rows.items() if c != "clean"]
        worst = max((c for c in rows if c != "clean"), key=lambda c: 1 - rows[c]["accuracy"])
        lines.append(
            f"- Real photographs from outside CIFAKE are called FAKE (at P(FAKE) = 0.5) at "
            f"{1 - rows['clean']['accuracy']:.1%} clean, {sum(degraded) / len(degraded):.1%} on average over the "
            f"{len(degraded)} degradations and {1 - rows[worst]['accuracy']:.1%} at worst ({worst}): "
            f"{result['images']} {OUTSIDE_SETS[name]} (`python tools/outside_photos.py build/outside`, then "
            f"`cifake robustness runs/bundled --data build/outside/{name} --out runs/bundled/outside-{name}`).")
    return lines


def domain_section(domain: dict, check: dict) -> list[str]:
    """The card's domain check: what it is, and the verdict shares before and after on every measured set."""
    low, high = domain["sides"]
    return [
        "## Domain check (OUT_OF_DOMAIN)",
        f"An image is called OUT_OF_DOMAIN, whatever its P(FAKE), when the Mahalanobis distance of its "
        f"penultimate features to the nearer class mean of {domain['training_images']:,} training images exceeds "
        f"that of all but {domain['max_flagged']:.0%} of the validation images, or when a side of the file lies "
        f"beyond {low if low == high else f'{low}-{high}'} px (the training files' sides) by more than a factor "
        f"{domain['size_tolerance']} (`cifake calibrate`; "
        "docs/detect.md, *The domain check*). P(FAKE) is still reported.",
        "",
        "Verdict shares before (the calibrated decision alone) and after the check (`python tools/domain_check.py "
        "runs/bundled --faces FACES_ZIP`, in `make bundle`; every image of tools/outside_photos.py is a real "
        "photograph, *-32px* the same images as 32x32 thumbnails):",
        "",
        verdict_table(check),
        "",
    ]


def card(config: dict, test: dict, no_leaks: dict, calibration: dict | None, robustness: dict | None,
         domain_check: dict | None = None, outside: dict[str, dict] | None = None) -> str:
    training, model = config["training"], describe(config)
    lines = [
        "# Model card: cifake bundled detector",
        "",
        "## Model",
        model[0].upper() + model[1:] + " Input: a 32x32 RGB image (any other size is resized bilinearly, as in the "
        "study). "
        "Output: one logit, the evidence for REAL; P(REAL) = sigmoid(logit / T), P(FAKE) = 1 - P(REAL), with T the "
        "calibration temperature (1 when uncalibrated). Scored with onnxruntime (`model.onnx`) when it is installed, "
        "else with torch; both give the same probabilities to within 1e-5.",
        "",
        "**Label convention:** REAL = 1 is the positive class (as in the study), FAKE = 0.",
        "",
        "## Training",
        f"CIFAKE train split ({training['split']['train']:,} images for training, {training['split']['validation']:,} "
        f"carved out for validation, seeded and stratified): {recipe(training)}. Command: `make bundle`.",
        "",
        "## Test metrics (official CIFAKE test split)",
        "",
        markdown_table(["metric", f"all {test['n']:,} test images",
                        f"without the {no_leaks['excluded_leaked']} leaked FAKE duplicates"],
                       [[label, f"{test[key]:.4f}", f"{no_leaks[key]:.4f}"] for key, label in ROWS]),
        "",
    ]
    if calibration:
        rule, t, nl = calibration["decision"], calibration["test"], calibration["test_without_leaked"]
        targets = calibration["targets"]
        lines += [
            "## Calibration and verdicts",
            f"Temperature T = {calibration['temperature']:.4f}, fitted on the validation split (`cifake calibrate`). "
            f"Verdicts: FAKE when P(FAKE) >= {rule['fake_at']:.4g}, REAL when P(FAKE) < {rule['real_at']:.4g}, "
            f"UNSURE between; the thresholds hold, on validation, at most {targets['max_real_flagged']:.0%} of REAL "
            f"images called FAKE and at most {targets['max_fake_passed']:.0%} of FAKE images called REAL.",
            "",
            markdown_table(["on the test split", "all", "without leaked"], [
                ["expected calibration error, before / after", f"{t['ece_before']:.4f} / {t['ece_after']:.4f}",
                 f"{nl['ece_before']:.4f} / {nl['ece_after']:.4f}"],
                _decision_row("UNSURE", "unsure", t, nl, ".2%"),
                _decision_row("REAL images called FAKE", "real_flagged_fake", t, nl, ".2%"),
                _decision_row("FAKE images called REAL", "fake_passed_real", t, nl, ".2%"),
                _decision_row("accuracy of the decided", "accuracy_when_decided", t, nl, ".4f")]),
            "",
        ]
    if robustness:
        shown = ("accuracy", "roc_auc", "accuracy_without_leaked", "roc_auc_without_leaked")
        lines += ["## Robustness (`cifake robustness`, whole test split)", "",
                  markdown_table(["condition", "accuracy", "ROC-AUC", "accuracy w/o leaked", "ROC-AUC w/o leaked"],
                                 [[r["condition"], *(f"{r[k]:.4f}" for k in shown)] for r in robustness["rows"]]),
                  "", _degraded_summary(robustness["rows"]), ""]
    if domain_check:
        lines += domain_section(config["domain"], domain_check)
    lines += [
        "## Intended use",
        "Research and auditing on CIFAKE-like images: 32x32 thumbnails of the ten CIFAR-10 classes, real photographs "
        "against Stable Diffusion 1.4 renders, reproducing and extending the study.",
        "",
        "## Limits",
        "- One generator: every FAKE training image came from Stable Diffusion 1.4 (Euler Ancestral, 50 steps, 512 px "
        "resized to 32 px). Images of other generators (other diffusion models, GANs, newer SD versions, edited "
        "photos) are out of distribution; its verdicts on them are not validated.",
        "- Heavily resized inputs: everything is shrunk to 32x32 first. Large photographs lose the fine detail the "
        "model reads; the robustness table shows how re-compression, rescaling, blur and noise move its verdicts.",
        "- Ten object classes of CIFAR-10; other content is out of distribution.",
        f"- {100 * (1 - test['accuracy']):.1f} % of the test images are misclassified at P(FAKE) = 0.5.",
        *outside_limits(outside or {}),
        "- Not a forensic tool: do not accuse anyone of faking an image on its verdict alone.",
        "",
    ]
    return "\n".join(lines)


def main(run_dir: str) -> None:
    run = RunFolder(run_dir)
    config = run.read_config()
    for training in config["training"].get("members", [config["training"]]):
        training["data"]["cache"] = None  # a path on the machine that trained it
    test, validation, no_leaks = (run.read_evaluation(split, without_leaked)
                                  for split, without_leaked in (("test", False), ("validation", False), ("test", True)))
    reports = (("calibration", run.calibration), ("robustness", run / "robustness" / "robustness.json"),
               ("domain_check", run / "domain-check.json"))
    optional = {name: json.loads(path.read_text()) if path.is_file() else None for name, path in reports}
    outside = {name: json.loads(path.read_text()) for name in OUTSIDE_SETS
               if (path := run / f"outside-{name}" / "robustness.json").is_file()}
    BUNDLED.mkdir(parents=True, exist_ok=True)
    bundled = RunFolder(BUNDLED)
    for stale in (bundled.onnx, bundled.domain, bundled / "reliability.png", bundled / "robustness.png"):
        stale.unlink(missing_ok=True)
    shutil.copyfile(run.weights, bundled.weights)
    for optional_file in (run.onnx, run.domain):
        if optional_file.is_file():
            shutil.copyfile(optional_file, bundled / optional_file.name)
    bundled.write_config(config)
    summary = {"test": test, "test_without_leaked": no_leaks, "validation": validation,
               **{k: v for k, v in optional.items() if v}, **({"outside": outside} if outside else {})}
    (BUNDLED / "metrics.json").write_text(json.dumps(summary, indent=2))
    (BUNDLED / "MODEL_CARD.md").write_text(card(config, test, no_leaks, **optional, outside=outside))
    print(f"bundled {run} into {BUNDLED}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    main(sys.argv[1])
