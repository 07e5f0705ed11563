"""Model families (the study's CNN; a residual CNN beyond it; ensembles of either), built from a topology,
saved as safetensors + JSON."""

from cifake.models.cnn import (TOPOLOGIES, CifakeCNN, Topology, build_model, count_parameters, resolve_topology,
                               topology_from_dict)
from cifake.models.ensemble import EnsembleCNN, EnsembleTopology
from cifake.models.io import load_model, save_ensemble, save_model
from cifake.models.resnet import ResidualCNN, ResNetTopology

__all__ = [
    "TOPOLOGIES", "CifakeCNN", "EnsembleCNN", "EnsembleTopology", "ResNetTopology", "ResidualCNN", "Topology",
    "build_model", "count_parameters", "load_model", "resolve_topology", "save_ensemble", "save_model",
    "topology_from_dict",
]
