"""What a training step sees: the order of the images in an epoch, and each batch degraded, shifted and mirrored.

Every draw is seeded by (seed, epoch, batch), never by a running generator, so every epoch draws afresh and a run
resumed at any epoch sees the same images as an unbroken one.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from cifake.data.degrade import random_degradations, random_shifts
from cifake.data.pixels import Pixels
from cifake.data.preprocess import crop_windows, random_offsets
from cifake.models.inference import to_model_input
from cifake.training.config import TrainConfig


def epoch_order(count: int, seed: int, epoch: int) -> torch.Tensor:
    """The order of the training images in an epoch: a new shuffle every epoch, depending on (seed, epoch) only."""
    return torch.randperm(count, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))


class HostBatches:
    """Training pixels read on the host batch by batch: a crop model's random N x N crops of its stored windows
    (seeded by (seed, epoch, batch), like every other draw), or the rows of a set too large to hold in RAM."""

    def __init__(self, pixels: Pixels, config: TrainConfig, device: torch.device):
        self.pixels, self.config, self.device = pixels, config, device

    def __len__(self) -> int:
        return len(self.pixels)

    def batch(self, index: torch.Tensor, epoch: int, batch_number: int) -> torch.Tensor:
        positions = index.cpu().numpy()
        if self.config.preprocess == "crop":
            windows, extents = self.pixels.windows(positions)
            rng = np.random.default_rng([self.config.seed, epoch, batch_number, 2])
            pixels = crop_windows(windows, random_offsets(extents, self.pixels.size, rng), self.pixels.size)
        else:
            pixels = self.pixels[positions]
        return torch.from_numpy(pixels).to(self.device)


def training_input(batch: torch.Tensor, config: TrainConfig, epoch: int, batch_number: int,
                   mirrored: torch.Tensor | None = None) -> torch.Tensor:
    """A uint8 NHWC batch as the model's float input, degraded, shifted and mirrored as the config asks.
    `mirrored` is the batch's flip_choice, when the caller drew it already (on the device)."""
    if config.degrade > 0 or config.translate > 0:  # Pillow and NumPy work: on the host, whatever the device
        pixels = batch.cpu().numpy()
        if config.degrade > 0:
            pixels = random_degradations(pixels, config.degrade, np.random.default_rng([config.seed, epoch,
                                                                                         batch_number]))
        if config.translate > 0:  # its own stream, so adding shifts leaves the degradations' draws as they were
            pixels = random_shifts(pixels, config.translate, np.random.default_rng([config.seed, epoch,
                                                                                   batch_number, 1]))
        batch = torch.from_numpy(pixels).to(batch.device)
    x = to_model_input(batch, config.channels_last)
    if config.flip:  # mirror a seeded random half of the batch
        if mirrored is None:
            mirrored = flip_choice(config, epoch, batch_number, len(x)).to(x.device)
        x = torch.where(mirrored[:, None, None, None], x.flip(3), x)
    return x


def flip_choice(config: TrainConfig, epoch: int, batch_number: int, count: int) -> torch.Tensor:
    """Which images of a batch are mirrored: a seeded coin per image, the same on every device."""
    generator = torch.Generator().manual_seed(config.seed * 1_000_003 + epoch * 100_003 + batch_number)
    return torch.rand(count, generator=generator) < 0.5


def epoch_flips(config: TrainConfig, epoch: int, count: int, device: torch.device) -> torch.Tensor | None:
    """Every batch's flip_choice of an epoch in one tensor on the device, so that on a GPU no batch waits on a host
    copy; None on the CPU (each batch draws its own) or without flips."""
    if not config.flip or device.type == "cpu":
        return None
    batches = math.ceil(count / config.batch_size)
    return torch.cat([flip_choice(config, epoch, b, min(config.batch_size, count - b * config.batch_size))
                      for b in range(batches)]).to(device)
