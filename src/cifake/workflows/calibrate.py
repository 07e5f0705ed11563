"""Calibrate a saved model: temperature and decision thresholds fitted on its validation split, stored in its
config.json; ECE and the decision's error rates on the test split (with and without the leaked duplicates)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from cifake.calibration.decision import UNSURE, Decision, choose_decision, decision_outcomes
from cifake.calibration.domain import TRAIN_SAMPLE, DomainCheck
from cifake.calibration.temperature import apply_temperature, calibration_error, fit_temperature, reliability_bins
from cifake.data import CifakeData
from cifake.data.audit import leaked_mask
from cifake.data.sizes import file_sides
from cifake.devices import describe, resolve_device
from cifake.metrics.plots import plot_reliability
from cifake.models import load_model
from cifake.models.inference import predict_embeddings, predict_logits, sigmoid
from cifake.runfolder import RunFolder
from cifake.training.split import Split
from cifake.workflows.experiment import validation_split


def calibrate_run(run_dir: str | os.PathLike, data: CifakeData, max_real_flagged: float = 0.01,
                  max_fake_passed: float = 0.02, device: str | torch.device = "auto",
                  max_out_of_domain: float | None = 0.01) -> dict:
    """Fit, store and report; returns the report (also written to RUN_DIR/calibration.json). With
    `max_out_of_domain` (None: none) the domain check is fitted too, flagging at most that share of validation."""
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

    if max_out_of_domain is not None:
        check = fit_domain(model, config, data, max_out_of_domain)
        report["domain"] = _domain_report(check, model, data, temperature, decision)
        config["domain"] = check.to_config() | {"fitted_on": report["domain"]["fitted_on"]}
        run.write_domain(check.tensors())
    elif config.pop("domain", None):  # asked to go without: an earlier check goes too
        run.domain.unlink(missing_ok=True)
    config["calibration"] = {"temperature": temperature, "decision": decision.to_dict(), "targets": report["targets"],
                             "fitted_on": f"validation split ({len(val):,} images)",
                             "ece_validation": report["validation"]["ece_after"]}
    run.write_config(config)
    run.write_calibration(report)
    return report


def fit_domain(model, config: dict, data: CifakeData, max_flagged: float = 0.01) -> DomainCheck:
    """The domain check of a model: its training images' features (class means and covariance of a seeded sample)
    and file sizes, and a threshold that at most `max_flagged` of its validation images exceed."""
    training = config["training"]
    seed = training["config"]["seed"]
    train, val = Split.from_record(training).carve(data, seed)
    sample = train.take(np.sort(np.random.default_rng(seed).permutation(len(train))[:TRAIN_SAMPLE]))
    _, train_features = predict_embeddings(model, sample.images)
    _, val_features = predict_embeddings(model, val.images)
    return DomainCheck.fit(train_features, sample.labels, val_features,
                           file_sides(data.source, train.names, seed=seed), max_flagged)


def _domain_report(check: DomainCheck, model, data: CifakeData, temperature: float, decision: Decision) -> dict:
    report = {"fitted_on": f"{check.training_images:,} training images, threshold on the validation split",
              "sides": list(check.sides) if check.sides else None, "threshold": check.threshold}
    if "test" not in data.splits:
        return report
    test = data["test"]
    logits, features = predict_embeddings(model, test.images)
    outside = check.scores(features) > 1  # the test files' sizes are not read here: this is the features' share
    verdicts = decision.verdicts(1.0 - sigmoid(apply_temperature(logits, temperature)))
    decided = (verdicts != UNSURE) & ~outside
    right = (verdicts == "REAL") == (test.labels == 1)
    return report | {"test_flagged": float(outside.mean()),
                     "test_accuracy_when_decided": float(right[decided].mean()) if decided.any() else None}


def _scores(logits: np.ndarray, labels: np.ndarray, temperature: float, decision: Decision) -> dict:
    calibrated = sigmoid(apply_temperature(logits, temperature))
    return {"images": int(len(labels)), "ece_before": calibration_error(sigmoid(logits), labels),
            "ece_after": calibration_error(calibrated, labels),
            "decision": decision_outcomes(1.0 - calibrated, labels, decision)}
