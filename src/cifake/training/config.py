"""Every setting of a training run, in one plain dataclass (no torch here: the CLI builds its options from it).

Each field carries its --help text and the values it may take, so the CLI's training options, the search's
per-trial settings and the bundled recipe are all this one declaration.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from cifake.choices import COMPILE_MODES, DEVICE_HELP, DEVICE_PATTERN, OPTIMIZERS, SCHEDULES
from cifake.data.preprocess import MAX_SIZE, MIN_SIZE, MODES, Preprocess
from cifake.settings import Allowed, check_settings, setting


POSITIVE_INT = Allowed(low=1)
SHARE = Allowed(low=0, high=1)
SHARE_BELOW_ONE = Allowed(low=0, high=1, high_open=True)
NON_NEGATIVE = Allowed(low=0)


@dataclass(frozen=True)
class TrainConfig:
    """Every setting of a training run: the CLI's training options, the search's per-trial settings and the
    bundled recipe are all instances of this, and every run records it."""

    image_size: int = setting(32, "Input size N in pixels (the model's: every reader takes it from the saved model).",
                               Allowed(low=MIN_SIZE, high=MAX_SIZE))
    preprocess: str = setting("resize", "resize: the whole image to N x N, bilinear (the study); crop: N x N crops of "
                                        "native pixels (random while training, central for validation and test, "
                                        "five averaged when predicting).", Allowed(choices=MODES))
    epochs: int = setting(5, "Maximum epochs (early stopping on validation loss may end sooner).", POSITIVE_INT,
                           resumable=False)
    batch_size: int = setting(64, "Batch size.", POSITIVE_INT)  # faster than Keras' default 32 (bench_train.py)
    learning_rate: float = setting(1e-3, "Learning rate.", Allowed(low=0, low_open=True), flag="--lr")
    patience: int = setting(2, "Early-stopping patience in epochs (validation loss); best weights are restored.",
                             POSITIVE_INT, resumable=False)
    seed: int = setting(1, "Seed for everything: weights, shuffles, split (the study used 1).")
    bf16: bool = setting(True, "Mixed precision while training: bf16 autocast (CPUs with AVX-512 or AMX, recent "
                                "GPUs), fp16 with a gradient scaler on GPUs without bf16; fp32 on MPS and on CPUs "
                                "without bf16 kernels, where bf16 is 11x slower.")
    channels_last: bool = setting(True, "NHWC memory format, which oneDNN convolves faster on CPU.")
    # small batches keep activations in cache: 64 ran 2-3x faster than 1024 (benchmarks/bench_inference.py)
    eval_batch_size: int = setting(64, "Batch size for validation and test scoring.", POSITIVE_INT, resumable=False)
    degrade: float = setting(0.0, "Robust training: share of training images given a random JPEG / rescale / "
                                   "blur / noise degradation.", SHARE)
    translate: int = setting(0, "Move each training image by a random 0..N pixels each way (reflected border).",
                              Allowed(low=0, high=8))
    # --- the recipe beyond the study (defaults keep the study's plain Adam) ---
    optimizer: str = setting("adam", "adam (the study), adamw, or sgd (Nesterov momentum 0.9).",
                              Allowed(choices=OPTIMIZERS))
    weight_decay: float = setting(0.0, "Weight decay.", NON_NEGATIVE)
    schedule: str = setting("constant", "constant; onecycle (linear warm-up, then linear decay to 0); or cosine "
                                        "(linear warm-up, then a half cosine down to 0).", Allowed(choices=SCHEDULES))
    warmup_epochs: float = setting(0.0, "Warm-up length of the onecycle and cosine schedules, in epochs.",
                                    NON_NEGATIVE)
    label_smoothing: float = setting(0.0, "Pull targets towards 0.5 by this much.", SHARE_BELOW_ONE)
    ema: float = setting(0.0, "Decay of a moving average of the weights, validated and saved (e.g. 0.999); 0: off.",
                          SHARE_BELOW_ONE)
    flip: bool = setting(False, "Mirror a random half of each batch (a photo and its mirror are equally real).")
    test_time_flips: bool = setting(False, "Save a model that scores the mean logit of each image and its mirror "
                                           "(twice the cost): a transformer's choice; the residual family has "
                                           "them always. Training is the same either way.", resumable=False)
    compile: str = setting("off", "torch.compile the training forward pass: off, default, or reduce-overhead (CUDA "
                                   "graphs); for tiny CNNs on a GPU, where kernel launches dominate "
                                   "(benchmarks/gpu_check.py measures it).", Allowed(choices=COMPILE_MODES))
    # --- distillation: the targets mix each label with a teacher's calibrated probability (cifake.training.distill)
    teacher: str = setting("", "Distillation: a model folder, or 'bundled', whose calibrated P(REAL) of each clean "
                                "training image is mixed into that image's target; '' for none.")
    distill: float = setting(0.0, "Distillation: the teacher's share of each target (0: the labels alone, 1: the "
                                   "teacher alone).", SHARE)
    # Not resume keys: the checkpoint records the device and the CPU thread count it was made with, and a resume
    # with others is refused there (0 threads means "all cores", which differ from machine to machine).
    threads: int = setting(0, "CPU threads for torch (0: all cores). The count is part of the arithmetic: a run "
                               "gives the same weights again, and resumes, only with the same count.", NON_NEGATIVE,
                            resumable=False)
    device: str = setting("auto", DEVICE_HELP, Allowed(pattern=DEVICE_PATTERN,
                                                        described="one of auto, cpu, cuda, cuda:N, mps"),
                           resumable=False)

    def __post_init__(self) -> None:
        check_settings(self, "training setting")
        if bool(self.teacher) != (self.distill > 0):
            raise ValueError(f"training settings teacher and distill go together: a teacher needs a distill share "
                             f"above 0, and a share needs a teacher (teacher {self.teacher!r}, distill {self.distill})")

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def input(self) -> Preprocess:
        """The model's input: size and preprocessing."""
        return Preprocess(self.image_size, self.preprocess)

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
