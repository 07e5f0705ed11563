"""The study's metrics (REAL positive), the same with FAKE positive, ROC-AUC, AP, confusion matrix, per class.

Computed with scikit-learn. Label convention: REAL = 1 is the positive class as in the study, so a false
negative is a real photo wrongly accused of being AI-made.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from cifake.data.sources import CIFAR10_CLASSES, LABEL_NAMES


def _sklearn_metrics():
    # scikit-learn rather than torchmetrics: importing torchmetrics loads its audio, image and text metrics too
    # (scipy.signal, torchvision, a transformers check), 3.2 s of the start-up of every command that scores,
    # beside torch's 1.9 s (python -X importtime, AMD EPYC); sklearn.metrics costs nothing more once training has
    # carved a validation split with sklearn, and 1.3 s otherwise. Imported when first used.
    from sklearn import metrics

    return metrics


def compute_metrics(
    logits: np.ndarray, labels: np.ndarray, classes: np.ndarray | None = None, threshold: float = 0.5,
    sources: np.ndarray | None = None,
) -> dict:
    """All metrics of one evaluation as plain JSON-ready values; `logits` are evidence for REAL. Per CIFAR-10 class
    when `classes` name any, per source when `sources` name more than one per label."""
    logit = torch.as_tensor(np.asarray(logits, np.float32))
    if len(logit) == 0:
        raise ValueError("cannot compute metrics of zero images")
    target = np.asarray(labels).astype(np.int64)
    prob_real = torch.sigmoid(logit).numpy()
    predicted_real = (prob_real > threshold).astype(np.int64)  # REAL above the threshold, FAKE at it
    out = {
        "n": len(logit),
        "threshold": threshold,
        "loss": F.binary_cross_entropy_with_logits(logit, torch.as_tensor(target, dtype=torch.float32)).item(),
        "accuracy": float((predicted_real == target).mean()),
        **_positive_scores(prob_real, predicted_real, target, prefix=""),
        # the same verdicts scored with FAKE as the positive class: flip scores, verdicts and labels (an image at
        # exactly the threshold is called FAKE under both views)
        **_positive_scores(1 - prob_real, 1 - predicted_real, 1 - target, prefix="fake_"),
        "confusion_matrix": _confusion(predicted_real, target),
    }
    if classes is not None and (np.asarray(classes) >= 0).any():
        out["per_class_accuracy"] = _per_class_accuracy(predicted_real, target, np.asarray(classes))
    if sources is not None and _several_sources(target, np.asarray(sources)):
        out["per_source"] = per_source_scores(prob_real, target, np.asarray(sources), threshold)
    return out


def _several_sources(labels: np.ndarray, sources: np.ndarray) -> bool:
    """Whether some label comes from more than one source (then metrics per source are worth a table)."""
    return any(len(set(sources[labels == label].tolist())) > 1 for label in (0, 1))


def per_source_scores(prob_real: np.ndarray, labels: np.ndarray, sources: np.ndarray, threshold: float) -> dict:
    """Per source (e.g. each generator): its label, image count, accuracy (the share given its label), mean
    P(REAL) and the ROC-AUC of telling it from every image of the other label (None where the other is absent)."""
    correct = (prob_real > threshold) == (labels == 1)
    out = {}
    for source in sorted(set(sources.tolist())):
        mine = sources == source
        label = int(np.bincount(labels[mine]).argmax())
        versus = mine | (labels != label)
        both = (labels[versus] != label).any()
        out[str(source)] = {
            "label": LABEL_NAMES[label], "n": int(mine.sum()), "accuracy": float(correct[mine].mean()),
            "mean_prob_real": float(prob_real[mine].mean()),
            "roc_auc": float(_sklearn_metrics().roc_auc_score(labels[versus], prob_real[versus])) if both else None,
        }
    return out


def _positive_scores(score: np.ndarray, predicted: np.ndarray, target: np.ndarray, prefix: str) -> dict:
    """Precision, recall and F1 of the verdicts `predicted` (0/1), ROC-AUC and AP of the scores, for the positive
    class that `target` marks 1. No verdict of the positive label: precision (and F1) 0, not undefined."""
    metrics = _sklearn_metrics()
    both_labels = len(np.unique(target)) == 2  # AUC and AP are undefined for a one-label set
    return {
        f"{prefix}precision": float(metrics.precision_score(target, predicted, zero_division=0)),
        # no image of the positive label: recall is undefined, not 0 (e.g. a set of real photographs only)
        f"{prefix}recall": float(metrics.recall_score(target, predicted)) if target.any() else None,
        f"{prefix}f1": float(metrics.f1_score(target, predicted, zero_division=0)),
        f"{prefix}roc_auc": float(metrics.roc_auc_score(target, score)) if both_labels else None,
        f"{prefix}average_precision": float(metrics.average_precision_score(target, score)) if both_labels else None,
    }


def _confusion(predicted: np.ndarray, target: np.ndarray) -> dict:
    matrix = _sklearn_metrics().confusion_matrix(target, predicted, labels=[0, 1])
    return {"rows": "true label", "columns": "predicted label", "labels": ["FAKE", "REAL"], "matrix": matrix.tolist()}


def _per_class_accuracy(predicted: np.ndarray, labels: np.ndarray, classes: np.ndarray) -> dict:
    correct = predicted == labels
    out: dict[str, dict[str, float | None]] = {}
    for label in (1, 0):
        row = {}
        for k, name in enumerate(CIFAR10_CLASSES):
            chosen = (labels == label) & (classes == k)
            row[name] = float(correct[chosen].mean()) if chosen.any() else None
        out[LABEL_NAMES[label]] = row
    return out
