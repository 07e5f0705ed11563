"""The shared base of attribution methods: batching, targets and upsampling; one method per file builds on it.

Targets: the model has one logit, the evidence for REAL. A map *for REAL* explains the logit; a map *for
FAKE* explains its negative. Internally the model is wrapped to output the two scores [-logit, logit], so
the target index is the label itself (FAKE = 0, REAL = 1).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
import torch
from torch import nn

from cifake.choices import TARGETS
from cifake.models.inference import to_model_input



class OneView(nn.Module):
    """The logit that maps explain: the model's on the image as given. A model with test-time flips also scores the
    mirror image, whose pixels a map does not line up with; its verdict still sets which label a map is for."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model.single_view(pixels) if hasattr(self.model, "single_view") else self.model(pixels)


class TwoScores(nn.Module):
    """[-logit, logit] of one view: column 0 is the evidence for FAKE, column 1 the evidence for REAL."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.one_view = OneView(model)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        logit = self.one_view(pixels)
        return torch.stack([-logit, logit], dim=1)


class AttributionMethod(ABC):
    """Maps of where the evidence lies, one map per image at its size, computed in batches of bounded size."""

    passes_per_map = 1  # forward and backward passes per image and map: what a set of maps costs

    def __init__(self, model: nn.Module, batch_size: int = 256):
        self.model = model.eval().to(memory_format=torch.contiguous_format)
        self.scores = TwoScores(self.model)
        self.batch_size = batch_size  # images per batch at 32 px; fewer at larger sizes (_batch)

    def __call__(self, images: np.ndarray, target: str | np.ndarray = "predicted") -> tuple[np.ndarray, np.ndarray]:
        """(maps (N, H, W) float32, target labels (N,)) for uint8 (N, H, W, 3) images.

        `target` is "predicted" (the model's verdict), "REAL", "FAKE", or one label per image (1 REAL, 0 FAKE).
        """
        maps = np.empty(images.shape[:3], np.float32)
        targets = np.empty(len(images), np.int64)
        device = next(self.model.parameters()).device
        step = self._batch(images.shape[1] * images.shape[2])
        for start in range(0, len(images), step):
            batch = torch.from_numpy(np.array(images[start : start + step])).to(device)
            pixels = to_model_input(batch, False)
            labels = self._targets(pixels, target, start)
            maps[start : start + len(pixels)] = self.attribute(pixels, labels).detach().cpu().numpy()
            targets[start : start + len(pixels)] = labels.cpu().numpy()
        return maps, targets

    def _batch(self, pixels_per_image: int) -> int:
        """Images per batch: `batch_size` at 32 x 32, and as many pixels in all at any other size: a batch's
        activations and their gradients grow with its pixels, 64 times over at 256 px."""
        return max(1, self.batch_size * 32 * 32 // pixels_per_image)

    def _targets(self, pixels: torch.Tensor, target: str | np.ndarray, start: int) -> torch.Tensor:
        if isinstance(target, str):
            if target not in TARGETS:
                raise ValueError(f"target must be one of {TARGETS} or one label per image, not {target!r}")
            if target == "predicted":
                with torch.no_grad():
                    return (self.model(pixels) > 0).long()
            return torch.full((len(pixels),), 1 if target == "REAL" else 0, dtype=torch.long, device=pixels.device)
        return torch.as_tensor(np.asarray(target)[start : start + len(pixels)], dtype=torch.long, device=pixels.device)

    @abstractmethod
    def attribute(self, pixels: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """(N, H, W) maps for NCHW float pixels (0..255) and target labels."""
