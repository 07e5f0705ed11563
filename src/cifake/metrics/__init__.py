"""Metrics of a model on a split: the study's (REAL positive) and more; plots of them."""

from __future__ import annotations

import numpy as np
from torch import nn

from cifake.data.dataset import ImageSet
from cifake.metrics.scores import compute_metrics
from cifake.models.inference import predict_logits


def evaluate(model: nn.Module, images: ImageSet, batch_size: int = 64) -> tuple[dict, np.ndarray]:
    """(metrics, logits) of a model on a set of images."""
    logits = predict_logits(model, images.images, batch_size)
    return compute_metrics(logits, images.labels, images.classes, sources=images.sources), logits


__all__ = ["compute_metrics", "evaluate"]
