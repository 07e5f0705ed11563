"""Distillation: training targets that mix each image's label with a teacher model's calibrated probability.

The teacher scores each clean training image once, before training. Its view of the image's degraded, shifted or
mirrored copies is taken to be that of the clean image: those changes keep the label, and scoring every batch
anew would add an ensemble's forward passes to each step. Its logit is divided by the teacher's own temperature
(`cifake calibrate`), so the targets hold its calibrated probabilities rather than its raw confidence.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from cifake.data import ImageSet
from cifake.models import load_model
from cifake.models.export import weights_digest
from cifake.models.inference import predict_logits, sigmoid
from cifake.models.io import bundled_model_dir, held_out
from cifake.progress import progress_bar
from cifake.training.config import TrainConfig


def teacher_dir(teacher: str) -> Path:
    """The model folder a `teacher` setting names ('bundled': the model shipped with cifake)."""
    return bundled_model_dir() if teacher == "bundled" else Path(teacher)


def distilled_targets(train: ImageSet, config: TrainConfig, student_held_out: tuple, device: torch.device,
                      progress: bool = True) -> tuple[np.ndarray, dict]:
    """(targets, the teacher's record): (1 - distill) * label + distill * the teacher's calibrated P(REAL).

    `student_held_out` is the student's (validation fraction, limit per label, seed): the teacher must have held
    out the same images, or it would have trained on the student's validation images and made them worthless."""
    folder = teacher_dir(config.teacher)
    teacher, teacher_config = load_model(folder, device)
    taught_on = held_out(teacher_config)
    if taught_on is None:
        raise ValueError(f"{folder}: the teacher's config does not record which images it held out; a teacher "
                         f"must hold out the student's validation images")
    if taught_on != student_held_out:
        raise ValueError(f"{folder}: the teacher held out {taught_on} (validation fraction, limit per label, "
                         f"seed), the student {student_held_out}; a teacher must hold out the student's "
                         f"validation images")
    temperature = float((teacher_config.get("calibration") or {}).get("temperature", 1.0))
    logits = _teacher_logits(teacher, train.images, progress)
    labels = np.asarray(train.labels, np.float32)
    targets = (1 - config.distill) * labels + config.distill * sigmoid(logits / temperature)
    record = {"folder": str(folder), "weights_sha256": weights_digest(folder), "temperature": temperature,
              "agreement_with_labels": float(((logits > 0) == (labels > 0.5)).mean())}
    return targets.astype(np.float32), record


def _teacher_logits(teacher: torch.nn.Module, images: np.ndarray, progress: bool, chunk: int = 4096) -> np.ndarray:
    """The teacher's logits of every image, chunk by chunk under a progress bar (an ensemble takes minutes)."""
    parts = []
    with progress_bar(progress) as bar:
        task = bar.add_task("Teacher", total=len(images))
        for start in range(0, len(images), chunk):
            parts.append(predict_logits(teacher, images[start : start + chunk], batch_size=256))
            bar.advance(task, len(parts[-1]))
    return np.concatenate(parts) if parts else np.empty(0, np.float32)
