"""Calibrate a saved model: temperature and decision thresholds fitted on its validation split, stored in its
config.json; ECE and the decision's error rates on the test split (with and without the leaked duplicates)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from cifake.calibration.decision import Decision, choose_decision, decision_outcomes
from cifake.calibration.temperature import apply_temperature, calibration_error, fit_temperature, reliability_bins
from cifake.data import CifakeData
from cifake.data.audit import leaked_mask
from cifake.devices import describe, resolve_device
from cifake.metrics.plots import plot_reliability
from cifake.models import load_model
from cifake.models.inference import predict_logits, sigmoid
from cifake.runfolder import RunFolder
from cifake.workflows.experiment import validation_split


def calibrate_run(run_dir: str | os.PathLike, data: CifakeData, max_real_flagged: float = 0.01,
                  max_fake_passed: float = 0.02, device: str | torch.device = "auto") -> dict:
    """Fit, store and report; returns the report (also written to RUN_DIR/calibration.json)."""
    folder = Path(run_dir)
    run = RunFolder(folder)
    device = resolve_device(device)
    model, config = load_model(folder, device)
    val = validation_split(config, data)
    val_logits = predict_logits(model, val.images)
    temperature = fit_temperature(val_logits, val.labels)
    val_prob_fake = 1.0 - sigmoid(apply_temperature(val_logits, temperature))
    decision = choose_decision(val_prob_fake, val.labels, max_real_flagged, max_fake_passed)

    report = {"temperature": temperature, "decision": decision.to_dict(),
              "targets": {"max_real_flagged": max_real_flagged, "max_fake_passed": max_fake_passed},
              "validation": _scores(val_logits, val.labels, temperature, decision), **describe(device)}
    if "test" in data.splits:
        test = data["test"]
        test_logits = predict_logits(model, test.images)
        report["test"] = _scores(test_logits, test.labels, temperature, decision)
        keep = ~leaked_mask(data, "test")
        report["test_without_leaked"] = _scores(test_logits[keep], test.labels[keep], temperature, decision)
        plot_reliability({"before": reliability_bins(sigmoid(test_logits), test.labels),
                          f"after (T = {temperature:.3f})": reliability_bins(
                              sigmoid(apply_temperature(test_logits, temperature)), test.labels)},
                         folder / "reliability.png", "Reliability of P(REAL) on the test split")

    config["calibration"] = {"temperature": temperature, "decision": decision.to_dict(), "targets": report["targets"],
                             "fitted_on": f"validation split ({len(val):,} images)",
                             "ece_validation": report["validation"]["ece_after"]}
    run.write_config(config)
    run.write_calibration(report)
    return report


def _scores(logits: np.ndarray, labels: np.ndarray, temperature: float, decision: Decision) -> dict:
    calibrated = sigmoid(apply_temperature(logits, temperature))
    return {"images": int(len(labels)), "ece_before": calibration_error(sigmoid(logits), labels),
            "ece_after": calibration_error(calibrated, labels),
            "decision": decision_outcomes(1.0 - calibrated, labels, decision)}
