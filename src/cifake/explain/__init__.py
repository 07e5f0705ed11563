"""Explanations: Grad-CAM maps (captum), figures, and measured analysis of where the evidence lies."""

from cifake.explain.analysis import (centre_share, deletion_insertion, randomisation_check, rank_correlation,
                                     region_table)
from cifake.explain.base import AttributionMethod
from cifake.explain.gradcam import GradCam, conv_layer_names

__all__ = [
    "AttributionMethod", "GradCam", "centre_share", "conv_layer_names", "deletion_insertion", "randomisation_check",
    "rank_correlation", "region_table",
]
