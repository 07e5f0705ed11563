"""Training: Adam + binary cross-entropy on logits, early stopping, per-epoch checkpoints, resume."""

from cifake.training.trainer import (CHECKPOINT, TrainConfig, TrainResult, checkpoint_progress, fit, has_checkpoint,
                                     seed_everything)

__all__ = ["CHECKPOINT", "TrainConfig", "TrainResult", "checkpoint_progress", "fit", "has_checkpoint",
           "seed_everything"]
