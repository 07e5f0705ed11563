"""Grad-CAM (Selvaraju et al., 2017) through captum's LayerGradCam, upsampled bilinearly to the input.

A Grad-CAM map is ReLU(sum_k alpha_k A_k): the layer's activation maps A_k weighted by the mean gradient of the
target score over each map. By default the layer is the last convolution's ReLU output, the equivalent of the
study's Keras Conv2D(activation="relu") that Grad-CAM is usually run on.
"""

from __future__ import annotations

import torch
from captum.attr import LayerAttribution, LayerGradCam
from torch import nn

from cifake.explain.base import AttributionMethod


def conv_layer_names(model: nn.Module) -> list[str]:
    """Names of the layers Grad-CAM can be run on: each convolution and its ReLU, input side first."""
    names = [name for name, module in model.named_modules() if isinstance(module, (nn.Conv2d, nn.ReLU))]
    return [n for n in names if n.startswith("features.")]


class GradCam(AttributionMethod):
    def __init__(self, model: nn.Module, layer: str | None = None, batch_size: int = 256):
        super().__init__(model, batch_size)
        names = conv_layer_names(self.model)
        self.layer_name = layer or names[-1]
        if self.layer_name not in names:
            raise ValueError(f"unknown layer {self.layer_name!r}; choose one of {', '.join(names)}")
        self.gradcam = LayerGradCam(self.scores, self.model.get_submodule(self.layer_name))

    def attribute(self, pixels: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        maps = self.gradcam.attribute(pixels, target=labels, relu_attributions=True)
        size = tuple(pixels.shape[-2:])
        return LayerAttribution.interpolate(maps, size, interpolate_mode="bilinear").squeeze(1)
