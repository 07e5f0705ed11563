"""Grad-CAM (Selvaraju et al., 2017) through captum's LayerGradCam, upsampled bilinearly to the input.

A Grad-CAM map is ReLU(sum_k alpha_k A_k): the layer's activation maps A_k weighted by the mean gradient of the
target score over each map. By default the layer is the last convolution's ReLU output, the equivalent of the
study's Keras Conv2D(activation="relu") that Grad-CAM is usually run on. For a vision transformer it is the patch
tokens after the last block, seen as a map of `width` channels on the patch grid (the model's `token_grid`): the
map pytorch-grad-cam's reshape_transform builds for transformers, here built by the model so that one Grad-CAM
serves every family.
"""

from __future__ import annotations

import re

import torch
from captum.attr import LayerAttribution, LayerGradCam
from torch import nn

from cifake.explain.base import AttributionMethod
from cifake.models.vit import TokenGrid


def conv_layer_names(model: nn.Module) -> list[str]:
    """Names of the layers Grad-CAM can be run on: each convolution and its ReLU, input side first, or a vision
    transformer's patch tokens laid out as a map (token_grid); an ensemble's: each member's in turn, as
    members.I.features... or members.I.token_grid."""
    names = [name for name, module in model.named_modules() if isinstance(module, (nn.Conv2d, nn.ReLU, TokenGrid))]
    return [n for n in names if re.match(r"(members\.\d+\.)?(features\.|token_grid$)", n)]


def default_layers(model: nn.Module) -> str:
    """The last convolution's ReLU output; for an ensemble, each member's, comma-separated."""
    names = conv_layer_names(model)
    if not hasattr(model, "members"):
        return names[-1]
    return ",".join([n for n in names if n.startswith(f"members.{i}.")][-1] for i in range(len(model.members)))


class GradCam(AttributionMethod):
    """`layer`: one name of conv_layer_names, or several separated by commas, whose Grad-CAM terms are summed
    before the ReLU: Grad-CAM over their channels taken together (an ensemble's default: every member's last)."""

    def __init__(self, model: nn.Module, layer: str | None = None, batch_size: int = 256):
        super().__init__(model, batch_size)
        names = conv_layer_names(self.model)
        self.layer_name = layer or default_layers(self.model)
        unknown = [n for n in self.layer_name.split(",") if n not in names]
        if unknown:
            raise ValueError(f"unknown layer {unknown[0]!r}; choose one of {', '.join(names)}")
        self.gradcams = [LayerGradCam(self.scores, self.model.get_submodule(n)) for n in self.layer_name.split(",")]

    def attribute(self, pixels: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        size = tuple(pixels.shape[-2:])
        terms = [gradcam.attribute(pixels, target=labels) for gradcam in self.gradcams]
        if len({term.shape for term in terms}) > 1:  # layers of different resolutions meet at the input's
            terms = [LayerAttribution.interpolate(term, size, interpolate_mode="bilinear") for term in terms]
        maps = torch.relu(torch.stack(terms).sum(0))
        return LayerAttribution.interpolate(maps, size, interpolate_mode="bilinear").squeeze(1)
