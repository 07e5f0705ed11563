"""cifake: detect AI-generated images and explain the verdicts (the CIFAKE study as a tool).

Labels: REAL = 1 (the positive class, as in the study), FAKE = 0. The public API is imported lazily,
so that ``import cifake`` (and decoding worker processes) stay light.
"""

from __future__ import annotations

from cifake.lazy import lazy_attributes

__version__ = "0.1.0"

_API = {
    "load_dataset": "cifake.data",
    "train_val_split": "cifake.data",
    "Topology": "cifake.models",
    "ResNetTopology": "cifake.models",
    "build_model": "cifake.models",
    "load_model": "cifake.models",
    "save_model": "cifake.models",
    "TrainConfig": "cifake.training",
    "Split": "cifake.training.split",
    "fit": "cifake.training",
    "seed_everything": "cifake.training",
    "compute_metrics": "cifake.metrics",
    "evaluate": "cifake.metrics",
    "train_run": "cifake.experiment",
    "evaluate_run": "cifake.experiment",
    "run_search": "cifake.search",
    "search_status": "cifake.search",
    "Detector": "cifake.predict",
    "Prediction": "cifake.predict",
    "Decision": "cifake.calibration",
    "calibrate_run": "cifake.calibration.run",
    "evaluate_robustness": "cifake.robustness",
    "export_onnx": "cifake.models.export",
    "resolve_device": "cifake.devices",
}

__all__ = ["__version__", *_API]


__getattr__ = lazy_attributes(__name__, _API)
