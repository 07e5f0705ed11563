"""What a model's domain check changes: verdict shares on images from outside its training data, and its cost in
domain, before (the check ignored) and after.

    python tools/domain_check.py MODEL_DIR [--outside build/outside] [--data CIFAKE] [--faces FACES_ZIP]
                                 [--out FILE.json] [--json]

- `--outside`: the sets of tools/outside_photos.py (real photographs, faces, grayscale photographs, scans, each as
  it comes and as a 32 px thumbnail). Every image is real: FAKE is a false accusation.
- `--data`: the model's own test split (default: CIFAKE_DATA or ../shared/data/cifake): the share flagged
  OUT_OF_DOMAIN and the accuracy of the decided (REAL or FAKE verdicts) before and after.
- `--faces`: optionally a REAL/FAKE zip of faces (FFHQ against GANs): a domain the model never saw; a row per
  label, and there FAKE is right for the GAN faces.

Files are read as a user's files are: through the Detector, so native sizes count. `make bundle` runs it for the
bundled model's card.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from pathlib import Path

import numpy as np

from cifake.calibration import OUT_OF_DOMAIN, UNSURE
from cifake.data.decode import member_bytes
from cifake.data.sources import find_members
from cifake.predict import Detector
from cifake.report import markdown_table

VERDICTS = ("FAKE", "REAL", UNSURE, OUT_OF_DOMAIN)
SETS = ("photos", "photos-32px", "faces", "faces-32px", "grayscale", "grayscale-32px", "scans", "scans-32px")


def labelled_bytes(source: str | os.PathLike, split: str | None = None) -> list[tuple[int, bytes]]:
    """(label, bytes) of every image of a source (one split, or all), read as the files are."""
    members = [m for m in find_members(source) if split is None or m.split == split]
    return [(member.label, data) for member, data in member_bytes(members, source)]


def verdict_shares(detector: Detector, items: list, labels: np.ndarray) -> dict:
    """Shares of each verdict before (the calibrated decision alone) and after (with the domain check), and the
    accuracy of the decided among the labelled images."""
    scored = list(detector.iter_predict(items))
    read = np.array([p.error is None for p in scored])
    predictions, labels = [p for p in scored if p.error is None], labels[read]  # an unreadable file: left out
    after = [p.verdict for p in predictions]
    before = [detector.decision.verdict(p.prob_fake) for p in predictions]
    result = {"images": len(predictions)}
    for name, verdicts in (("before", before), ("after", after)):
        counts = Counter(verdicts)
        decided = np.array([v in ("REAL", "FAKE") for v in verdicts])
        right = np.array([v == "REAL" for v in verdicts]) == (labels == 1)
        result[name] = {v: counts[v] / len(verdicts) for v in VERDICTS} | {
            "accuracy_when_decided": float(right[decided].mean()) if decided.any() else None}
    return result


def measure(model: str, outside: Path, data: Path | None, faces: Path | None) -> dict:
    detector = Detector.load(model)
    if detector.domain is None:
        raise SystemExit(f"{model}: has no domain check; fit one with `cifake calibrate`")
    results = {}
    for name in SETS:
        folder = outside / name / "test" / "REAL"
        if folder.is_dir():
            files = sorted(folder.iterdir())
            results[name] = verdict_shares(detector, files, np.ones(len(files), np.uint8))
    if data and data.exists():
        labels, items = zip(*labelled_bytes(data, "test"))
        results["in domain: test split"] = verdict_shares(detector, list(items), np.array(labels, np.uint8))
    if faces and faces.exists():  # FFHQ photographs and GAN faces: a row each, as their errors differ
        read = labelled_bytes(faces)
        for label, name in ((1, "faces zip: real (FFHQ)"), (0, "faces zip: fake (GANs)")):
            items = [item for item_label, item in read if item_label == label]
            results[name] = verdict_shares(detector, items, np.full(len(items), label, np.uint8))
    return {"model": model, "domain": detector.config["domain"], "sets": results}


def verdict_table(result: dict) -> str:
    header = ["set", "images", *(f"{v} before > after" for v in VERDICTS[:3]), OUT_OF_DOMAIN,
              "accuracy of the decided"]
    rows = []
    for name, row in result["sets"].items():
        before, after = row["before"], row["after"]
        accuracy = (f"{before['accuracy_when_decided']:.4f} > {after['accuracy_when_decided']:.4f}"
                    if not name.startswith(SETS) else "")
        rows.append([name, row["images"], *(f"{before[v]:.1%} > {after[v]:.1%}" for v in VERDICTS[:3]),
                     f"{after[OUT_OF_DOMAIN]:.1%}", accuracy])
    return markdown_table(header, rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model")
    parser.add_argument("--outside", type=Path, default=Path("build/outside"))
    parser.add_argument("--data", type=Path,
                        default=Path(os.environ.get("CIFAKE_DATA", Path(__file__).resolve().parents[2] / "shared"
                                                    / "data" / "cifake")))
    parser.add_argument("--faces", type=Path)
    parser.add_argument("--out", type=Path, help="also write the result as JSON here")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    result = measure(args.model, args.outside, args.data, args.faces)
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2) if args.json else verdict_table(result))


if __name__ == "__main__":
    main(sys.argv[1:])
