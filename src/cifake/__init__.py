"""cifake: detect AI-generated images and explain the verdicts (the CIFAKE study as a tool).

Labels: REAL = 1 (the positive class, as in the study), FAKE = 0.

The public API below is imported on first use. This is the one lazy import kept on purpose: every `cifake` command
imports this package first, and importing the API eagerly loads torch, scikit-learn and captum, which would make
`cifake --help` take seconds instead of well under one (docs/architecture.md gives the measurement).
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_API = {
    "load_dataset": "cifake.data",
    "train_val_split": "cifake.data",
    "Topology": "cifake.models",
    "ResNetTopology": "cifake.models",
    "create_model": "cifake.models",
    "load_model": "cifake.models",
    "save_model": "cifake.models",
    "RunFolder": "cifake.runfolder",
    "TrainConfig": "cifake.training.config",
    "Split": "cifake.training.split",
    "fit": "cifake.training.loop",
    "seed_everything": "cifake.training.loop",
    "compute_metrics": "cifake.metrics",
    "evaluate": "cifake.metrics",
    "Detector": "cifake.predict",
    "Prediction": "cifake.predict",
    "Decision": "cifake.calibration",
    "export_onnx": "cifake.models.export",
    "resolve_device": "cifake.devices",
    "train_run": "cifake.workflows.experiment",
    "evaluate_run": "cifake.workflows.experiment",
    "run_search": "cifake.workflows.search",
    "search_status": "cifake.search.status",
    "calibrate_run": "cifake.workflows.calibrate",
    "evaluate_robustness": "cifake.workflows.robustness",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'cifake' has no attribute {name!r}")
