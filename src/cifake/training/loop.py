"""Train a model on uint8 images: the loop. Adam + binary cross-entropy on logits, early stopping, resumable.

Read top to bottom: `fit` (epochs), the step, one epoch, validation, the optimizer and its schedule. What each
step sees is cifake.training.augment's; what is saved after each epoch is cifake.training.checkpoint's TrainState.
Images that fit in RESIDENT_BYTES stay in memory as one uint8 (N, S, S, 3) tensor; each batch is gathered, viewed
as NCHW (its NHWC memory is already channels_last) and converted to float there, so the loop does no per-sample
Python work. On a GPU that tensor is copied to the device once and batches are gathered there; loss and accuracy
add up on the device, and the host waits for it only when the progress bar is refreshed. A crop model's windows,
and a dataset too large to hold, are read batch by batch on the host instead (cifake.training.augment.HostBatches),
so memory stays bounded whatever the dataset's size.
"""

from __future__ import annotations

import hashlib
import math
import os
import time

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from cifake.data.dataset import ImageSet
from cifake.devices import mixed_precision, resolve_device, supports_float64
from cifake.models.inference import predict_logits
from cifake.progress import progress_bar
from cifake.runfolder import RunFolder
from cifake.training.augment import HostBatches, epoch_flips, epoch_order, training_input
from cifake.training.checkpoint import TrainResult, TrainState
from cifake.training.config import TrainConfig
from cifake.training.ema import Ema
from cifake.training.memory import keep_freed_memory


RESIDENT_BYTES = 1 << 30  # training pixels up to 1 GiB are held in RAM; a larger set is read from the cache


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
    images, targets, val_images = _on_device(train_set, val_set, device, config, targets)
    model.to(device, memory_format=torch.channels_last if config.channels_last else torch.preserve_format)
    step = Step(model, config, device, Ema(model, config.ema) if config.ema else None)
    state = TrainState(model, step.optimizer, step.scaler, step.averaged, TrainResult(targets=aim))
    folder = RunFolder(run_dir) if run_dir else None
    if resume and folder and folder.has_checkpoint():
        state.restore(folder, config, device, aim)
    else:
        state.keep_best()
    result = state.result
    result.optimizer_kernel = "fused" if step.optimizer.defaults.get("fused") else "default"

    with progress_bar(progress, "loss", "acc") as bar:
        for epoch in range(len(result.history) + 1, config.epochs + 1):
            if result.stopped_early:
                break
            task = bar.add_task(f"Epoch {epoch}/{config.epochs}", total=len(images), loss="-", acc="-")
            started = time.perf_counter()
            train_loss, train_acc = _train_one_epoch(step, images, targets, config, epoch, bar, task)
            seconds = time.perf_counter() - started
            val_loss, val_acc = _validate(state.scored, val_images, val_set.labels, config)
            result.history.append(_epoch_row(epoch, train_loss, train_acc, val_loss, val_acc, len(images), seconds,
                                             time.perf_counter() - started))
            bar.update(task, loss=f"{train_loss:.4f} val {val_loss:.4f}", acc=f"{train_acc:.4f} val {val_acc:.4f}")
            if val_loss < result.best_val_loss:
                result.best_val_loss, result.best_epoch, state.since_best = val_loss, epoch, 0
                state.keep_best()
            else:
                state.since_best += 1
                result.stopped_early = state.since_best >= config.patience and epoch < config.epochs
            if folder:
                state.save(folder, config, device)
    model.load_state_dict(state.best_state)
    return result


def _on_device(train_set: ImageSet, val_set: ImageSet, device: torch.device, config: TrainConfig,
               targets: np.ndarray | None = None):
    """(train images, targets, validation images) where training reads them: images held in RAM go to a GPU once,
    a crop model's windows and sets on disk are read batch by batch (HostBatches); on the CPU, and for large sets,
    validation images stay as they are (read batch by batch)."""
    stored = train_set.images
    if config.preprocess == "crop" and not getattr(stored, "crops", False):
        raise ValueError("a crop model trains on random crops of each image's stored window: pass the training "
                         "images as loaded for it (load_dataset with the model's Preprocess; .resident() keeps "
                         "the windows, .in_memory() keeps only the central crops)")
    if config.preprocess == "crop" or getattr(stored, "on_disk", False):
        images = HostBatches(stored, config, device)
    else:
        images = torch.from_numpy(np.ascontiguousarray(stored)).to(device)
    if targets is None:
        targets = train_set.labels
    elif len(targets) != len(images):
        raise ValueError(f"{len(targets)} targets for {len(images)} training images")
    targets = torch.from_numpy(np.asarray(targets, np.float32)).to(device)
    small = getattr(val_set.images, "stored_bytes", 0) <= RESIDENT_BYTES
    val_images = val_set.images if device.type == "cpu" or not small else torch.from_numpy(
        np.ascontiguousarray(val_set.images)).to(device)
    return images, targets, val_images


