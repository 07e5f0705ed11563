"""Temperature scaling, ECE, the REAL / UNSURE / FAKE decision, and `cifake calibrate` end to end."""

import json

import numpy as np
import pytest

from cifake import Detector
from cifake.calibration import Decision, apply_temperature, calibration_error, choose_decision, fit_temperature
from cifake.calibration.run import decision_outcomes
from cifake.models import load_model
from cifake.models.inference import sigmoid
from cifake.predict import bundled_model_dir
from conftest import jpeg_bytes, synthetic_image
from test_cli import cifake


def _overconfident(n=20_000, temperature=3.0, seed=0):
    """Labels drawn from sigmoid(z); the model reports z * temperature, i.e. too sure of itself."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 2, n)
    labels = (rng.random(n) < 1 / (1 + np.exp(-z))).astype(np.int64)
    return (z * temperature).astype(np.float32), labels


def test_temperature_recovers_the_overconfidence_and_lowers_ece():
    logits, labels = _overconfident()
    temperature = fit_temperature(logits, labels)
    assert temperature == pytest.approx(3.0, rel=0.05)
    before = calibration_error(sigmoid(logits), labels)
    after = calibration_error(sigmoid(apply_temperature(logits, temperature)), labels)
    assert before > 0.05 and after < 0.015


def test_temperature_needs_both_labels():
    with pytest.raises(ValueError, match="both labels"):
        fit_temperature(np.zeros(5, np.float32), np.ones(5))


def test_decision_meets_both_targets_on_the_images_it_was_chosen_on():
    logits, labels = _overconfident(seed=1)
    prob_fake = 1 - sigmoid(logits)
    decision = choose_decision(prob_fake, labels, max_real_flagged=0.01, max_fake_passed=0.05)
    assert decision.real_at < decision.fake_at  # the targets cannot both be met with one threshold: a band
    outcome = decision_outcomes(prob_fake, labels, decision)
    assert outcome["real_flagged_fake"] <= 0.01 and outcome["fake_passed_real"] <= 0.05
    assert outcome["real_flagged_fake"] > 0.009 and outcome["fake_passed_real"] > 0.049  # and not needlessly strict
    assert 0 < outcome["unsure"] < 1
    verdicts = decision.verdicts(prob_fake)
    assert set(verdicts) == {"REAL", "FAKE", "UNSURE"}
    assert all(decision.verdict(p) == v for p, v in zip(prob_fake[:500], verdicts[:500]))


def test_separable_scores_need_no_unsure_band():
    prob_fake = np.array([0.01, 0.02, 0.03, 0.97, 0.98, 0.99], np.float32)
    decision = choose_decision(prob_fake, np.array([1, 1, 1, 0, 0, 0]), 0.1, 0.1)
    assert decision.real_at == decision.fake_at and 0.03 < decision.fake_at <= 0.97
    assert list(decision.verdicts(prob_fake)) == ["REAL"] * 3 + ["FAKE"] * 3


def test_decision_rejects_bad_settings():
    with pytest.raises(ValueError, match="real_at <= fake_at"):
        Decision(fake_at=0.2, real_at=0.8)
    with pytest.raises(ValueError, match="threshold"):
        Decision.single(1.5)
    with pytest.raises(ValueError, match="max_real_flagged"):
        choose_decision(np.array([0.1, 0.9]), np.array([1, 0]), max_real_flagged=0)


def test_detector_applies_the_stored_temperature_and_band():
    model, config = load_model(bundled_model_dir())
    config = {k: v for k, v in config.items() if k != "calibration"}  # the raw model, whatever the bundle carries
    plain = Detector(model, config, "plain")
    image = synthetic_image(1, 3)
    p = plain.predict([image])[0].prob_fake
    band = {"temperature": 2.0, "decision": {"fake_at": min(1.0, p + 0.3), "real_at": max(0.0, p - 0.3)}}
    calibrated = Detector(model, config | {"calibration": band}, "calibrated")
    result = calibrated.predict([image])[0]
    logit = np.log((1 - p) / p)
    assert result.prob_fake == pytest.approx(1 - 1 / (1 + np.exp(-logit / 2)), abs=1e-5)
    assert result.verdict == "UNSURE" and result.threshold == band["decision"]["fake_at"]
    assert calibrated.predict([image], threshold=0.0)[0].verdict == "FAKE"  # an explicit threshold: two-way


def test_calibrate_command_stores_what_predict_then_uses(learnable_zip, tmp_path):
    run = tmp_path / "run"
    cifake("train", "--data", learnable_zip, "--out", run, "--epochs", "1", "--filters", "8", "--dense", "none", "-q")
    report = json.loads(cifake("calibrate", run, "--data", learnable_zip, "--max-real-flagged", "0.02",
                               "--json", "-q").stdout)
    config = json.loads((run / "config.json").read_text())
    assert config["calibration"]["temperature"] == report["temperature"] > 0
    assert config["calibration"]["decision"] == report["decision"]
    assert report["validation"]["decision"]["real_flagged_fake"] <= 0.02
    assert report["validation"]["decision"]["fake_passed_real"] <= 0.05
    assert set(report) >= {"test", "test_without_leaked"} and (run / "reliability.png").stat().st_size > 10_000
    detector = Detector.load(run)
    assert detector.temperature == report["temperature"]
    assert detector.decision == Decision(**report["decision"])
    images = tmp_path / "images"
    images.mkdir()
    for n in range(4):
        (images / f"{n}.jpg").write_bytes(jpeg_bytes(synthetic_image(n % 2, n)))
    rows = [json.loads(line) for line in cifake("predict", images, "--model", run, "--json").stdout.splitlines()]
    assert len(rows) == 4
    for row in rows:
        assert row["threshold"] == report["decision"]["fake_at"] and row["real_below"] == report["decision"]["real_at"]
        assert row["verdict"] == detector.decision.verdict(row["prob_fake"]) or abs(
            row["prob_fake"] - report["decision"]["fake_at"]) < 1e-5  # printed probabilities are rounded


def test_validation_split_is_carved_again_as_training_carved_it(learnable_zip, tmp_path):
    from cifake.calibration.run import validation_split
    from cifake.data import load_dataset, train_val_split

    data = load_dataset(learnable_zip, cache_root=tmp_path, progress=False)
    expected = train_val_split(data["train"].limit(100, 3), 0.2, 3)[1]
    run_config = {"training": {"config": {"seed": 3}, "data": {"val_fraction": 0.2, "limit_per_label": 100}}}
    trial_config = {"training": {"budget": {"seed": 3, "val_fraction": 0.2, "limit_per_label": 100}}}
    for config in (run_config, trial_config):
        assert list(validation_split(config, data).names) == list(expected.names)
    with pytest.raises(ValueError, match="validation split"):
        validation_split({"training": {}}, data)
