"""What to generate: one job per image, named as CIFAKE names its files, each with its own seed.

Pure planning (no diffusers, no torch): which files, prompts and seeds; which shard does which job.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from dataclasses import asdict, dataclass, field

from cifake.choices import DEVICES
from cifake.data import load_dataset
from cifake.data.sources import CIFAR10_CLASSES, cifake_file_name
from cifake.settings import Allowed, check_settings, setting

DEFAULT_MODEL = "CompVis/stable-diffusion-v1-4"
POSITIVE_INT = Allowed(low=1)
DEFAULT_PROMPT = "a photograph of {article} {label}"
SCHEDULERS = {
    "euler-ancestral": "EulerAncestralDiscreteScheduler",  # the study's
    "euler": "EulerDiscreteScheduler",
    "ddim": "DDIMScheduler",
    "pndm": "PNDMScheduler",
    "lms": "LMSDiscreteScheduler",
    "dpm++": "DPMSolverMultistepScheduler",
}
DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


@dataclass
class GenerateConfig:
    """The study's defaults: SD 1.4, Euler Ancestral, 50 steps, 512 px renders resized to 32 px bilinear. The
    fields declared with `setting` are `cifake generate`'s options as they are; the command parses the others."""

    out: str
    classes: list[str] = field(default_factory=lambda: list(CIFAR10_CLASSES))
    per_class: int | list[int] = 10  # one count for every class, or one count per class
    model: str = setting(DEFAULT_MODEL, "Hugging Face model id or local diffusers folder.")
    scheduler: str = setting("euler-ancestral", "Sampler (euler-ancestral is the study's).",
                             Allowed(choices=tuple(SCHEDULERS)))
    steps: int = setting(50, "Denoising steps.", POSITIVE_INT)
    size: int = setting(512, "Render size in pixels.", POSITIVE_INT)
    out_size: int = setting(32, "Saved size in pixels (bilinear resize).", POSITIVE_INT)
    prompt_template: str = setting(DEFAULT_PROMPT, "Prompt; {label} and {article} (a/an) are filled in.")
    seed: int = setting(1, "Base seed; each image's seed derives from (seed, class, index).")
    device: str = setting("cpu", "Where the pipeline runs.", Allowed(choices=DEVICES))
    dtype: str = setting("fp32", "Pipeline precision.", Allowed(choices=tuple(DTYPES)))
    batch_size: int = setting(4, "Images per pipeline call.", POSITIVE_INT)
    keep_full_size: bool = setting(False, "Also keep each full-size render as PNG.")
    shard: tuple[int, int] = (0, 1)  # (index, count): this process makes every count-th job from index

    def __post_init__(self) -> None:
        check_settings(self, "generation setting")

    def counts(self) -> list[int]:
        counts = [self.per_class] * len(self.classes) if isinstance(self.per_class, int) else list(self.per_class)
        if len(counts) != len(self.classes) or any(c < 0 for c in counts):
            raise ValueError(f"need one non-negative count per class; got {counts} for {len(self.classes)} classes")
        files = [job_file_name(name, 0) for name in self.classes]
        if len(set(files)) != len(files):
            raise ValueError(f"classes {self.classes} name the same files twice (a class is listed twice)")
        return counts

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Job:
    class_index: int  # the CIFAR-10 index of the class, or -1 for a class outside CIFAR-10
    class_name: str
    index: int
    file_name: str  # CIFAKE naming: "N.jpg" for airplane, "N (k).jpg" for CIFAR-10 class k-1
    prompt: str
    seed: int


def image_seed(base_seed: int, class_name: str, index: int) -> int:
    """A seed of its own for every image, from (base seed, class, index): any image can be regenerated alone."""
    digest = hashlib.sha256(f"{base_seed}/{class_name}/{index}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1  # 63 bits: what torch.Generator.manual_seed accepts


def prompt_for(template: str, label: str) -> str:
    article = "an" if label[:1].lower() in "aeiou" else "a"
    return template.format(label=label, article=article)


def plan_jobs(config: GenerateConfig) -> list[Job]:
    """This shard's jobs, in a fixed order (class by class, index by index)."""
    shard, shards = config.shard
    if not 0 <= shard < shards:
        raise ValueError(f"shard {shard}/{shards}: the index must lie in 0..{shards - 1}")
    jobs = [
        Job(cifar_index(name), name, i, job_file_name(name, i), prompt_for(config.prompt_template, name),
            image_seed(config.seed, name, i))
        for name, count in zip(config.classes, config.counts())
        for i in range(count)
    ]
    return jobs[shard::shards]


def cifar_index(class_name: str) -> int:
    """The CIFAR-10 index of a class name (case-insensitive), or -1 when CIFAR-10 has no such class."""
    lowered = class_name.strip().lower()
    return CIFAR10_CLASSES.index(lowered) if lowered in CIFAR10_CLASSES else -1


def job_file_name(class_name: str, index: int) -> str:
    """The file of image `index` of a class. A CIFAR-10 class gets CIFAKE's name, so the data layer reads its
    class back whatever subset is generated ("3 (4).jpg" is a cat whether or not airplane was asked for);
    another class gets "<class>-N.jpg", which the data layer reads as class -1 instead of inventing one."""
    k = cifar_index(class_name)
    if k >= 0:
        return cifake_file_name(index, k)
    slug = re.sub(r"[^a-z0-9]+", "-", class_name.strip().lower()).strip("-")
    if not slug:
        raise ValueError(f"class name {class_name!r} has no letters or digits to name its files by")
    return f"{slug}-{index}.jpg"


def parse_shard(text: str) -> tuple[int, int]:
    """'i/n' -> (i, n); i counts from 0, so 0/4 is the first of four shards."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard takes i/n, e.g. 0/4, not {text!r}") from None
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"--shard {text}: need 0 <= i < n")
    return index, count


def counts_like(source) -> tuple[list[str], list[int]]:
    """Class names and REAL image counts of a labelled real source (every split), to make its synthetic twin."""
    data = load_dataset(source, progress=False)
    counts: Counter[int] = Counter()
    for images in data.splits.values():
        counts.update(images.classes[images.labels == 1].tolist())
    known = sorted(k for k in counts if k >= 0)
    if not known:
        raise ValueError(f"{source}: no REAL images with a CIFAR-10 class in their names (N.jpg or N (k).jpg)")
    return [CIFAR10_CLASSES[k] for k in known], [counts[k] for k in known]
