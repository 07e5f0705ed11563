"""Vision transformers, the study's first item of future work: timm's `VisionTransformer`, trained from scratch.

Named `vit-p{patch}-d{depth}-w{width}`: square patches of `patch` pixels, `depth` transformer blocks, tokens of
`width` numbers. Heads follow the width as in timm's ViT and DeiT models (64 numbers per head: w192 has 3 heads,
w384 six; at least one). The patch must divide the image size. Tokens are pooled by their mean (no class token),
so every patch's evidence reaches the logit alike.

`vit-p{patch}-d{depth}-w{width}-conv` makes the tokens with a stack of 3x3 convolutions in place of the patch
projection (Xiao et al., "Early convolutions help transformers see better", NeurIPS 2021), fed to timm's
`HybridEmbed`: one convolution at full resolution, then one of stride 2 per halving of the patch, so the patch
must be a power of two. The blocks, attention and pooling are the same.

The patch tokens after the last block also pass through `token_grid`, an identity module that sees them laid out
as an (N, width, H/patch, W/patch) map: that is what Grad-CAM reads for a transformer, as it reads a CNN's last
convolution (cifake.explain.gradcam). Attention maps come from the blocks' `attn` modules (cifake.explain.rollout).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from functools import partial

import torch
from torch import nn
from torch.nn import functional as F

from cifake.compat import import_torchvision
from cifake.models.registry import register_family, register_model

NAME = re.compile(r"vit-p(\d+)-d(\d+)-w(\d+)(-conv)?")
STEMS = ("patch", "conv")
HEAD_WIDTH = 64  # numbers per attention head, as in timm's ViT-Ti/S/B


def import_timm():
    """timm, imported on first use (scoring a CNN never loads it)."""
    import_torchvision()
    try:
        import timm
    except ImportError:
        raise ImportError("the vision-transformer family needs timm: pip install 'cifake[vit]'") from None
    return timm


@dataclass(frozen=True)
class ViTTopology:
    patch: int = 4
    depth: int = 6
    width: int = 128
    mlp_ratio: float = 4.0  # hidden width of each block's MLP over the token width
    flip_tta: bool = False  # in eval mode, average the logits of the image and its mirror
    stem: str = "patch"  # patch: timm's linear patch projection; conv: 3x3 convolutions (conv_stem)
    family: str = "vit"

    def __post_init__(self) -> None:
        if min(self.patch, self.depth, self.width) < 1 or self.mlp_ratio <= 0:
            raise ValueError(f"invalid topology {self}: patch, depth, width and mlp_ratio must be positive")
        if self.stem not in STEMS:
            raise ValueError(f"invalid topology {self}: stem must be one of {', '.join(STEMS)}")
        if self.stem == "conv" and self.patch & (self.patch - 1):
            raise ValueError(f"{self.name}: a convolutional stem halves the image, so its patch must be a power "
                             f"of two, not {self.patch}")

    @property
    def heads(self) -> int:
        return max(1, self.width // HEAD_WIDTH)

    @property
    def name(self) -> str:
        return f"vit-p{self.patch}-d{self.depth}-w{self.width}" + ("-conv" if self.stem == "conv" else "")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> ViTTopology:
        return cls(**values)

    @classmethod
    def parse(cls, name: str) -> ViTTopology | None:
        """The topology a name like vit-p4-d6-w128 describes; None for other names."""
        match = NAME.fullmatch(name)
        if not match:
            return None
        patch, depth, width = map(int, match.groups()[:3])
        return cls(patch, depth, width, stem="conv" if match[4] else "patch")


def conv_stem(patch: int, width: int) -> nn.Sequential:
    """3x3 convolution, batch norm and ReLU: one at full resolution, then one of stride 2 per halving of the patch,
    the channels doubling up to `width` (16 at least), so the map that leaves it is image size / patch."""
    halvings = patch.bit_length() - 1
    channels = [3] + [max(16, width >> (halvings - step)) for step in range(halvings + 1)]
    layers = []
    for step, (inputs, outputs) in enumerate(zip(channels, channels[1:])):
        layers += [nn.Conv2d(inputs, outputs, 3, stride=1 if step == 0 else 2, padding=1, bias=False),
                   nn.BatchNorm2d(outputs), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


class TokenGrid(nn.Identity):
    """The patch tokens as an (N, width, rows, columns) map, for Grad-CAM; passes them through unchanged."""


class VisionTransformerDetector(nn.Module):
    """Takes NCHW float pixels in 0..255 and returns one logit per image (evidence for REAL)."""

    def __init__(self, topology: ViTTopology, image_size: int = 32, mean: float = 127.5, std: float = 64.0):
        super().__init__()
        if image_size % topology.patch:
            raise ValueError(f"{topology.name}: a patch of {topology.patch} px does not divide a {image_size} px "
                             f"image; choose a patch size that divides it")
        timm = import_timm()
        self.topology = topology
        self.register_buffer("mean", torch.full((1, 3, 1, 1), float(mean)), persistent=False)
        self.register_buffer("std", torch.full((1, 3, 1, 1), float(std)), persistent=False)
        embedding = {"patch_size": topology.patch}
        if topology.stem == "conv":  # HybridEmbed's patch is counted on the stem's map, which is already reduced
            embedding = {"patch_size": 1, "embed_layer": partial(timm.layers.HybridEmbed,
                                                                 backbone=conv_stem(topology.patch, topology.width))}
        self.vit = timm.models.vision_transformer.VisionTransformer(
            img_size=image_size, embed_dim=topology.width, depth=topology.depth, num_heads=topology.heads,
            mlp_ratio=topology.mlp_ratio, num_classes=1, class_token=False, global_pool="avg",
            **embedding)
        self.grid_side = image_size // topology.patch
        self.token_grid = TokenGrid()

    def normalise_with(self, mean: float, std: float) -> None:
        """Set the pixel normalisation a saved config records."""
        self.mean.fill_(mean)
        self.std.fill_(std)

    def no_weight_decay(self) -> set[str]:
        """Parameters the optimizer leaves undecayed beside biases and norms (timm's convention)."""
        return {"vit." + name for name in self.vit.no_weight_decay()}

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        if self.training or not self.topology.flip_tta:
            return self.single_view(pixels)
        return (self.single_view(pixels) + self.single_view(pixels.flip(3))) / 2

    def single_view(self, pixels: torch.Tensor) -> torch.Tensor:
        """The logit of the image as given, without flip averaging (what the explanations explain)."""
        return self.vit.head(self._pooled(pixels)).squeeze(1)

    def embed(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits as forward gives them, pooled features as unit vectors), for the domain check."""
        pooled = self._pooled(pixels)
        if not self.training and self.topology.flip_tta:
            pooled = (pooled + self._pooled(pixels.flip(3))) / 2  # the head is linear: same logit as forward
        return self.vit.head(pooled).squeeze(1), F.normalize(pooled.float(), dim=1)

    def _pooled(self, pixels: torch.Tensor) -> torch.Tensor:
        vit = self.vit
        tokens = vit.norm_pre(vit._pos_embed(vit.patch_embed((pixels - self.mean) / self.std)))
        tokens = self._through_grid(vit.blocks(tokens))
        return vit.forward_head(vit.norm(tokens), pre_logits=True)

    def _through_grid(self, tokens: torch.Tensor) -> torch.Tensor:
        batch, count, width = tokens.shape
        grid = tokens.transpose(1, 2).reshape(batch, width, self.grid_side, self.grid_side)
        return self.token_grid(grid).flatten(2).transpose(1, 2)


register_family("vit", ViTTopology, VisionTransformerDetector, parse=ViTTopology.parse,
                pattern="vit-p{patch}-d{depth}-w{width}[-conv]")
# Any vit-p{patch}-d{depth}-w{width}[-conv] is accepted; this one is recipes/vit.json's (docs/transformers.md).
register_model("vit", ViTTopology(patch=4, depth=6, width=128, stem="conv"))