def _epoch_row(epoch: int, train_loss: float, train_acc: float, val_loss: float, val_acc: float, images: int,
               seconds: float, wall_seconds: float) -> dict:
    return {"epoch": epoch, "train_loss": train_loss, "train_accuracy": train_acc, "val_loss": val_loss,
            "val_accuracy": val_acc, "seconds": round(seconds, 3), "images_per_second": round(images / seconds, 1),
            "wall_seconds": round(wall_seconds, 3),  # with validation
            "ended_at": round(time.time(), 3)}  # clock time: a search's wall time, measured across resumed runs


class Step:
    """One optimisation step on a batch: forward under the device's mixed precision, loss, backward, update."""

    def __init__(self, model: nn.Module, config: TrainConfig, device: torch.device, averaged: Ema | None = None):
        self.model, self.averaged, self.device = model, averaged, device
        self.optimizer = make_optimizer(model, config, device)
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


def _train_one_epoch(step: Step, images, targets, config, epoch, bar, task) -> tuple[float, float]:
    step.model.train()
    device = images.device
    steps_per_epoch = math.ceil(len(images) / config.batch_size)
    order = epoch_order(len(images), config.seed, epoch).to(device)
    flips = epoch_flips(config, epoch, len(images), device)
    total_dtype = torch.float64 if supports_float64(device) else torch.float32
    loss_sum = torch.zeros((), dtype=total_dtype, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    for batch_number, start in enumerate(range(0, len(images), config.batch_size)):
        index = order[start : start + config.batch_size]
        mirrored = flips[start : start + len(index)] if flips is not None else None
        pixels = images.batch(index, epoch, batch_number) if isinstance(images, HostBatches) else images[index]
        x = training_input(pixels, config, epoch, batch_number, mirrored)
        y = targets[index]
        if config.schedule != "constant":
            rate = learning_rate(config, (epoch - 1) * steps_per_epoch + batch_number, steps_per_epoch)
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


def make_optimizer(model: nn.Module, config: TrainConfig, device: torch.device) -> torch.optim.Optimizer:
    params = _decay_groups(model, config.weight_decay)
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.learning_rate, momentum=0.9, nesterov=True,
                               weight_decay=config.weight_decay)
    kind = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    # fused: one kernel per step, 95 ms against 574 ms for a 52M-weight dense head (benchmarks/bench_train.py);
    # on CUDA too one kernel launch instead of several per parameter. MPS keeps torch's default.
    fused = True if device.type in ("cpu", "cuda") else None
    return kind(params, lr=config.learning_rate, weight_decay=config.weight_decay, fused=fused)


def _decay_groups(model: nn.Module, weight_decay: float):
    """The parameters, in two groups when the model names some to leave undecayed (`no_weight_decay`, timm's
    convention: a transformer's position embedding), with its biases and norms: decaying those only pulls them to
    zero. Other models keep one group, so their runs train the weights they always did."""
    if not weight_decay or not hasattr(model, "no_weight_decay"):
        return model.parameters()
    kept = model.no_weight_decay()
    named = list(model.named_parameters())
    undecayed = [p for name, p in named if p.ndim <= 1 or name in kept]
    decayed = [p for name, p in named if not (p.ndim <= 1 or name in kept)]
    return [{"params": decayed}, {"params": undecayed, "weight_decay": 0.0}]


def learning_rate(config: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """The learning rate at a global step: constant, or a linear warm-up followed by a decay to zero, linear (one
    cycle) or a half cosine.

    A function of the step, not torch's LambdaLR: LambdaLR multiplies the base rate by a factor, which rounds the
    warm-up's rates differently in the last bit (115 of the bundled recipe's 352 warm-up steps), so it would train
    other weights; OneCycleLR's cycle starts and ends elsewhere. Nor has it a state a checkpoint must keep."""
    if config.schedule == "constant":
        return config.learning_rate
    warm = max(1.0, config.warmup_epochs * steps_per_epoch)
    if step < warm:
        return config.learning_rate * (step + 1) / warm
    total = config.epochs * steps_per_epoch
    remaining = max(0.0, (total - step) / max(1.0, total - warm))  # 1 at the warm-up's end, 0 after the last step
    if config.schedule == "cosine":
        return config.learning_rate * 0.5 * (1 - math.cos(math.pi * remaining))
    return config.learning_rate * remaining
