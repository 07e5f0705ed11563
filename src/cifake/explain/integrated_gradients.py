"""Integrated Gradients (Sundararajan et al., 2017) through captum, for every family.

The attribution of each pixel is its difference from a baseline times the mean gradient of the explained score
along the straight path from the baseline to the image. The baseline is a black image; the map is the attribution
summed over the three colour channels, positive part: the evidence for the explained label, as Grad-CAM's ReLU
keeps it. `steps` points of the path (Gauss-Legendre, captum's default rule) are scored in one batch per image
batch, so a batch of B images costs B x steps forward and backward passes.
"""

from __future__ import annotations

import torch
from captum.attr import IntegratedGradients as CaptumIntegratedGradients
from torch import nn

from cifake.explain.base import AttributionMethod

STEPS = 16  # points of the path; each costs one forward and backward pass per image


class IntegratedGradients(AttributionMethod):
    # 128 path points a batch (8 images at 32 px): 200 images took 15.0-15.3 s against 18.0-18.5 s at 256 for the
    # transformer, 6.7-6.8 s against 7.3 s for the bundled CNN (alternated runs, AMD EPYC, 2 cores)
    def __init__(self, model: nn.Module, batch_size: int = 128, steps: int = STEPS):
        # each image is scored `steps` times per batch: fewer images per batch keep its activations the same size
        super().__init__(model, max(1, batch_size // steps))
        self.steps = self.passes_per_map = steps
        self.integrated = CaptumIntegratedGradients(self.scores)

    def attribute(self, pixels: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        attributions = self.integrated.attribute(pixels, baselines=torch.zeros_like(pixels), target=labels,
                                                 n_steps=self.steps)
        return attributions.sum(1).clamp(min=0)
