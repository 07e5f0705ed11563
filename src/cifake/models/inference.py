"""Batched inference from uint8 pixel arrays: the one forward pass that evaluation and training share."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from cifake.data.preprocess import PREDICT_CROPS, prediction_crops


def to_model_input(pixels: torch.Tensor, channels_last: bool = True) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, H, W) float. NHWC memory already is channels_last, so that costs no copy."""
    x = pixels.permute(0, 3, 1, 2).float()
    return x if channels_last else x.contiguous()


@torch.inference_mode()
def predict_logits(model: nn.Module, images: np.ndarray | torch.Tensor, batch_size: int = 64,
                   bf16: bool = False) -> np.ndarray:
    """Logits (evidence for REAL) of (N, 32, 32, 3) uint8 images, computed batch by batch in bounded memory on
    the model's device; `images` may already be a tensor there. Logits are gathered on the device and copied back
    once, so a GPU is not made to wait for the host after every batch."""
    model.eval()
    device = next(model.parameters()).device
    out = torch.empty(len(images), dtype=torch.float32, device=device)
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size]
        if not isinstance(batch, torch.Tensor):
            batch = torch.from_numpy(np.array(batch))  # a copy: memmaps are read-only
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            out[start : start + len(batch)] = model(to_model_input(batch.to(device))).float()
    return out.cpu().numpy()


@torch.inference_mode()
def predict_embeddings(model: nn.Module, images: np.ndarray, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """(logits, penultimate unit features) of (N, S, S, 3) uint8 images, batch by batch (see `embed` in each
    family): what the domain check is fitted on and scores."""
    model.eval()
    device = next(model.parameters()).device
    logits, features = [], []
    for start in range(0, len(images), batch_size):
        batch = torch.from_numpy(np.array(images[start : start + batch_size])).to(device)
        batch_logits, batch_features = model.embed(to_model_input(batch))
        logits.append(batch_logits.float().cpu().numpy())
        features.append(batch_features.float().cpu().numpy())
    width = features[0].shape[1] if features else 0
    return (np.concatenate(logits) if logits else np.empty(0, np.float32),
            np.concatenate(features) if features else np.empty((0, width), np.float32))


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """P(REAL) from logits, without overflow for large negative values."""
    return (1.0 / (1.0 + np.exp(-np.clip(logits, -80, 80)))).astype(np.float32)


def five_crop_logits(model: nn.Module, images, batch_size: int = 64) -> np.ndarray:
    """Logits of a crop model's images as prediction scores them: the mean over the centre and four corner crops
    of each stored window (cifake.data.preprocess), for `images` a crop model's Pixels."""
    out = np.empty(len(images), np.float32)
    for start in range(0, len(images), batch_size):
        windows, extents = images.windows(np.arange(start, min(start + batch_size, len(images))))
        views = prediction_crops(windows, extents, images.size).reshape(-1, images.size, images.size, 3)
        logits = predict_logits(model, views, batch_size * PREDICT_CROPS)
        out[start:start + len(windows)] = logits.reshape(PREDICT_CROPS, len(windows)).mean(0)
    return out
