"""`cifake generate`: a CIFAKE-style synthetic twin, made with Stable Diffusion (diffusers)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from cifake.cli.common import Quiet, RayAddress, app, console
from cifake.cli.options import settings_options
from cifake.generate.plan import GenerateConfig, counts_like, parse_shard


@app.command()
@settings_options(GenerateConfig, "settings", build=False)
def generate(
    settings: dict,
    out: Annotated[Path, typer.Option(help="Output folder: FAKE/<CIFAKE name>.jpg and manifest.jsonl.")],
    classes: Annotated[Optional[str], typer.Option(
        help="Comma-separated class names (default: CIFAR-10's ten).")] = None,
    per_class: Annotated[int, typer.Option(help="Images per class.")] = GenerateConfig.per_class,
    like: Annotated[Optional[Path], typer.Option(
        help="Take classes and counts from this labelled REAL source.")] = None,
    shard: Annotated[str, typer.Option(help="i/n: make only shard i (from 0) of n, for several processes.")] = "0/1",
    ray_address: RayAddress = None,
    quiet: Quiet = False,
) -> None:
    """Render a CIFAKE-style synthetic twin with Stable Diffusion; reruns resume, shards split the work."""
    from cifake.generate.pipeline import generate as run_generation

    names = [c.strip() for c in classes.split(",")] if classes else None
    counts: int | list[int] = per_class
    if like:
        names, counts = counts_like(like)
    config = GenerateConfig(out=str(out), per_class=counts, shard=parse_shard(shard), **settings,
                            **({"classes": names} if names else {}))
    config.counts()
    if ray_address:
        from cifake.generate.distributed import generate_on_ray

        summaries = generate_on_ray(config, ray_address)
        console.print(f"{sum(s['generated'] for s in summaries):,} images made by {len(summaries)} Ray shards")
        return
    summary = run_generation(config, progress=not quiet)
    rate = f", {summary['images_per_second']} images/s" if summary.get("images_per_second") else ""
    console.print(f"{summary['generated']:,} made, {summary['skipped_existing']:,} already there "
                  f"({summary['planned']:,} in this shard){rate}. Output: {out}")
