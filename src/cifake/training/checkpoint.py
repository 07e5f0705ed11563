"""A run's training state, saved and restored as one unit: one safetensors file (RUN/checkpoint.safetensors),
tensors plus a JSON state in its header (no pickle), written atomically after every epoch, so a kill at any moment
leaves either the previous epoch's state or the new one.

A resume continues the same run or refuses: the settings that shape the arithmetic (RESUME_KEYS), the device kind,
CPU thread count and precision, and the targets trained towards must be those the run began with.
"""

from __future__ import annotations

import copy
import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from cifake.devices import mixed_precision, precision_name
from cifake.runfolder import RunFolder
from cifake.training.config import RESUME_KEYS, TrainConfig
from cifake.training.ema import Ema

HEADER = "cifake_checkpoint"  # the metadata key of the JSON state


@dataclass
class TrainResult:
    history: list[dict] = field(default_factory=list)  # one row per epoch
    best_epoch: int = 0
    best_val_loss: float = math.inf
    stopped_early: bool = False
    resumed_from_epoch: int = 0
    optimizer_kernel: str = ""  # "fused" (one kernel per step) or "default" (torch's foreach or per-tensor loop)
    targets: str = "labels"  # what the run trains towards: "labels", or the SHA-256 of the targets given to fit


@dataclass
class TrainState:
    """Everything a run needs to continue exactly where it stopped."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    averaged: Ema | None
    result: TrainResult
    best_state: dict = field(default_factory=dict)  # the weights of the best epoch so far
    since_best: int = 0  # epochs since the best one (early stopping)

    @property
    def scored(self) -> nn.Module:
        """The weights that are validated, kept and saved: the moving average when there is one."""
        return self.averaged.model if self.averaged else self.model

    def keep_best(self) -> None:
        self.best_state = copy.deepcopy(self.scored.state_dict())

    def save(self, folder: RunFolder, config: TrainConfig, device: torch.device) -> None:
        tensors = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        if self.averaged:
            tensors |= {f"ema.{k}": v for k, v in self.averaged.model.state_dict().items()}
        tensors |= {f"best.{k}": v for k, v in self.best_state.items()}
        optim = self.optimizer.state_dict()
        for index, state in optim["state"].items():
            tensors |= {f"optim.{index}.{k}": torch.as_tensor(v).reshape(-1) if k == "step" else v
                        for k, v in state.items()}
        tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}  # portable: read anywhere
        state = {
            "result": asdict(self.result), "since_best": self.since_best, "config": asdict(config),
            "ema_updates": self.averaged.updates if self.averaged else 0,
            "param_groups": optim["param_groups"],
            **arithmetic(device, config),
            "grad_scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None,
        }
        folder.write_checkpoint(tensors, {HEADER: json.dumps(state)})

    def restore(self, folder: RunFolder, config: TrainConfig, device: torch.device, targets: str) -> None:
        """Load the folder's checkpoint into this state, after checking that it continues the same run."""
        path = folder.checkpoint
        state = _header(folder)
        saved = TrainConfig().to_dict() | state["config"]  # settings added since the checkpoint keep their defaults
        for key in RESUME_KEYS:
            if saved[key] != getattr(config, key):
                raise ValueError(f"{path}: cannot resume with {key}={getattr(config, key)}; the run used {saved[key]}")
        _check_same_arithmetic(path, state, arithmetic(device, config))
        result = TrainResult(**state["result"])
        if "targets" in state["result"]:  # checkpoints older than this record lack it and are let through
            _check_same_targets(path, result.targets, targets)
        result.targets = targets
        result.resumed_from_epoch = len(result.history)
        # Early stopping is decided again under this run's epochs and patience, so a finished run can be extended.
        result.stopped_early = state["since_best"] >= config.patience and len(result.history) < config.epochs
        self.result, self.since_best = result, state["since_best"]
        tensors = folder.read_checkpoint()
        self.model.load_state_dict(_part(tensors, "model."))
        self.best_state = _part(tensors, "best.")
        if self.averaged:
            self.averaged.model.load_state_dict(_part(tensors, "ema."))
            self.averaged.updates = state["ema_updates"]
        optim_state: dict[int, dict] = {}
        for key, value in tensors.items():
            if key.startswith("optim."):
                _, index, name = key.split(".", 2)
                optim_state.setdefault(int(index), {})[name] = value.reshape(()) if name == "step" else value
        self.optimizer.load_state_dict({"state": optim_state, "param_groups": state["param_groups"]})
        _match_parameter_layout(self.optimizer)
        if state.get("grad_scaler"):
            self.scaler.load_state_dict(state["grad_scaler"])


def _part(tensors: dict, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


def arithmetic(device: torch.device, config: TrainConfig) -> dict:
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


def checkpoint_progress(run_dir: str | os.PathLike) -> TrainResult | None:
    """The history of a run's last checkpoint (its JSON header only, no tensors read); None without one."""
    folder = RunFolder(run_dir)
    return TrainResult(**_header(folder)["result"]) if folder.has_checkpoint() else None


def checkpoint_precision(run_dir: str | os.PathLike) -> str | None:
    """The precision a run's last checkpoint trained in ("fp32", "bf16 autocast", ...); None without a checkpoint
    or in one older than the record."""
    folder = RunFolder(run_dir)
    return _header(folder).get("precision") if folder.has_checkpoint() else None


def _header(folder: RunFolder) -> dict:
    """The JSON state a checkpoint keeps in its safetensors header: history, early-stopping count, settings."""
    return json.loads(folder.checkpoint_header()[HEADER])
