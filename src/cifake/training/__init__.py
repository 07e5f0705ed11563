"""Training: Adam + binary cross-entropy on logits, early stopping, per-epoch checkpoints, resume.

Imported lazily, so that reading TrainConfig (cifake.training.config) does not load torch.
"""

from __future__ import annotations

from cifake.lazy import lazy_attributes

_API = {
    "TrainConfig": "cifake.training.config",
    "CHECKPOINT": "cifake.training.trainer",
    "TrainResult": "cifake.training.trainer",
    "checkpoint_precision": "cifake.training.trainer",
    "checkpoint_progress": "cifake.training.trainer",
    "fit": "cifake.training.trainer",
    "has_checkpoint": "cifake.training.trainer",
    "seed_everything": "cifake.training.trainer",
}

__all__ = list(_API)


__getattr__ = lazy_attributes(__name__, _API)
