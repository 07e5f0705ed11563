"""Every setting of a training run, in one plain dataclass (no torch here: the CLI builds its options from it).

Each field carries its --help text and the values it may take, so the CLI's training options, the search's
per-trial settings and the bundled recipe are all this one declaration.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from cifake.choices import COMPILE_MODES, DEVICE_HELP, DEVICE_PATTERN, OPTIMIZERS, SCHEDULES


@dataclass(frozen=True)
class Allowed:
    """The values a setting may take, as a check and as words for its error message."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False  # low itself is excluded
    high_open: bool = False
    choices: tuple[str, ...] = ()
    pattern: str | None = None  # a regular expression the whole value must match
    described: str = ""  # the pattern in words, for the error message

    def admits(self, value) -> bool:
        if self.pattern:
            return isinstance(value, str) and re.fullmatch(self.pattern, value) is not None
        if self.choices:
            return value in self.choices
        return ((self.low is None or value > self.low or (value == self.low and not self.low_open))
                and (self.high is None or value < self.high or (value == self.high and not self.high_open)))

    def __str__(self) -> str:
        if self.pattern:
            return self.described
        if self.choices:
            return "one of " + ", ".join(self.choices)
        if self.high is None:
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        return f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"


def _setting(default, help: str, allowed: Allowed | None = None, flag: str | None = None, resumable: bool = True):
    """A training setting: its default, its --help text, the values it may take, its option name when that is not
    the field's, and whether a checkpoint must share it with the run that resumes it (resumable=False: the run
    may change it, e.g. extend its epochs)."""
    return field(default=default, metadata={"help": help, "allowed": allowed, "flag": flag, "fixed": resumable})


POSITIVE_INT = Allowed(low=1)
SHARE = Allowed(low=0, high=1)
SHARE_BELOW_ONE = Allowed(low=0, high=1, high_open=True)
NON_NEGATIVE = Allowed(low=0)


@dataclass(frozen=True)
class TrainConfig:
    """Every setting of a training run: the CLI's training options, the search's per-trial settings and the
    bundled recipe are all instances of this, and every run records it."""

    epochs: int = _setting(5, "Maximum epochs (early stopping on validation loss may end sooner).", POSITIVE_INT,
                           resumable=False)
    batch_size: int = _setting(64, "Batch size.", POSITIVE_INT)  # faster than Keras' default 32 (bench_train.py)
    learning_rate: float = _setting(1e-3, "Learning rate.", Allowed(low=0, low_open=True), flag="--lr")
    patience: int = _setting(2, "Early-stopping patience in epochs (validation loss); best weights are restored.",
                             POSITIVE_INT, resumable=False)
    seed: int = _setting(1, "Seed for everything: weights, shuffles, split (the study used 1).")
    bf16: bool = _setting(True, "Mixed precision while training: bf16 autocast (CPUs with AVX-512 or AMX, recent "
                                "GPUs), fp16 with a gradient scaler on GPUs without bf16; fp32 on MPS and on CPUs "
                                "without bf16 kernels, where bf16 is 11x slower.")
    channels_last: bool = _setting(True, "NHWC memory format, which oneDNN convolves faster on CPU.")
    # small batches keep activations in cache: 64 ran 2-3x faster than 1024 (benchmarks/bench_inference.py)
    eval_batch_size: int = _setting(64, "Batch size for validation and test scoring.", POSITIVE_INT, resumable=False)
    degrade: float = _setting(0.0, "Robust training: share of training images given a random JPEG / rescale / "
                                   "blur / noise degradation.", SHARE)
    translate: int = _setting(0, "Move each training image by a random 0..N pixels each way (reflected border).",
                              Allowed(low=0, high=8))
    # --- the recipe beyond the study (defaults keep the study's plain Adam) ---
    optimizer: str = _setting("adam", "adam (the study), adamw, or sgd (Nesterov momentum 0.9).",
                              Allowed(choices=OPTIMIZERS))
    weight_decay: float = _setting(0.0, "Weight decay.", NON_NEGATIVE)
    schedule: str = _setting("constant", "constant, or onecycle (linear warm-up, then linear decay to 0).",
                             Allowed(choices=SCHEDULES))
    warmup_epochs: float = _setting(0.0, "Warm-up length of the onecycle schedule, in epochs.", NON_NEGATIVE)
    label_smoothing: float = _setting(0.0, "Pull targets towards 0.5 by this much.", SHARE_BELOW_ONE)
    ema: float = _setting(0.0, "Decay of a moving average of the weights, validated and saved (e.g. 0.999); 0: off.",
                          SHARE_BELOW_ONE)
    flip: bool = _setting(False, "Mirror a random half of each batch (a photo and its mirror are equally real).")
    compile: str = _setting("off", "torch.compile the training forward pass: off, default, or reduce-overhead (CUDA "
                                   "graphs); for tiny CNNs on a GPU, where kernel launches dominate "
                                   "(benchmarks/gpu_check.py measures it).", Allowed(choices=COMPILE_MODES))
    # --- distillation: the targets mix each label with a teacher's calibrated probability (cifake.training.distill)
    teacher: str = _setting("", "Distillation: a model folder, or 'bundled', whose calibrated P(REAL) of each clean "
                                "training image is mixed into that image's target; '' for none.")
    distill: float = _setting(0.0, "Distillation: the teacher's share of each target (0: the labels alone, 1: the "
                                   "teacher alone).", SHARE)
    # Not resume keys: the checkpoint records the device and the CPU thread count it was made with, and a resume
    # with others is refused there (0 threads means "all cores", which differ from machine to machine).
    threads: int = _setting(0, "CPU threads for torch (0: all cores). The count is part of the arithmetic: a run "
                               "gives the same weights again, and resumes, only with the same count.", NON_NEGATIVE,
                            resumable=False)
    device: str = _setting("auto", DEVICE_HELP, Allowed(pattern=DEVICE_PATTERN,
                                                        described="one of auto, cpu, cuda, cuda:N, mps"),
                           resumable=False)

    def __post_init__(self) -> None:
        for setting in fields(self):
            allowed, value = setting.metadata["allowed"], getattr(self, setting.name)
            if allowed and not allowed.admits(value):
                raise ValueError(f"training setting {setting.name} must be {allowed}, not {value!r}")
        if bool(self.teacher) != (self.distill > 0):
            raise ValueError(f"training settings teacher and distill go together: a teacher needs a distill share "
                             f"above 0, and a share needs a teacher (teacher {self.teacher!r}, distill {self.distill})")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, settings: dict, origin: str = "training settings") -> TrainConfig:
        """A config from some of its fields (the rest keep their defaults); unknown names are refused."""
        unknown = sorted(set(settings) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"{origin}: unknown training setting(s) {', '.join(unknown)}; "
                             f"known: {', '.join(f.name for f in fields(cls))}")
        return cls(**settings)


def read_recipe(path: str | os.PathLike) -> tuple[str | None, dict]:
    """(topology name or None, training settings) of a recipe file: a JSON object of TrainConfig fields and,
    optionally, "topology"."""
    try:
        recipe = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a readable JSON recipe ({exc})") from None
    if not isinstance(recipe, dict):
        raise ValueError(f"{path}: a recipe is a JSON object of training settings")
    topology = recipe.pop("topology", None)
    TrainConfig.from_dict(recipe, str(path))  # checked here, so a bad recipe is named before any work
    return topology, recipe


# Settings a checkpoint must share with the run that resumes it (the others, e.g. epochs, may change).
RESUME_KEYS = tuple(f.name for f in fields(TrainConfig) if f.metadata["fixed"])
