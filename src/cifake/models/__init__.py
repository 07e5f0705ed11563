"""Model families (the study's CNN; a residual CNN and vision transformers beyond it; ensembles of any), one
family per file, each registered by name (cifake.models.registry); saved as safetensors + JSON. Importing this
package registers every family: a new one is a file here and a line below."""

from cifake.models import cnn, resnet, vit, ensemble  # noqa: F401, I001  (each registers its family; this order is list_models()'s)
from cifake.models.cnn import CifakeCNN, Topology
from cifake.models.ensemble import EnsembleCNN, EnsembleTopology
from cifake.models.io import load_model, save_ensemble, save_model
from cifake.models.registry import (count_parameters, create_model, list_models, register_family, register_model,
                                    resolve_topology, topology_from_dict)
from cifake.models.resnet import ResidualCNN, ResNetTopology
from cifake.models.vit import VisionTransformerDetector, ViTTopology

__all__ = [
    "CifakeCNN", "EnsembleCNN", "EnsembleTopology", "ResNetTopology", "ResidualCNN", "Topology", "count_parameters",
    "create_model", "list_models", "load_model", "register_family", "register_model", "resolve_topology",
    "save_ensemble", "save_model", "topology_from_dict", "ViTTopology", "VisionTransformerDetector",
]
