"""Model families by name, in timm's shape: each family's file registers its topology class and builder
(`register_family`) and its named topologies (`register_model`); everything else builds through `create_model` and
reads configs through `topology_from_dict`, so a new family is one new file and one import in the package face.

A topology is a frozen dataclass with `name`, `to_dict()` and `from_dict()`; its dict names its family (the study's
CNN, the first family, writes none, and configs without one are read as the study's CNN).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from cifake.data.preprocess import Preprocess

DEFAULT_FAMILY = "cnn"  # what a topology dict without a "family" key describes (the study's CNN)
DEFAULT_MODEL = "paper"


@dataclass(frozen=True)
class Family:
    name: str
    topology: type  # a frozen dataclass: name, to_dict(), from_dict()
    build: Callable[..., nn.Module]  # (topology, image_size=N) -> a freshly initialised model
    parse: Callable[[str], object] | None = None  # a name -> its topology, or None: names beyond the registered
    pattern: str = ""  # what the names `parse` reads look like, for messages


_FAMILIES: dict[str, Family] = {}
_MODELS: dict[str, object] = {}  # named topologies: "paper", "resnet4", ...


def register_family(name: str, topology: type, build: Callable[..., nn.Module],
                    parse: Callable[[str], object] | None = None, pattern: str = "") -> None:
    """`parse`, when given, reads topology names of the family's own pattern (e.g. vit-p4-d6-w128)."""
    if name in _FAMILIES:
        raise ValueError(f"model family {name!r} is registered twice")
    _FAMILIES[name] = Family(name, topology, build, parse, pattern)


def register_model(name: str, topology) -> None:
    """Give a topology a name that `create_model`, `--topology` and recipes accept."""
    if name in _MODELS:
        raise ValueError(f"model name {name!r} is registered twice")
    family_of(topology)  # its family must be known
    _MODELS[name] = topology


def list_models() -> list[str]:
    return list(_MODELS)


def family_of(topology) -> Family:
    for family in _FAMILIES.values():
        if type(topology) is family.topology:
            return family
    raise ValueError(f"{type(topology).__name__} is no registered model family's topology")


def resolve_topology(name: str | None = None, **overrides):
    """A named topology (default `paper`), or one a family reads from its name (e.g. vit-p4-d6-w128), with the
    fields given (not None) replaced, e.g. filters=64."""
    base = _MODELS.get(name or DEFAULT_MODEL) or _parsed(name)
    given = {key: value for key, value in overrides.items() if value is not None}
    known = {f.name for f in dataclasses.fields(base)}
    if set(given) - known:
        options = ", ".join("--" + key.replace("_", "-") for key in sorted(set(given) - known))
        raise ValueError(f"{options} do not shape {name!r} ({family_of(base).name} family)")
    return dataclasses.replace(base, **given) if given else base


def _parsed(name: str):
    for family in _FAMILIES.values():
        topology = family.parse(name) if family.parse else None
        if topology is not None:
            return topology
    patterns = [family.pattern for family in _FAMILIES.values() if family.pattern]
    raise ValueError(f"unknown topology {name!r}; known: {', '.join([*_MODELS, *patterns])}")


def create_model(topology=DEFAULT_MODEL, preprocess: Preprocess | None = None) -> nn.Module:
    """A freshly initialised model of a topology or a registered name, for inputs of `preprocess`'s size (default
    32 px, resized); call torch.manual_seed first for reproducible weights. The model carries its `preprocess`,
    which its saved config records and every reader takes from there."""
    topology = resolve_topology(topology) if isinstance(topology, str) else topology
    preprocess = preprocess or Preprocess()
    model = family_of(topology).build(topology, image_size=preprocess.size)
    model.preprocess = preprocess
    return model


def topology_from_dict(values: dict):
    """The topology a model config describes."""
    name = values.get("family", DEFAULT_FAMILY)
    if name not in _FAMILIES:
        raise ValueError(f"unknown model family {name!r}; known: {', '.join(_FAMILIES)}")
    return _FAMILIES[name].topology.from_dict(values)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
