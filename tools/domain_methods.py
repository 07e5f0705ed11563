"""Which domain check? The alternatives, measured on one model: each flags the share of validation images its
threshold allows (1 %), and the table shows what it then flags in domain and outside.

    python tools/domain_methods.py [MODEL_DIR] [--data CIFAKE] [--outside build/outside] [--json]

Features only: every set here is at the model's size (the *-32px thumbnails of tools/outside_photos.py), where a
rule on native sizes sees nothing. Methods:
- mahalanobis: the distance of the penultimate unit features (`model.embed`) to the nearer class mean of a
  seeded sample of training images, under their shared covariance (Lee et al.; what `cifake calibrate` fits),
  at several shrinkages of the covariance, or to one mean;
- knn: 1 - cosine similarity to the k-th nearest of a seeded bank of those training features, optionally
  projected onto the bank's leading principal directions;
- per-layer mahalanobis: the same with one mean, on the log mean and spread of every stage's channels;
- confidence: a small logit magnitude (an unsure model), and colour: a low chroma (grayscale).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch

from cifake.calibration import UNSURE, Decision
from cifake.calibration.domain import DomainCheck
from cifake.data import Preprocess, load_dataset
from cifake.models import load_model
from cifake.models.inference import predict_embeddings
from cifake.models.io import bundled_model_dir
from cifake.report import markdown_table
from cifake.training.split import Split

SETS = ("photos-32px", "faces-32px", "grayscale-32px", "scans-32px")
TRAIN_SAMPLE = 30_000


def stage_statistics(model, images: np.ndarray, batch: int = 256) -> np.ndarray:
    """log of the mean and spread of every channel after every stage of every member (residual models)."""
    members = getattr(model, "members", [model])
    stages = [stage for member in members for stage in member.features]
    rows, found = [], []
    hooks = [stage.register_forward_hook(lambda _m, _i, out: found.append(
        torch.cat([out.float().mean((2, 3)), out.float().std((2, 3))], 1))) for stage in stages]
    with torch.inference_mode():
        for start in range(0, len(images), batch):
            found.clear()
            model(torch.from_numpy(np.array(images[start:start + batch])).permute(0, 3, 1, 2).float())
            rows.append(torch.cat(found, 1).numpy())
    for hook in hooks:
        hook.remove()
    return np.log(np.abs(np.concatenate(rows)) + 1e-3)


def measure(model_dir: Path, data_path: Path, outside: Path) -> dict:
    model, config = load_model(model_dir)
    data = load_dataset(data_path, preprocess=Preprocess.of_model(config), progress=False)
    training = config["training"]
    train, val = Split.from_record(training).carve(data, training["config"]["seed"])
    train = train.take(np.sort(np.random.default_rng(0).permutation(len(train))[:TRAIN_SAMPLE]))
    sets = {"validation": val, "test": data["test"]} | {
        name: next(iter(load_dataset(outside / name, preprocess=Preprocess.of_model(config),
                                     progress=False).splits.values())) for name in SETS}
    embedded = {name: predict_embeddings(model, s.images, 256) for name, s in sets.items()}
    _, train_features = predict_embeddings(model, train.images, 256)
    pixels = {name: np.asarray(s.images[:]).astype(np.float32) for name, s in sets.items()}
    calibration = config.get("calibration", {})
    decision = Decision(**calibration["decision"]) if "decision" in calibration else Decision.single(0.5)
    temperature = calibration.get("temperature", 1.0)
    scorers = {}
    for shrink in (1e-3, 1e-2, 1e-1):
        check = DomainCheck.fit(train_features, train.labels, embedded["validation"][1], None, shrink=shrink)
        scorers[f"mahalanobis, class means, shrink {shrink:g}"] = _distances(check, embedded)
    one_mean = DomainCheck.fit(train_features, np.zeros(len(train)), embedded["validation"][1], None)
    scorers["mahalanobis, one mean"] = _distances(one_mean, embedded)
    for k, bank, dimensions in ((1, 10_000, 64), (10, 10_000, 64), (50, 10_000, 64), (10, 30_000, None)):
        scorers[f"knn k={k}, bank {bank // 1000}k, {dimensions or 'all'} dims"] = _knn(
            train_features, embedded, k, bank, dimensions)
    if hasattr(getattr(model, "members", [model])[0], "features"):
        stages = {name: stage_statistics(model, s.images) for name, s in sets.items()}
        per_layer = DomainCheck.fit(stage_statistics(model, train.images[:10_000]), np.zeros(10_000),
                                    stages["validation"], None, shrink=1e-2)
        scorers["per-layer mahalanobis"] = lambda name: per_layer.distances(stages[name])
    scorers["confidence (small logit magnitude)"] = lambda name: -np.abs(embedded[name][0])
    scorers["colour (low chroma)"] = lambda name: -np.abs(pixels[name] - pixels[name].mean(-1, keepdims=True)).mean(
        (1, 2, 3))
    scorers["none (the calibrated decision alone)"] = lambda name: np.zeros(len(embedded[name][0]))
    return {method: _flags(score, sets, embedded, decision, temperature) for method, score in scorers.items()}


def _distances(check: DomainCheck, embedded: dict):
    return lambda name: check.distances(embedded[name][1])


def _knn(train_features: np.ndarray, embedded: dict, k: int, bank: int, dimensions: int | None):
    """1 - cosine similarity to the k-th nearest of a seeded bank, in its leading (uncentred) principal directions."""
    chosen = train_features[np.random.default_rng(1).permutation(len(train_features))[:bank]]
    directions = np.linalg.svd(chosen.astype(np.float64), full_matrices=False)[2][:dimensions].T.astype(np.float32)
    unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
    stored = unit(chosen @ directions)

    def distances(name: str) -> np.ndarray:
        query = unit(embedded[name][1] @ directions)
        return np.concatenate([1 - np.partition(query[i:i + 2048] @ stored.T, -k, axis=1)[:, -k]
                               for i in range(0, len(query), 2048)])
    return distances


def _flags(score, sets, embedded, decision: Decision, temperature: float) -> dict:
    threshold = np.quantile(score("validation"), 0.99, method="higher")
    result = {}
    for name, images in sets.items():
        outside = score(name) > threshold
        verdicts = decision.verdicts(1 / (1 + np.exp(embedded[name][0] / temperature)))
        decided = (verdicts != UNSURE) & ~outside
        right = (verdicts == "REAL") == (images.labels == 1)
        result[name] = {"flagged": float(outside.mean()), "fake_after": float(((verdicts == "FAKE") & ~outside).mean()),
                        "accuracy_when_decided": float(right[decided].mean()) if decided.any() else None}
    return result


def table(result: dict) -> str:
    header = ["method", "test flagged", "test accuracy of the decided",
              *(f"{name}: flagged, FAKE after" for name in SETS)]
    rows = [[method, f"{sets['test']['flagged']:.1%}", f"{sets['test']['accuracy_when_decided']:.4f}",
             *(f"{sets[name]['flagged']:.1%}, {sets[name]['fake_after']:.1%}" for name in SETS)]
            for method, sets in result.items()]
    return markdown_table(header, rows)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", nargs="?", type=Path, default=bundled_model_dir())
    parser.add_argument("--data", type=Path, default=Path(os.environ.get(
        "CIFAKE_DATA", Path(__file__).resolve().parents[2] / "shared" / "data" / "cifake")))
    parser.add_argument("--outside", type=Path, default=Path("build/outside"))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    result = measure(args.model, args.data, args.outside)
    print(json.dumps(result, indent=2) if args.json else table(result))


if __name__ == "__main__":
    main(sys.argv[1:])
