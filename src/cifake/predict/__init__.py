"""Detection for users: the Detector API over the bundled (or any saved) model, and path expansion."""

from cifake.predict.detector import Detector, Prediction, bundled_model_dir
from cifake.predict.files import expand_paths

__all__ = ["Detector", "Prediction", "bundled_model_dir", "expand_paths"]
