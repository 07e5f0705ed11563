"""Calibration: temperature scaling, expected calibration error, and a decision rule with an "unsure" band."""

from cifake.calibration.decision import OUT_OF_DOMAIN, UNSURE, Decision, choose_decision, decision_outcomes
from cifake.calibration.temperature import apply_temperature, calibration_error, fit_temperature

__all__ = ["OUT_OF_DOMAIN", "UNSURE", "Decision", "apply_temperature", "calibration_error", "choose_decision",
           "decision_outcomes", "fit_temperature"]
