"""The study's CNN family: [3x3 conv + ReLU + 2x2 max-pool] x n, flatten, [dense + ReLU] x m, one logit.

The output logit is the evidence for REAL (label 1, the study's positive class): sigmoid(logit) = P(REAL),
and P(FAKE) = 1 - P(REAL). Layers follow the study's Keras model: 'valid' convolutions, Glorot-uniform
weights and zero biases (Keras' defaults), pixels scaled by 1/255 inside the model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F

from cifake.models.registry import register_family, register_model


def feature_size(size: int, conv_layers: int) -> int:
    """Side of the feature map after `conv_layers` blocks of 3x3 valid convolution and 2x2 pooling."""
    for _ in range(conv_layers):
        size = (size - 2) // 2  # 3x3 'valid' convolution, then 2x2 pooling
    return size


@dataclass(frozen=True)
class Topology:
    """A member of the study's search space."""

    filters: int = 32
    conv_layers: int = 2
    dense: tuple[int, ...] = (64,)

    def __post_init__(self) -> None:
        object.__setattr__(self, "dense", tuple(int(d) for d in self.dense))
        if self.filters < 1 or self.conv_layers < 1 or any(d < 1 for d in self.dense):
            raise ValueError(f"invalid topology {self}: filters, conv layers and dense sizes must be positive")

    def check_fits(self, image_size: int) -> None:
        """Refuse an image size that this many conv blocks shrink to nothing."""
        if feature_size(image_size, self.conv_layers) < 1:
            raise ValueError(f"{self.conv_layers} conv layers shrink a {image_size} px image to nothing")

    @property
    def name(self) -> str:
        dense = "-".join(map(str, self.dense)) or "none"
        return f"f{self.filters}-c{self.conv_layers}-d{dense}"

    def to_dict(self) -> dict:
        return asdict(self) | {"dense": list(self.dense)}

    @classmethod
    def from_dict(cls, values: dict) -> Topology:
        return cls(**values)


class _FlattenGradientInInputFormat(torch.autograd.Function):
    """Flatten (N, C, H, W) -> (N, C*H*W) in NCHW order, sending the gradient back in the input's memory format.

    nn.Flatten's gradient comes back NCHW-contiguous; with channels_last activations, max-pool's backward then
    converts both of its full-resolution tensors, which costs a third of a training step for the 1-conv-layer
    extractors (f128-c1, two trials at once: 48.4 -> 33.0 ms per step; docs/search.md, benchmarks/bench_step.py).
    Converting the small flattened gradient here instead gives the same numbers.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.shape = x.shape
        ctx.channels_last = x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last)
        return x.flatten(1)

    @staticmethod
    def backward(ctx, gradient: torch.Tensor) -> torch.Tensor:
        gradient = gradient.reshape(ctx.shape)
        return gradient.contiguous(memory_format=torch.channels_last) if ctx.channels_last else gradient


class Flatten(nn.Flatten):
    """nn.Flatten (from dimension 1, as the CNN uses it), with the faster gradient above while training; inference
    and export see nn.Flatten itself."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and torch.is_grad_enabled():
            return _FlattenGradientInInputFormat.apply(x)
        return super().forward(x)


class CifakeCNN(nn.Module):
    """Takes NCHW float pixels in 0..255 (uint8 values) and returns one logit per image (evidence for REAL)."""

    def __init__(self, topology: Topology, image_size: int = 32, mean: float = 0.0, std: float = 255.0):
        super().__init__()
        topology.check_fits(image_size)
        self.topology = topology
        # Normalisation lives in the model, so a saved model carries it and callers pass raw pixels.
        self.register_buffer("mean", torch.full((1, 3, 1, 1), float(mean)), persistent=False)
        self.register_buffer("std", torch.full((1, 3, 1, 1), float(std)), persistent=False)
        layers: list[nn.Module] = []
        channels = 3
        for _ in range(topology.conv_layers):
            layers += [nn.Conv2d(channels, topology.filters, 3), nn.ReLU(), nn.MaxPool2d(2)]
            channels = topology.filters
        self.features = nn.Sequential(*layers)
        width = channels * feature_size(image_size, topology.conv_layers) ** 2  # the flattened features follow N
        head: list[nn.Module] = [Flatten()]
        for units in topology.dense:
            head += [nn.Linear(width, units), nn.ReLU()]
            width = units
        head.append(nn.Linear(width, 1))
        self.head = nn.Sequential(*head)
        self.reset_parameters()

    def normalise_with(self, mean: float, std: float) -> None:
        """Set the pixel normalisation a saved config records."""
        self.mean.fill_(mean)
        self.std.fill_(std)

    def reset_parameters(self) -> None:
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = (pixels - self.mean) / self.std
        return self.head(self._features(x)).squeeze(1)

    def embed(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, penultimate features as unit vectors): what the head's last layer reads, for the domain
        check (cifake.calibration.domain)."""
        penultimate = self.head[:-1](self._features((pixels - self.mean) / self.std))
        return self.head[-1](penultimate).squeeze(1), F.normalize(penultimate.float(), dim=1)

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        """The conv blocks; while training, each pools before its ReLU. ReLU and max commute exactly (ReLU is
        monotone), in values and in gradients, ties included, so the weights are the same bit for bit, and ReLU
        runs forward and backward on a quarter of the elements. Inference, export and Grad-CAM's hooks see the
        study's order: conv, ReLU (Grad-CAM's full-resolution layer), pool."""
        if not self.training:
            return self.features(x)
        blocks = iter(self.features)
        for conv, relu, pool in zip(blocks, blocks, blocks):
            x = relu(pool(conv(x)))
        return x


register_family("cnn", Topology, CifakeCNN)
# The study's chosen model: two conv layers of 32 filters and one dense layer of 64 units.
register_model("paper", Topology(filters=32, conv_layers=2, dense=(64,)))
