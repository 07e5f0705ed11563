"""Synthetic twins with latent diffusion (the study's step 1), built on Hugging Face diffusers."""

from cifake.generate.plan import DEFAULT_MODEL, GenerateConfig, Job, counts_like, image_seed, parse_shard, plan_jobs

__all__ = ["DEFAULT_MODEL", "GenerateConfig", "Job", "counts_like", "image_seed", "parse_shard", "plan_jobs"]
