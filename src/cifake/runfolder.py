"""A run folder: the one place that names a run's files and reads and writes them.

    RUN/model.safetensors   the weights (safetensors: no pickle)
    RUN/config.json         everything needed to use the model: topology, input, calibration, the run's record
    RUN/checkpoint.safetensors  the last epoch's training state, to resume (cifake.training.checkpoint)
    RUN/run.json            the run's record with its metrics; written last, so its presence means "finished"
    RUN/history.csv         one row per epoch
    RUN/model.onnx          the exported graph (cifake export)
    RUN/eval-SPLIT[-no-leaked].json  an evaluation (cifake evaluate), its plots beside it
    RUN/calibration.json    the calibration report (cifake calibrate)
    RUN/domain.safetensors  the domain check's training features (cifake calibrate; its settings in config.json)

Reading and writing are atomic (a temporary file, then a rename), so a killed job leaves the old file or the new
one. Importing this module loads no torch: safetensors' torch half is imported only by the methods that move
weights.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

from cifake.files import atomic_write, write_json


class RunFolder:
    """A run's folder (it need not exist yet): `RunFolder(path).weights`, `.read_config()`, ..."""

    WEIGHTS = "model.safetensors"
    CONFIG = "config.json"
    CHECKPOINT = "checkpoint.safetensors"
    RECORD = "run.json"
    HISTORY = "history.csv"
    ONNX = "model.onnx"
    CALIBRATION = "calibration.json"
    DOMAIN = "domain.safetensors"

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    # --- paths ---
    @property
    def weights(self) -> Path:
        return self.path / self.WEIGHTS

    @property
    def config(self) -> Path:
        return self.path / self.CONFIG

    @property
    def checkpoint(self) -> Path:
        return self.path / self.CHECKPOINT

    @property
    def record(self) -> Path:
        return self.path / self.RECORD

    @property
    def onnx(self) -> Path:
        return self.path / self.ONNX

    @property
    def calibration(self) -> Path:
        return self.path / self.CALIBRATION

    @property
    def domain(self) -> Path:
        return self.path / self.DOMAIN

    @staticmethod
    def evaluation_stem(split: str, without_leaked: bool = False) -> str:
        """The name of an evaluation's files (stem.json and stem_*.png), in this folder or another --out."""
        return f"eval-{split}{'-no-leaked' if without_leaked else ''}"

    def evaluation(self, split: str, without_leaked: bool = False) -> Path:
        return self.path / f"{self.evaluation_stem(split, without_leaked)}.json"

    # --- what the folder holds ---
    def has_checkpoint(self) -> bool:
        return self.checkpoint.is_file()

    def is_finished(self) -> bool:
        return self.record.is_file()

    def missing_model_file(self) -> Path | None:
        """The first of the model's two files that is not there (None when both are)."""
        return next((path for path in (self.config, self.weights) if not path.is_file()), None)

    # --- JSON parts ---
    def read_config(self) -> dict:
        return _read_json(self.config)

    def write_config(self, config: dict) -> Path:
        self.path.mkdir(parents=True, exist_ok=True)
        return write_json(self.config, config)

    def read_record(self) -> dict:
        """The record of a finished run (its run.json)."""
        if not self.record.is_file():
            raise FileNotFoundError(f"{self.record}: missing; the run has not finished (or this is not a run folder)")
        return _read_json(self.record)

    def write_record(self, record: dict) -> Path:
        return write_json(self.record, record)

    def read_evaluation(self, split: str, without_leaked: bool = False) -> dict:
        return _read_json(self.evaluation(split, without_leaked))

    def write_evaluation(self, metrics: dict, split: str, without_leaked: bool = False) -> Path:
        return write_json(self.evaluation(split, without_leaked), metrics)

    def write_calibration(self, report: dict) -> Path:
        return write_json(self.calibration, report)

    def write_history(self, history: list[dict]) -> Path:
        def write(tmp: str) -> None:
            with open(tmp, "w", newline="") as file:
                writer = csv.DictWriter(file, fieldnames=list(history[0]) if history else ["epoch"])
                writer.writeheader()
                writer.writerows(history)

        path = self.path / self.HISTORY
        atomic_write(path, write)
        return path

    def read_history(self) -> list[dict]:
        with open(self.path / self.HISTORY, newline="") as file:
            return list(csv.DictReader(file))

    # --- tensors: safetensors files with a JSON header ---
    def write_weights(self, tensors: dict, metadata: dict[str, str]) -> Path:
        return _write_tensors(self.weights, tensors, metadata)

    def read_weights(self) -> dict:
        from safetensors.torch import load_file  # loads torch: only where weights are read

        return load_file(self.weights, device="cpu")

    def write_checkpoint(self, tensors: dict, metadata: dict[str, str]) -> Path:
        self.path.mkdir(parents=True, exist_ok=True)
        return _write_tensors(self.checkpoint, tensors, metadata)

    def read_checkpoint(self) -> dict:
        from safetensors.torch import load_file

        return load_file(self.checkpoint)

    def write_domain(self, arrays: dict) -> Path:
        from safetensors.numpy import save_file  # NumPy arrays: the domain check runs without torch

        atomic_write(self.domain, lambda tmp: save_file(arrays, tmp))
        return self.domain

    def read_domain(self) -> dict:
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        try:
            return load_file(self.domain)
        except (OSError, SafetensorError) as exc:
            raise ValueError(f"{self.domain}: unreadable ({exc})") from None

    def checkpoint_header(self) -> dict[str, str]:
        """The checkpoint's metadata (its JSON header) without reading a tensor."""
        from safetensors import safe_open

        with safe_open(self.checkpoint, "np") as file:  # "np": the header alone needs no torch
            return file.metadata()


def _write_tensors(path: Path, tensors: dict, metadata: dict[str, str]) -> Path:
    from safetensors.torch import save_file

    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))
    return path


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None
