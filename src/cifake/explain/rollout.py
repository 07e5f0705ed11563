"""Attention rollout (Abnar & Zuidema, 2020) and its gradient-weighted form (Chefer et al., 2021), for the
vision-transformer family.

Rollout follows how much each output token draws on each input patch through every block: the heads' mean
attention of a block, plus the identity for its residual path, rows renormalised, multiplied block by block. The
gradient-weighted form keeps, per head, only attention that raises the explained score (the positive part of the
attention times its gradient) and accumulates R <- R + A R from the identity, which it leaves out at the end. The
family pools all patch tokens by their mean into the logit, so a patch's relevance is the mean of its column over
every output token; the map is that relevance on the patch grid, upsampled bilinearly to the image.

Written here, not taken from a library: pytorch-grad-cam has Grad-CAM for transformers but no rollout, captum has
neither, and timm's AttentionExtract returns the attention maps without the model's output, which the gradient
form needs. The maps are read as timm's extractor reads them, at each block's attention dropout, with timm's fused
attention switched off while they are read: the fused kernel computes attention without passing it there.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn
from torch.nn import functional as F

from cifake.explain.base import AttributionMethod


def attention_modules(model: nn.Module) -> list[nn.Module]:
    """The attention modules of a model's transformer blocks, input side first ([] for a CNN)."""
    return [m for m in model.modules() if hasattr(m, "fused_attn") and hasattr(m, "attn_drop")]


def require_attention(model: nn.Module) -> list[nn.Module]:
    """The model's attention modules; a clear error for a model without any."""
    modules = attention_modules(model)
    if not modules:
        raise ValueError(f"{type(model).__name__} has no attention to roll out: rollout and grad-rollout explain "
                         f"the vision-transformer family (use gradcam or ig for this model)")
    if hasattr(model, "members"):  # the members' blocks would be rolled out as one chain
        raise ValueError("rollout and grad-rollout explain one transformer, not an ensemble: explain a member's run "
                         "folder, or use gradcam or ig for the ensemble")
    return modules


@contextmanager
def attention_maps(model: nn.Module):
    """Collect each block's (N, heads, T, T) attention probabilities, in order, while the block runs unfused."""
    modules = require_attention(model)
    maps: list[torch.Tensor] = []
    fused = [m.fused_attn for m in modules]
    hooks = [m.attn_drop.register_forward_hook(lambda _m, _i, out: maps.append(out)) for m in modules]
    for module in modules:
        module.fused_attn = False
    try:
        yield maps
    finally:
        for module, was in zip(modules, fused):
            module.fused_attn = was
        for hook in hooks:
            hook.remove()


class AttentionRollout(AttributionMethod):
    """The heads' mean attention with the residual identity, rolled out through the blocks."""

    def __init__(self, model: nn.Module, batch_size: int = 256):
        super().__init__(model, batch_size)
        require_attention(self.model)

    def attribute(self, pixels: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        with torch.no_grad(), attention_maps(self.model) as maps:
            self.scores(pixels)
        rolled = None
        for attention in maps:
            mixed = 0.5 * attention.float().mean(1) + 0.5 * torch.eye(attention.shape[-1], device=attention.device)
            mixed = mixed / mixed.sum(-1, keepdim=True)
            rolled = mixed if rolled is None else mixed @ rolled
        return _patch_map(rolled.mean(1), pixels)


class GradientRollout(AttentionRollout):
    """Attention weighted by its gradient towards the explained score, positive part, accumulated block by block."""

    def attribute(self, pixels: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad(), attention_maps(self.model) as maps:
            score = self.scores(pixels).gather(1, labels[:, None]).sum()
            gradients = torch.autograd.grad(score, maps)
        count = maps[0].shape[-1]
        relevance = torch.eye(count, device=pixels.device).expand(len(pixels), count, count)
        for attention, gradient in zip(maps, gradients):
            weighted = (attention.detach() * gradient).clamp(min=0).float().mean(1)
            relevance = relevance + weighted @ relevance
        # less the identity, each token's relevance to itself: a constant 1/tokens per patch that would swamp the
        # attention's terms (gradients of one logit are small) and that Chefer et al. leave out the same way
        return _patch_map((relevance - torch.eye(count, device=pixels.device)).mean(1), pixels)


def _patch_map(relevance: torch.Tensor, pixels: torch.Tensor) -> torch.Tensor:
    """(N, tokens) relevance of the patch tokens -> (N, H, W) at the image's size."""
    side = int(round(relevance.shape[1] ** 0.5))
    grid = relevance.reshape(len(relevance), 1, side, side)
    return F.interpolate(grid, size=tuple(pixels.shape[-2:]), mode="bilinear", align_corners=False).squeeze(1)
