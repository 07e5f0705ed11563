"""The explanation methods by name, as `cifake explain --method` chooses them."""

from __future__ import annotations

from torch import nn

from cifake.explain.base import AttributionMethod
from cifake.explain.gradcam import GradCam
from cifake.explain.integrated_gradients import IntegratedGradients
from cifake.explain.rollout import AttentionRollout, GradientRollout

METHODS = {"gradcam": GradCam, "rollout": AttentionRollout, "grad-rollout": GradientRollout,
           "ig": IntegratedGradients}
TITLES = {"gradcam": "Grad-CAM", "rollout": "attention rollout", "grad-rollout": "gradient-weighted rollout",
          "ig": "Integrated Gradients"}


def make_method(name: str, model: nn.Module, layer: str | None = None) -> AttributionMethod:
    """The method `name` for `model`; `layer` only for Grad-CAM. A method that does not apply to the model (rollout
    on a CNN) or an unknown name is a ValueError that says what does."""
    if name not in METHODS:
        raise ValueError(f"unknown explanation method {name!r}; choose one of {', '.join(METHODS)}")
    if layer is not None and name != "gradcam":
        raise ValueError(f"--layer chooses Grad-CAM's layer; {name} takes none")
    return GradCam(model, layer) if name == "gradcam" else METHODS[name](model)
