"""A tiny Stable Diffusion pipeline with random weights, built from configs: offline tests and benchmarks.

It has the real architecture (UNet2DConditionModel, AutoencoderKL, CLIPTextModel, CLIPTokenizer, Euler
Ancestral scheduler), only very small, so `cifake generate --model FOLDER` runs end to end without weights.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from cifake.compat import import_torchvision
from cifake.data.sources import CIFAR10_CLASSES

import_torchvision()  # before diffusers and transformers, which import it (cifake.compat says why)
from diffusers import (AutoencoderKL, EulerAncestralDiscreteScheduler, StableDiffusionPipeline,  # noqa: E402
                       UNet2DConditionModel)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer  # noqa: E402

WORDS = ["a", "an", "photograph", "of", *CIFAR10_CLASSES]


def build_tiny_pipeline(folder: str | Path, seed: int = 0) -> Path:
    """Save a tiny random-weight StableDiffusionPipeline to `folder`; returns the folder."""
    folder = Path(folder)
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(8, 16), layers_per_block=1, sample_size=8, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=16, attention_head_dim=2, norm_num_groups=4,
    )
    vae = AutoencoderKL(
        block_out_channels=(8, 16), in_channels=3, out_channels=3, latent_channels=4, norm_num_groups=4,
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2, sample_size=16,
    )
    text_encoder = CLIPTextModel(CLIPTextConfig(
        bos_token_id=0, eos_token_id=2, pad_token_id=1, hidden_size=16, intermediate_size=32, num_attention_heads=2,
        num_hidden_layers=2, vocab_size=64, max_position_embeddings=77, layer_norm_eps=1e-5,
    ))
    vocab = {"<|startoftext|>": 0, "!": 1, "<|endoftext|>": 2} | {f"{w}</w>": i + 3 for i, w in enumerate(WORDS)}
    words = folder / "tokenizer-source"
    words.mkdir(parents=True, exist_ok=True)
    (words / "vocab.json").write_text(json.dumps(vocab))
    (words / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(str(words / "vocab.json"), str(words / "merges.txt"), model_max_length=77)
    scheduler = EulerAncestralDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                                num_train_timesteps=1000, steps_offset=1)
    pipeline = StableDiffusionPipeline(unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                                       scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                       requires_safety_checker=False)
    pipeline.save_pretrained(folder)
    return folder
