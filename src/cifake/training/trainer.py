"""Train a model on uint8 images: Adam + binary cross-entropy on logits, early stopping, resumable.

Read top to bottom: hyperparameters, the epoch loop, checkpoints. Images stay in memory as one uint8
(N, 32, 32, 3) tensor; each batch is gathered, viewed as NCHW (its NHWC memory is already channels_last) and
converted to float there, so the loop does no per-sample Python work. On a GPU that tensor is copied to the
device once and batches are gathered there; loss and accuracy add up on the device, and the host waits for it
only when the progress bar is refreshed.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn import functional as F

from cifake.data.dataset import ImageSet
from cifake.data.degrade import random_degradations, random_shifts
from cifake.devices import mixed_precision, precision_name, resolve_device, supports_float64
from cifake.models.inference import predict_logits, to_model_input
from cifake.files import atomic_write
from cifake.progress import progress_bar
from cifake.training.config import RESUME_KEYS, TrainConfig
from cifake.training.memory import keep_freed_memory

CHECKPOINT = "checkpoint.safetensors"  # weights, optimizer state, best weights and history of the last epoch


@dataclass
class TrainResult:
    history: list[dict] = field(default_factory=list)  # one row per epoch
    best_epoch: int = 0
    best_val_loss: float = math.inf
    stopped_early: bool = False
    resumed_from_epoch: int = 0
    optimizer_kernel: str = ""  # "fused" (one kernel per step) or "default" (torch's foreach or per-tensor loop)
    targets: str = "labels"  # what the run trains towards: "labels", or the SHA-256 of the targets given to fit


def seed_everything(seed: int) -> None:
    """Seed torch and NumPy (the study sets all seeds to 1); call before building the model."""
    torch.manual_seed(seed)
    np.random.seed(seed)


def fit(
    model: nn.Module,
    train_set: ImageSet,
    val_set: ImageSet,
    config: TrainConfig,
    run_dir: str | os.PathLike | None = None,
    resume: bool = False,
    progress: bool = True,
    targets: np.ndarray | None = None,
) -> TrainResult:
    """Train `model` in place on `config.device` towards `targets` (0..1 per image; default: the labels); with a
    run_dir, checkpoint every epoch and, with `resume`, continue one (same device type). Leaves it on the device."""
    keep_freed_memory()
    device = resolve_device(config.device)
    aim = "labels" if targets is None else hashlib.sha256(np.asarray(targets, np.float32).tobytes()).hexdigest()
    images, targets, val_images = _on_device(train_set, val_set, device, targets)
    model.to(device, memory_format=torch.channels_last if config.channels_last else torch.preserve_format)
    averaged = _Ema(model, config.ema) if config.ema else None
    scored = averaged.model if averaged else model  # the weights that are validated, kept and saved
    step = _Step(model, config, device, averaged)
    folder = Path(run_dir) if run_dir else None
    result, best_state, since_best = _begin(folder if resume else None, model, step, config, device, averaged, aim)
    result.optimizer_kernel = "fused" if step.optimizer.defaults.get("fused") else "default"

    with progress_bar(progress, "loss", "acc") as bar:
        for epoch in range(len(result.history) + 1, config.epochs + 1):
            if result.stopped_early:
                break
            task = bar.add_task(f"Epoch {epoch}/{config.epochs}", total=len(images), loss="-", acc="-")
            started = time.perf_counter()
            train_loss, train_acc = _train_one_epoch(model, step, images, targets, config, epoch, bar, task)
            seconds = time.perf_counter() - started
            val_loss, val_acc = _validate(scored, val_images, val_set.labels, config)
            result.history.append(_epoch_row(epoch, train_loss, train_acc, val_loss, val_acc, len(images), seconds,
                                             time.perf_counter() - started))
            bar.update(task, loss=f"{train_loss:.4f} val {val_loss:.4f}", acc=f"{train_acc:.4f} val {val_acc:.4f}")
            if val_loss < result.best_val_loss:
                result.best_val_loss, result.best_epoch, since_best = val_loss, epoch, 0
                best_state = copy.deepcopy(scored.state_dict())
            else:
                since_best += 1
                result.stopped_early = since_best >= config.patience and epoch < config.epochs
            if folder:
                _save_checkpoint(folder, model, step.optimizer, best_state, result, since_best, config, device,
                                 averaged, step.scaler)
    model.load_state_dict(best_state)
    return result


def _begin(resumed: Path | None, model: nn.Module, step: _Step, config: TrainConfig, device: torch.device,
           averaged: _Ema | None, targets: str) -> tuple[TrainResult, dict, int]:
    """(record, best weights, epochs since the best) of a new run, or of the checkpoint in `resumed` if it has one."""
    if resumed and has_checkpoint(resumed):
        return _load_checkpoint(resumed, model, step.optimizer, config, device, averaged, step.scaler, targets)
    scored = averaged.model if averaged else model
    return TrainResult(targets=targets), copy.deepcopy(scored.state_dict()), 0


def _on_device(train_set: ImageSet, val_set: ImageSet, device: torch.device, targets: np.ndarray | None = None):
    """(train images, targets, validation images) where training reads them: on a GPU all of them go there once;
    on the CPU validation images stay as they are (a memmap is read batch by batch)."""
    images = torch.from_numpy(np.ascontiguousarray(train_set.images)).to(device)
    if targets is None:
        targets = train_set.labels
    elif len(targets) != len(images):
        raise ValueError(f"{len(targets)} targets for {len(images)} training images")
    targets = torch.from_numpy(np.asarray(targets, np.float32)).to(device)
    val_images = val_set.images if device.type == "cpu" else torch.from_numpy(
        np.ascontiguousarray(val_set.images)).to(device)
    return images, targets, val_images


def _epoch_row(epoch: int, train_loss: float, train_acc: float, val_loss: float, val_acc: float, images: int,
               seconds: float, wall_seconds: float) -> dict:
    return {"epoch": epoch, "train_loss": train_loss, "train_accuracy": train_acc, "val_loss": val_loss,
            "val_accuracy": val_acc, "seconds": round(seconds, 3), "images_per_second": round(images / seconds, 1),
            "wall_seconds": round(wall_seconds, 3),  # with validation
            "ended_at": round(time.time(), 3)}  # clock time: a search's wall time, measured across resumed runs


def _make_optimizer(model: nn.Module, config: TrainConfig, device: torch.device) -> torch.optim.Optimizer:
    params = model.parameters()
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.learning_rate, momentum=0.9, nesterov=True,
                               weight_decay=config.weight_decay)
    kind = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    # fused: one kernel per step, 95 ms against 574 ms for a 52M-weight dense head (benchmarks/bench_train.py);
    # on CUDA too one kernel launch instead of several per parameter. MPS keeps torch's default.
    fused = True if device.type in ("cpu", "cuda") else None
    return kind(params, lr=config.learning_rate, weight_decay=config.weight_decay, fused=fused)


def _learning_rate(config: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """The learning rate at a global step: constant, or one cycle (linear up, then linear down to zero)."""
    if config.schedule == "constant":
        return config.learning_rate
    warm = max(1.0, config.warmup_epochs * steps_per_epoch)
    if step < warm:
        return config.learning_rate * (step + 1) / warm
    total = config.epochs * steps_per_epoch
    return config.learning_rate * max(0.0, (total - step) / max(1.0, total - warm))


class _Ema:
    """An exponential moving average of the weights and batch-norm statistics, kept in a copy of the model."""

    def __init__(self, model: nn.Module, decay: float):
        self.model, self.decay, self.updates = copy.deepcopy(model).eval(), decay, 0
        self.model.requires_grad_(False)

    def update(self, model: nn.Module) -> None:
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))  # short memory at the start
        ours, theirs = self.model.state_dict(), model.state_dict()
        floats = [k for k, v in ours.items() if v.is_floating_point()]
        torch._foreach_lerp_([ours[k] for k in floats], [theirs[k].detach() for k in floats], 1 - decay)
        for key in ours.keys() - set(floats):  # integer counters are copied
            ours[key].copy_(theirs[key])


def epoch_order(count: int, seed: int, epoch: int) -> torch.Tensor:
    """The order of the training images in an epoch: a new shuffle every epoch, depending on (seed, epoch) only,
    so a resumed run sees the same batches as an unbroken one."""
    return torch.randperm(count, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))


def training_input(batch: torch.Tensor, config: TrainConfig, epoch: int, batch_number: int,
                   mirrored: torch.Tensor | None = None) -> torch.Tensor:
    """A uint8 NHWC batch as the model's float input, degraded, shifted and mirrored as the config asks, all seeded
    by (seed, epoch, batch), so every epoch draws afresh and a resumed run sees the same images as an unbroken one.
    `mirrored` is the batch's flip_choice, when the caller drew it already (on the device)."""
    if config.degrade > 0 or config.translate > 0:  # Pillow and NumPy work: on the host, whatever the device
        pixels = batch.cpu().numpy()
        if config.degrade > 0:
            pixels = random_degradations(pixels, config.degrade, np.random.default_rng([config.seed, epoch,
                                                                                         batch_number]))
        if config.translate > 0:  # its own stream, so adding shifts leaves the degradations' draws as they were
            pixels = random_shifts(pixels, config.translate, np.random.default_rng([config.seed, epoch,
                                                                                   batch_number, 1]))
        batch = torch.from_numpy(pixels).to(batch.device)
    x = to_model_input(batch, config.channels_last)
    if config.flip:  # mirror a seeded random half of the batch
        if mirrored is None:
            mirrored = flip_choice(config, epoch, batch_number, len(x)).to(x.device)
        x = torch.where(mirrored[:, None, None, None], x.flip(3), x)
    return x


