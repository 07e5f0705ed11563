"""Save and load models as safetensors weights plus a JSON config: no pickle, safe for untrusted files."""

from __future__ import annotations

import dataclasses
import os
from importlib import resources
from pathlib import Path

import torch
from torch import nn

from cifake.data.preprocess import Preprocess
from cifake.devices import resolve_device
from cifake.models.ensemble import EnsembleCNN, EnsembleTopology
from cifake.models.registry import count_parameters, create_model, topology_from_dict
from cifake.runfolder import RunFolder

FORMAT = "cifake-model"
FORMAT_VERSION = 1
LABEL_CONVENTION = {
    "labels": {"1": "REAL", "0": "FAKE"},
    "positive_class": "REAL",
    "output": "one logit; sigmoid(logit) = P(REAL), P(FAKE) = 1 - P(REAL)",
}


def bundled_model_dir() -> Path:
    """The folder of the model shipped inside the package (safetensors + config + model card)."""
    return Path(str(resources.files("cifake.models") / "bundled"))


def model_config(model: nn.Module, training: dict | None = None) -> dict:
    preprocess = getattr(model, "preprocess", Preprocess())
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "topology": model.topology.to_dict(),
        "input": {
            "size": preprocess.size,
            "preprocess": preprocess.mode,
            "channels": "RGB",
            "layout": "NCHW float, pixel values 0..255",
            "mean": float(model.mean.flatten()[0]),
            "std": float(model.std.flatten()[0]),
            "resize": "bilinear",
        },
        **LABEL_CONVENTION,
        "training": training or {},
    }


def save_model(model: nn.Module, run_dir: str | os.PathLike, training: dict | None = None) -> Path:
    """Write model.safetensors and config.json into run_dir (atomically: temporary files, then rename)."""
    folder = RunFolder(run_dir)
    folder.path.mkdir(parents=True, exist_ok=True)
    # on the CPU whatever the model trained on: a file made on a GPU loads on any machine
    weights = {k: v.detach().float().cpu().contiguous() for k, v in model.state_dict().items()}
    folder.write_weights(weights, {"format": FORMAT})
    folder.write_config(model_config(model, training))
    return folder.path


def load_model(run_dir: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """Load (model in eval mode on `device`, config) from a run folder holding model.safetensors and config.json.
    The weights are read to the CPU first, so a model trained on any device loads on any other."""
    folder = RunFolder(run_dir)
    config_path, weights_path = folder.config, folder.weights
    missing = folder.missing_model_file()
    if missing:
        raise FileNotFoundError(f"{missing}: missing; a model folder holds {folder.WEIGHTS} and {folder.CONFIG}")
    config = folder.read_config()
    if config.get("format") != FORMAT:
        raise ValueError(f"{config_path}: not a cifake model config (format is {config.get('format')!r})")
    if config.get("format_version", 0) > FORMAT_VERSION:
        raise ValueError(f"{config_path}: format version {config['format_version']} is newer than this cifake")
    try:
        model = create_model(topology_from_dict(config["topology"]), Preprocess.of_model(config))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{config_path}: invalid topology {config['topology']} or input {config.get('input')} "
                         f"({exc})") from None
    model.normalise_with(config["input"]["mean"], config["input"]["std"])
    try:
        model.load_state_dict(folder.read_weights())
    except (RuntimeError, OSError) as exc:
        raise ValueError(f"{weights_path}: weights do not fit the config's topology ({exc})") from None
    return model.to(resolve_device(device)).eval(), config


def save_ensemble(run_dirs: list[str | os.PathLike], out: str | os.PathLike) -> Path:
    """Write the ensemble of the models in `run_dirs` (their mean logit) into `out` as one model folder.

    The members must share the normalisation and the validation split (fraction, limit, seed), so that
    `cifake calibrate` on the ensemble fits on images none of its members trained on. Members score without
    test-time flips (see cifake.models.ensemble for the measurement)."""
    if RunFolder(out).has_checkpoint():
        raise ValueError(f"{out}: holds a training run; write the ensemble to a folder of its own")
    loaded = [load_model(run_dir) for run_dir in run_dirs]
    first_config = loaded[0][1]
    for run_dir, (model, config) in zip(run_dirs, loaded):
        if isinstance(model.topology, EnsembleTopology):
            raise ValueError(f"{run_dir}: is an ensemble already; give its members instead")
        if Preprocess.of_model(config) != Preprocess.of_model(first_config):
            theirs, first = Preprocess.of_model(config), Preprocess.of_model(first_config)
            raise ValueError(f"{run_dir}: takes {theirs.size} px images ({theirs.mode}), {run_dirs[0]} takes "
                             f"{first.size} px ({first.mode}); an ensemble's members must share their input")
        if config["input"] != first_config["input"]:
            raise ValueError(f"{run_dir}: input normalisation {config['input']} differs from {run_dirs[0]}'s")
        if held_out(config) != held_out(first_config):
            raise ValueError(f"{run_dir}: validation split {held_out(config)} differs from {run_dirs[0]}'s "
                             f"{held_out(first_config)}; members must hold out the same images")
    for model, _ in loaded:
        if has_test_time_flips(model.topology):
            set_test_time_flips(model, False)
    ensemble = EnsembleCNN(EnsembleTopology(tuple(m.topology for m, _ in loaded)), [m for m, _ in loaded])
    ensemble.preprocess = Preprocess.of_model(first_config)
    training = first_config.get("training", {})
    record = {"name": ensemble.topology.name, "parameters": count_parameters(ensemble),
              "members": [{"run": str(run_dir), **config.get("training", {})}
                          for run_dir, (_, config) in zip(run_dirs, loaded)],
              **({"split": training["split"], "config": {"seed": training["config"]["seed"]}}
                 if held_out(first_config) else {})}
    return save_model(ensemble, out, record)


def save_with_flips(run_dir: str | os.PathLike, out: str | os.PathLike, flips: bool) -> Path:
    """Write `run_dir`'s model (a residual CNN or a transformer) into `out` scoring with test-time flips or without
    them (the same weights, two views or one: flips double the cost). The training record stays, so `cifake
    calibrate` and `evaluate --split validation` carve the run's own validation images again."""
    model, config = load_model(run_dir)
    if not has_test_time_flips(model.topology):
        raise ValueError(f"{run_dir}: its topology ({model.topology.name}) has no test-time flips")
    set_test_time_flips(model, flips)
    return save_model(model, out, config.get("training"))


def has_test_time_flips(topology) -> bool:
    """Whether a topology scores with test-time flips (a setting of the residual and transformer families)."""
    return "flip_tta" in {field.name for field in dataclasses.fields(topology)}


def set_test_time_flips(model: nn.Module, flips: bool) -> None:
    """Make `model` (of a family with test-time flips) score two views in eval mode, or one; the weights stay."""
    model.topology = dataclasses.replace(model.topology, flip_tta=flips)


def held_out(config: dict) -> tuple | None:
    """How a model's validation split was carved (None when its config does not say)."""
    training = config.get("training") or {}
    if "split" not in training or "config" not in training:
        return None
    split = training["split"]
    return split.get("val_fraction"), split.get("limit_per_label"), training["config"].get("seed")
