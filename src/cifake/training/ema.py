"""An exponential moving average of a model's weights, validated and saved in place of the raw weights.

Written here, not torch.optim.swa_utils.AveragedModel: that copies the weights on its first update (ours blends
them with the starting weights under a short early memory), averages integer buffers with the floats, and keeps
its copy under a `module.` prefix, so it trains other weights than the recipe the bundled model was made with.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class Ema:
    """The average lives in a copy of the model (eval mode, no gradients); `updates` counts the steps averaged."""

    def __init__(self, model: nn.Module, decay: float):
        self.model, self.decay, self.updates = copy.deepcopy(model).eval(), decay, 0
        self.model.requires_grad_(False)

    def update(self, model: nn.Module) -> None:
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))  # short memory at the start
        ours, theirs = self.model.state_dict(), model.state_dict()
        floats = [k for k, v in ours.items() if v.is_floating_point()]
        torch._foreach_lerp_([ours[k] for k in floats], [theirs[k].detach() for k in floats], 1 - decay)
        for key in ours.keys() - set(floats):  # integer counters are copied
            ours[key].copy_(theirs[key])
