"""The study's metrics (REAL positive), the same with FAKE positive, ROC-AUC, AP, confusion matrix, per class.

Computed with torchmetrics. Label convention: REAL = 1 is the positive class as in the study, so a false
negative is a real photo wrongly accused of being AI-made.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from cifake.compat import import_torchvision
from cifake.data.sources import CIFAR10_CLASSES, LABEL_NAMES

import_torchvision()  # before torchmetrics, which imports it (cifake.compat says why)
from torchmetrics.functional import classification as tmc  # noqa: E402


def compute_metrics(
    logits: np.ndarray, labels: np.ndarray, classes: np.ndarray | None = None, threshold: float = 0.5,
    sources: np.ndarray | None = None,
) -> dict:
    """All metrics of one evaluation as plain JSON-ready values; `logits` are evidence for REAL. Per CIFAR-10 class
    when `classes` name any, per source when `sources` name more than one per label."""
    logit = torch.as_tensor(np.asarray(logits, np.float32))
    target = torch.as_tensor(np.asarray(labels)).long()
    if len(logit) == 0:
        raise ValueError("cannot compute metrics of zero images")
    prob_real = torch.sigmoid(logit)
    predicted_real = (prob_real > threshold).long()  # torchmetrics' rule: REAL above the threshold
    out = {
        "n": len(logit),
        "threshold": threshold,
        "loss": F.binary_cross_entropy_with_logits(logit, target.float()).item(),
        "accuracy": tmc.binary_accuracy(prob_real, target, threshold).item(),
        **_positive_scores(prob_real, predicted_real, target, prefix=""),
        # the same verdicts scored with FAKE as the positive class: flip scores, verdicts and labels (an image at
        # exactly the threshold is called FAKE under both views)
        **_positive_scores(1 - prob_real, 1 - predicted_real, 1 - target, prefix="fake_"),
        "confusion_matrix": _confusion(prob_real, target, threshold),
    }
    if classes is not None and (np.asarray(classes) >= 0).any():
        out["per_class_accuracy"] = _per_class_accuracy(prob_real > threshold, target, np.asarray(classes))
    if sources is not None and _several_sources(np.asarray(labels), np.asarray(sources)):
        out["per_source"] = per_source_scores(prob_real, target, np.asarray(sources), threshold)
    return out


def _several_sources(labels: np.ndarray, sources: np.ndarray) -> bool:
    """Whether some label comes from more than one source (then metrics per source are worth a table)."""
    return any(len(set(sources[labels == label].tolist())) > 1 for label in (0, 1))


def per_source_scores(prob_real: torch.Tensor, target: torch.Tensor, sources: np.ndarray, threshold: float) -> dict:
    """Per source (e.g. each generator): its label, image count, accuracy (the share given its label), mean
    P(REAL) and the ROC-AUC of telling it from every image of the other label (None where the other is absent)."""
    correct = ((prob_real > threshold).long() == target).numpy()
    labels = target.numpy()
    out = {}
    for source in sorted(set(sources.tolist())):
        mine = sources == source
        label = int(np.bincount(labels[mine]).argmax())
        versus = mine | (labels != label)
        both = (labels[versus] != label).any()
        out[str(source)] = {
            "label": LABEL_NAMES[label], "n": int(mine.sum()), "accuracy": float(correct[mine].mean()),
            "mean_prob_real": float(prob_real[torch.from_numpy(mine)].mean()),
            "roc_auc": tmc.binary_auroc(prob_real[torch.from_numpy(versus)], target[torch.from_numpy(versus)]).item()
            if both else None,
        }
    return out


def _positive_scores(score: torch.Tensor, predicted: torch.Tensor, target: torch.Tensor, prefix: str) -> dict:
    """Precision, recall and F1 of the verdicts `predicted` (0/1, integers: torchmetrics takes them as they are),
    ROC-AUC and AP of the scores, for the positive class that `target` marks 1."""
    both_labels = len(torch.unique(target)) == 2  # AUC and AP are undefined for a one-label set
    return {
        f"{prefix}precision": tmc.binary_precision(predicted, target).item(),
        # no image of the positive label: recall is undefined, not 0 (e.g. a set of real photographs only)
        f"{prefix}recall": tmc.binary_recall(predicted, target).item() if target.any() else None,
        f"{prefix}f1": tmc.binary_f1_score(predicted, target).item(),
        f"{prefix}roc_auc": tmc.binary_auroc(score, target).item() if both_labels else None,
        f"{prefix}average_precision": tmc.binary_average_precision(score, target).item() if both_labels else None,
    }


def _confusion(prob_real: torch.Tensor, target: torch.Tensor, threshold: float) -> dict:
    matrix = tmc.binary_confusion_matrix(prob_real, target, threshold)
    return {"rows": "true label", "columns": "predicted label", "labels": ["FAKE", "REAL"], "matrix": matrix.tolist()}


def _per_class_accuracy(pred_real: torch.Tensor, target: torch.Tensor, classes: np.ndarray) -> dict:
    correct = (pred_real.long() == target).numpy()
    labels = target.numpy()
    out: dict[str, dict[str, float | None]] = {}
    for label in (1, 0):
        row = {}
        for k, name in enumerate(CIFAR10_CLASSES):
            chosen = (labels == label) & (classes == k)
            row[name] = float(correct[chosen].mean()) if chosen.any() else None
        out[LABEL_NAMES[label]] = row
    return out
