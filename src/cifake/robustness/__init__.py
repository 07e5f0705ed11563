"""Robustness: accuracy and AUC of a model under re-compression, rescaling, blur and noise."""

from cifake.robustness.run import evaluate_robustness

__all__ = ["evaluate_robustness"]
