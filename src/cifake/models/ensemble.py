"""An ensemble: the mean logit of several trained models, saved and loaded as one model.

Why: single residual CNNs trained at full scale stop at 0.9793-0.9794 clean accuracy on CIFAKE whatever the
regularisation or depth (docs/detect.md), while the mean logit of two of them gets 19,624 of the 20,000 test images
right (0.9812). The members score without test-time flips: inside this ensemble the flips add nothing (19,624 right
either way) and cost a second pass, so the ensemble of two costs what one model with flips costs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from cifake.data.preprocess import Preprocess
from cifake.models.registry import create_model, register_family, topology_from_dict


@dataclass(frozen=True)
class EnsembleTopology:
    members: tuple  # the members' topologies (Topology or ResNetTopology), in order
    family: str = "ensemble"

    def __post_init__(self) -> None:
        object.__setattr__(self, "members", tuple(self.members))
        if len(self.members) < 2:
            raise ValueError(f"an ensemble needs at least two members, got {len(self.members)}")
        if any(isinstance(m, EnsembleTopology) for m in self.members):
            raise ValueError("an ensemble's members must be single models, not ensembles")

    @classmethod
    def from_dict(cls, values: dict) -> EnsembleTopology:
        members = values.get("members")
        if not isinstance(members, list) or not all(isinstance(member, dict) for member in members):
            raise ValueError("an ensemble topology needs a list of member topologies")
        return cls(tuple(topology_from_dict(member) for member in members))

    @property
    def name(self) -> str:
        names = [m.name for m in self.members]
        if len(set(names)) == 1:  # members of one shape: ens2-res16-32-64-128-b1-hp
            return f"ens{len(names)}-{names[0]}"
        return "ens-" + "+".join(names)

    def to_dict(self) -> dict:
        return {"family": self.family, "members": [m.to_dict() for m in self.members]}


class EnsembleCNN(nn.Module):
    """Takes NCHW float pixels in 0..255 and returns the members' mean logit (evidence for REAL)."""

    def __init__(self, topology: EnsembleTopology, members: list[nn.Module] | None = None, image_size: int = 32):
        super().__init__()
        self.topology = topology
        self.members = nn.ModuleList(members or [create_model(member, Preprocess(image_size))
                                                 for member in topology.members])

    def normalise_with(self, mean: float, std: float) -> None:
        for member in self.members:  # one normalisation for all members (save_ensemble checks it)
            member.normalise_with(mean, std)

    @property
    def mean(self) -> torch.Tensor:  # one normalisation for all members (save_ensemble checks it)
        return self.members[0].mean

    @property
    def std(self) -> torch.Tensor:
        return self.members[0].std

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return torch.stack([member(pixels) for member in self.members]).mean(0)

    def embed(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean logits, the members' unit feature vectors side by side, scaled to one unit vector): each member's
        features count alike whatever their width."""
        logits, features = zip(*(member.embed(pixels) for member in self.members))
        return torch.stack(logits).mean(0), torch.cat(features, dim=1) / len(features) ** 0.5

    def single_view(self, pixels: torch.Tensor) -> torch.Tensor:
        """The mean logit of the image as given, with no member's flip averaging (what Grad-CAM explains)."""
        views = [m.single_view(pixels) if hasattr(m, "single_view") else m(pixels) for m in self.members]
        return torch.stack(views).mean(0)


register_family("ensemble", EnsembleTopology, EnsembleCNN)
