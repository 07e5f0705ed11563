"""Render synthetic twins with Hugging Face diffusers' StableDiffusionPipeline, resumably and atomically.

Layout written under OUT: FAKE/<CIFAKE name>.jpg (so `cifake data` reads OUT directly, as one REAL/FAKE
folder), manifest.jsonl (one line per image), and with --keep-full-size full-size/<class>/<name>.png.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import torch
from PIL import Image

from cifake.compat import import_torchvision
from cifake.errors import WeightsNotFound
from cifake.files import atomic_write
from cifake.generate.plan import DEFAULT_MODEL, DTYPES, SCHEDULERS, GenerateConfig, Job, plan_jobs
from cifake.progress import progress_bar



def weights_help(model: str) -> str:
    return (
        f"Stable Diffusion weights for {model!r} were not found on this machine and could not be downloaded.\n"
        f"Download them where there is network, e.g.\n"
        f"  huggingface-cli download {model if '/' in model else DEFAULT_MODEL} --local-dir ./stable-diffusion-v1-4\n"
        f"(the licence must be accepted on huggingface.co first), copy the folder here, and pass\n"
        f"  --model ./stable-diffusion-v1-4\n"
        f"A local folder needs model_index.json with unet/, vae/, text_encoder/, tokenizer/ and scheduler/ beside it."
    )


def load_pipeline(model: str, scheduler: str = "euler-ancestral", device: str = "cpu", dtype: str = "fp32"):
    """A StableDiffusionPipeline from a local folder, the Hugging Face cache, or (last) a download."""
    import_torchvision()  # before diffusers and transformers, which import it (cifake.compat says why)
    import diffusers  # the generate extra: the rest of cifake runs without it
    import transformers

    transformers.logging.set_verbosity_error()  # no advice about optional packages
    diffusers.utils.logging.disable_progress_bar()  # loading is quick; our own bar counts images
    if scheduler not in SCHEDULERS:
        raise ValueError(f"unknown scheduler {scheduler!r}; choose one of {', '.join(SCHEDULERS)}")
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    options = {"dtype": getattr(torch, DTYPES[dtype]), "safety_checker": None, "requires_safety_checker": False}
    path = Path(model).expanduser()
    if path.exists():
        if not (path / "model_index.json").is_file():
            raise WeightsNotFound(f"{path}: no model_index.json, so not a diffusers model folder.\n"
                                  + weights_help(model))
        pipe = diffusers.StableDiffusionPipeline.from_pretrained(path, **options)
    else:
        pipe = _from_hub(model, options)
    pipe.scheduler = getattr(diffusers, SCHEDULERS[scheduler]).from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)  # our own bar counts images, not denoising steps
    return pipe.to(device)


def _from_hub(model: str, options: dict):
    import diffusers

    try:  # the local cache first: no network needed, and no waiting on one that is not there
        return diffusers.StableDiffusionPipeline.from_pretrained(model, local_files_only=True, **options)
    except (OSError, ValueError):
        pass
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false"):
        raise WeightsNotFound(weights_help(model))
    try:
        return diffusers.StableDiffusionPipeline.from_pretrained(model, **options)
    except Exception as exc:  # no network, no such repo, no access: the same advice applies
        raise WeightsNotFound(f"{weights_help(model)}\n(download failed: {exc})") from None


def generate(config: GenerateConfig, pipe=None, progress: bool = True) -> dict:
    """Make every missing image of this shard; images already on disk are skipped, so a rerun resumes."""
    out = Path(config.out)
    jobs = plan_jobs(config)
    folder = out / "FAKE"
    folder.mkdir(parents=True, exist_ok=True)
    done = {job.file_name for job in jobs if (folder / job.file_name).exists()}
    todo = [job for job in jobs if job.file_name not in done]
    _recover_manifest(out, config, [job for job in jobs if job.file_name in done])
    summary = {"planned": len(jobs), "skipped_existing": len(jobs) - len(todo), "generated": 0, "seconds": 0.0}
    if not todo:
        return summary
    pipe = pipe or load_pipeline(config.model, config.scheduler, config.device, config.dtype)
    started = time.perf_counter()
    with progress_bar(progress) as bar:
        task = bar.add_task(f"Generating (shard {config.shard[0]}/{config.shard[1]})", total=len(todo))
        for start in range(0, len(todo), config.batch_size):
            batch = todo[start : start + config.batch_size]
            batch_started = time.perf_counter()
            renders = _render(pipe, config, batch)
            seconds = (time.perf_counter() - batch_started) / len(batch)
            for job, render in zip(batch, renders):
                small = render.convert("RGB").resize((config.out_size, config.out_size), Image.Resampling.BILINEAR)
                if config.keep_full_size:
                    full = out / "full-size" / job.class_name / f"{Path(job.file_name).stem}.png"
                    full.parent.mkdir(parents=True, exist_ok=True)
                    _atomic_save(render, full, "PNG")
                # CIFAKE's files are baseline JPEG, quality 75, 4:2:0 chroma subsampling: Pillow's defaults
                _atomic_save(small, folder / job.file_name, "JPEG", quality=75, subsampling="4:2:0")
                _append_manifest(out, _manifest_line(config, job, round(seconds, 4)))
            summary["generated"] += len(batch)
            bar.advance(task, len(batch))
    summary["seconds"] = round(time.perf_counter() - started, 3)
    summary["images_per_second"] = round(summary["generated"] / summary["seconds"], 4) if summary["seconds"] else None
    return summary


def _render(pipe, config: GenerateConfig, batch: list[Job]):
    # One generator per image: its starting noise and every ancestral step depend on its own seed only.
    generators = [torch.Generator(device="cpu").manual_seed(job.seed) for job in batch]
    result = pipe(
        prompt=[job.prompt for job in batch],
        num_inference_steps=config.steps,
        height=config.size,
        width=config.size,
        generator=generators,
        output_type="pil",
    )
    return result.images


def _atomic_save(image, path: Path, fmt: str, **options) -> None:
    atomic_write(path, lambda tmp: image.save(tmp, fmt, **options))


def _manifest_line(config: GenerateConfig, job: Job, seconds: float | None) -> dict:
    return {
        "file": f"FAKE/{job.file_name}", "class": job.class_name, "class_index": job.class_index,
        "index": job.index, "prompt": job.prompt, "seed": job.seed, "model": config.model,
        "scheduler": config.scheduler, "steps": config.steps, "size": config.size, "out_size": config.out_size,
        "device": config.device, "dtype": config.dtype, "seconds": seconds,
    }


def _append_manifest(out: Path, line: dict) -> None:
    # One write() of one short line on a file opened for appending: whole lines even with shards side by side.
    with open(out / "manifest.jsonl", "a") as file:
        file.write(json.dumps(line) + "\n")


def read_manifest(out: str | os.PathLike) -> dict[str, dict]:
    """file -> its manifest entry (the last one written, if an image was made twice)."""
    path = Path(out) / "manifest.jsonl"
    if not path.exists():
        return {}
    entries = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {entry["file"]: entry for entry in entries}


def _recover_manifest(out: Path, config: GenerateConfig, existing: list[Job]) -> None:
    """A run killed between writing an image and its manifest line: write the line now (time unknown)."""
    recorded = read_manifest(out)
    for job in existing:
        if f"FAKE/{job.file_name}" not in recorded:
            _append_manifest(out, _manifest_line(config, job, None))