def flip_choice(config: TrainConfig, epoch: int, batch_number: int, count: int) -> torch.Tensor:
    """Which images of a batch are mirrored: a seeded coin per image, the same on every device."""
    generator = torch.Generator().manual_seed(config.seed * 1_000_003 + epoch * 100_003 + batch_number)
    return torch.rand(count, generator=generator) < 0.5


class _Step:
    """One optimisation step on a batch: forward under the device's mixed precision, loss, backward, update."""

    def __init__(self, model: nn.Module, config: TrainConfig, device: torch.device, averaged: _Ema | None):
        self.model, self.averaged, self.device = model, averaged, device
        self.optimizer = _make_optimizer(model, config, device)
        self.precision = mixed_precision(device, config.bf16)
        # fp16 needs its gradients scaled against underflow; bf16 and fp32 do not (a disabled scaler is a no-op)
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.precision is torch.float16)
        # compiled or not, it shares the model's weights; only the training steps run it
        self.forward = model if config.compile == "off" else torch.compile(model, mode=config.compile)

    def __call__(self, x: torch.Tensor, y: torch.Tensor, config: TrainConfig) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.autocast(self.device.type, dtype=self.precision or torch.bfloat16, enabled=bool(self.precision)):
            logits = self.forward(x)
        smoothed = y * (1 - config.label_smoothing) + 0.5 * config.label_smoothing if config.label_smoothing else y
        loss = F.binary_cross_entropy_with_logits(logits.float(), smoothed)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.averaged:
            self.averaged.update(self.model)
        return loss.detach(), logits.detach()


