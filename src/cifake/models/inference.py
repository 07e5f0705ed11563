"""Batched inference from uint8 pixel arrays: the one forward pass that evaluation and training share."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def to_model_input(pixels: torch.Tensor, channels_last: bool = True) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, H, W) float. NHWC memory already is channels_last, so that costs no copy."""
    x = pixels.permute(0, 3, 1, 2).float()
    return x if channels_last else x.contiguous()


@torch.inference_mode()
def predict_logits(model: nn.Module, images: np.ndarray, batch_size: int = 64, bf16: bool = False) -> np.ndarray:
    """Logits (evidence for REAL) of (N, 32, 32, 3) uint8 images, computed batch by batch in bounded memory."""
    model.eval()
    out = np.empty(len(images), np.float32)
    for start in range(0, len(images), batch_size):
        batch = torch.from_numpy(np.array(images[start : start + batch_size]))  # a copy: memmaps are read-only
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out[start : start + len(batch)] = model(to_model_input(batch)).float().numpy()
    return out


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """P(REAL) from logits, without overflow for large negative values."""
    return (1.0 / (1.0 + np.exp(-np.clip(logits, -80, 80)))).astype(np.float32)
