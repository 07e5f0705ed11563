"""The study's CNN family, built from a topology spec, saved as safetensors + JSON config."""

from cifake.models.cnn import TOPOLOGIES, CifakeCNN, Topology, build_model, count_parameters, resolve_topology
from cifake.models.io import load_model, save_model

__all__ = [
    "TOPOLOGIES", "CifakeCNN", "Topology", "build_model", "count_parameters", "load_model", "resolve_topology",
    "save_model",
]