def _train_one_epoch(model, step: _Step, images, targets, config, epoch, bar, task) -> tuple[float, float]:
    model.train()
    device = images.device
    steps_per_epoch = math.ceil(len(images) / config.batch_size)
    order = epoch_order(len(images), config.seed, epoch).to(device)
    flips = None
    if config.flip and device.type != "cpu":  # drawn for the whole epoch, so no batch waits on a host copy
        flips = torch.cat([flip_choice(config, epoch, b, min(config.batch_size, len(images) - b * config.batch_size))
                           for b in range(steps_per_epoch)]).to(device)
    total_dtype = torch.float64 if supports_float64(device) else torch.float32
    loss_sum = torch.zeros((), dtype=total_dtype, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    for batch_number, start in enumerate(range(0, len(images), config.batch_size)):
        index = order[start : start + config.batch_size]
        mirrored = flips[start : start + len(index)] if flips is not None else None
        x = training_input(images[index], config, epoch, batch_number, mirrored)
        y = targets[index]
        if config.schedule != "constant":
            rate = _learning_rate(config, (epoch - 1) * steps_per_epoch + batch_number, steps_per_epoch)
            for group in step.optimizer.param_groups:
                group["lr"] = rate
        loss, logits = step(x, y, config)
        loss_sum += loss * len(index)
        correct += ((logits > 0) == (y > 0.5)).sum()
        if batch_number % 50 == 49:  # refreshing the display every batch would cost more than tiny batches
            seen = start + len(index)
            bar.update(task, completed=seen, loss=f"{loss_sum.item() / seen:.4f}", acc=f"{correct.item() / seen:.4f}")
    bar.update(task, completed=len(images))
    return loss_sum.item() / len(images), correct.item() / len(images)


def _validate(model, images, labels: np.ndarray, config: TrainConfig) -> tuple[float, float]:
    logits = torch.from_numpy(predict_logits(model, images, config.eval_batch_size))
    labels = torch.from_numpy(np.asarray(labels, np.float32))
    loss = F.binary_cross_entropy_with_logits(logits, labels).item()
    return loss, ((logits > 0) == (labels > 0.5)).float().mean().item()


# --- checkpoints: one safetensors file, tensors plus a JSON state in its metadata (no pickle) ---------------
# One file written atomically: a kill at any moment leaves either the previous checkpoint or the new one.

def _save_checkpoint(folder: Path, model, optimizer, best_state, result: TrainResult, since_best, config,
                     device: torch.device, averaged: _Ema | None = None, scaler=None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    if averaged:
        tensors |= {f"ema.{k}": v for k, v in averaged.model.state_dict().items()}
    tensors |= {f"best.{k}": v for k, v in best_state.items()}
    optim = optimizer.state_dict()
    for index, state in optim["state"].items():
        tensors |= {f"optim.{index}.{k}": torch.as_tensor(v).reshape(-1) if k == "step" else v
                    for k, v in state.items()}
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}  # portable: read anywhere
    state = {
        "result": asdict(result), "since_best": since_best, "config": asdict(config),
        "ema_updates": averaged.updates if averaged else 0,
        "param_groups": optim["param_groups"],
        **_arithmetic(device, config),
        "grad_scaler": scaler.state_dict() if scaler is not None and scaler.is_enabled() else None,
    }
    metadata = {"cifake_checkpoint": json.dumps(state)}
    atomic_write(folder / CHECKPOINT, lambda tmp: save_file(tensors, tmp, metadata=metadata))


def _load_checkpoint(folder: Path, model, optimizer, config: TrainConfig, device: torch.device,
                     averaged: _Ema | None = None, scaler=None, targets: str = "labels"):
    path = folder / CHECKPOINT
    state = _checkpoint_state(path)
    saved = TrainConfig().to_dict() | state["config"]  # settings added since the checkpoint keep their defaults
    for key in RESUME_KEYS:
        if saved[key] != getattr(config, key):
            raise ValueError(f"{path}: cannot resume with {key}={getattr(config, key)}; the run used {saved[key]}")
    _check_same_arithmetic(path, state, _arithmetic(device, config))
    result = TrainResult(**state["result"])
    if "targets" in state["result"]:  # checkpoints older than this record lack it and are let through
        _check_same_targets(path, result.targets, targets)
    result.targets = targets
    result.resumed_from_epoch = len(result.history)
    # Early stopping is decided again under this run's epochs and patience, so a finished run can be extended.
    result.stopped_early = state["since_best"] >= config.patience and len(result.history) < config.epochs
    tensors = load_file(path)
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    best_state = {k[5:]: v for k, v in tensors.items() if k.startswith("best.")}
    if averaged:
        averaged.model.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema.")})
        averaged.updates = state["ema_updates"]
    optim_state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, index, name = key.split(".", 2)
            optim_state.setdefault(int(index), {})[name] = value.reshape(()) if name == "step" else value
    optimizer.load_state_dict({"state": optim_state, "param_groups": state["param_groups"]})
    _match_parameter_layout(optimizer)
    if scaler is not None and state.get("grad_scaler"):
        scaler.load_state_dict(state["grad_scaler"])
    return result, best_state, state["since_best"]


def _arithmetic(device: torch.device, config: TrainConfig) -> dict:
    """What decides a run's rounding besides its settings, recorded in its checkpoint: the kind of device (other
    kernels), on a CPU the thread count (cifake.devices.cpu_threads) and the precision (bf16 only where the CPU
    has bf16 kernels, cifake.devices.cpu_runs_bf16)."""
    return {"device": device.type, "threads": torch.get_num_threads() if device.type == "cpu" else None,
            "precision": precision_name(mixed_precision(device, config.bf16))}


def _check_same_arithmetic(path: Path, made: dict, now: dict) -> None:
    """Refuse to continue a run whose continuation would not be the same run; checkpoints older than a record
    lack it (threads, precision) and are let through."""
    made_on = made.get("device", "cpu")
    if made_on != now["device"]:
        raise ValueError(f"{path}: this run was trained on {made_on} and cannot continue exactly on {now['device']}; "
                         f"resume it with --device {made_on}, or start a new run in another --out")
    threads = made.get("threads")
    if now["device"] == "cpu" and threads and threads != now["threads"]:
        raise ValueError(f"{path}: this run was trained on {threads} CPU thread(s) and cannot continue exactly on "
                         f"{now['threads']}; resume it with --threads {threads} (a search: --threads-per-trial "
                         f"{threads}), or start a new run in another folder")
    precision = made.get("precision")
    if precision and precision != now["precision"]:
        raise ValueError(f"{path}: this run was trained in {precision} and would continue in {now['precision']} "
                         f"here, which is not the same arithmetic; resume it on a machine where cifake trains in "
                         f"{precision} (docs/devices.md), or start a new run in another folder")


def _check_same_targets(path: Path, made: str, now: str) -> None:
    """Refuse to continue a run towards other targets: the same teacher folder, retrained or replaced between a
    run and its resume, gives other targets under the same settings."""
    if made != now:
        trained, given = ("the labels" if aim == "labels" else f"targets {aim[:12]}..." for aim in (made, now))
        raise ValueError(f"{path}: this run trained towards {trained} and would continue towards {given}; resume it "
                         "with the teacher it began with (its record names the teacher's weights), or start a new "
                         "run in another --out")


def _match_parameter_layout(optimizer: torch.optim.Optimizer) -> None:
    """Give moment buffers their parameter's strides again: saved contiguous, but the fused Adam kernel walks
    parameter, gradient and moments as flat memory, so a channels_last weight needs channels_last moments."""
    for param, state in optimizer.state.items():
        for key, value in state.items():
            if isinstance(value, torch.Tensor) and value.shape == param.shape and value.stride() != param.stride():
                state[key] = torch.empty_like(param).copy_(value)


def has_checkpoint(run_dir: str | os.PathLike) -> bool:
    return (Path(run_dir) / CHECKPOINT).is_file()


def checkpoint_progress(run_dir: str | os.PathLike) -> TrainResult | None:
    """The history of a run's last checkpoint (its JSON header only, no tensors read); None without one."""
    path = Path(run_dir) / CHECKPOINT
    return TrainResult(**_checkpoint_state(path)["result"]) if path.is_file() else None


def checkpoint_precision(run_dir: str | os.PathLike) -> str | None:
    """The precision a run's last checkpoint trained in ("fp32", "bf16 autocast", ...); None without a checkpoint
    or in one older than the record."""
    path = Path(run_dir) / CHECKPOINT
    return _checkpoint_state(path).get("precision") if path.is_file() else None


def _checkpoint_state(path: Path) -> dict:
    """The JSON state a checkpoint keeps in its safetensors header: history, early-stopping count, settings."""
    with safe_open(path, "pt") as file:
        return json.loads(file.metadata()["cifake_checkpoint"])
