"""Temperature scaling, ECE, the REAL / UNSURE / FAKE decision, and `cifake calibrate` end to end."""

import json

import numpy as np
import pytest

from cifake import Detector
from cifake.calibration import Decision, apply_temperature, calibration_error, choose_decision, fit_temperature
from cifake.calibration.decision import decision_outcomes
from cifake.models import load_model
from cifake.models.inference import sigmoid
from cifake.predict import bundled_model_dir
from conftest import cli, jpeg_bytes, synthetic_image


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
    for logits, labels in ((np.zeros(5, np.float32), np.ones(5)), (np.zeros(0, np.float32), np.zeros(0))):
        with pytest.raises(ValueError, match="^temperature scaling needs validation images of both labels$"):
            fit_temperature(logits, labels)


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
    with pytest.raises(ValueError, match=r"^threshold must lie in \[0, 1\], got 1.5$"):
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
    cli("train", "--data", learnable_zip, "--out", run, "--epochs", "1", "--filters", "8", "--dense", "none", "-q")
    report = json.loads(cli("calibrate", run, "--data", learnable_zip, "--max-real-flagged", "0.02",
                               "--json", "-q").stdout)
    config = json.loads((run / "config.json").read_text())
    assert config["calibration"]["temperature"] == report["temperature"] > 0
    assert config["calibration"]["decision"] == report["decision"]
    assert report["validation"]["decision"]["real_flagged_fake"] <= 0.02
    assert report["validation"]["decision"]["fake_passed_real"] <= 0.02  # the default target
    assert set(report) >= {"test", "test_without_leaked"} and (run / "reliability.png").stat().st_size > 10_000
    detector = Detector.load(run)
    assert detector.temperature == report["temperature"]
    assert detector.decision == Decision(**report["decision"])
    images = tmp_path / "images"
    images.mkdir()
    for n in range(4):
        (images / f"{n}.jpg").write_bytes(jpeg_bytes(synthetic_image(n % 2, n)))
    rows = [json.loads(line) for line in cli("predict", images, "--model", run, "--json").stdout.splitlines()]
    assert len(rows) == 4
    for row in rows:
        assert row["threshold"] == report["decision"]["fake_at"] and row["real_below"] == report["decision"]["real_at"]
        assert row["verdict"] == detector.decision.verdict(row["prob_fake"]) or abs(
            row["prob_fake"] - report["decision"]["fake_at"]) < 1e-5  # printed probabilities are rounded


def test_validation_split_is_carved_again_as_training_carved_it(learnable_zip, tmp_path):
    from cifake.data import load_dataset, train_val_split
    from cifake.models import Topology
    from cifake.training.config import TrainConfig
    from cifake.training.split import Split
    from cifake.workflows.experiment import train_run, validation_split

    data = load_dataset(learnable_zip, cache_root=tmp_path, progress=False)
    expected = train_val_split(data["train"].limit(100, 3), 0.2, 3)[1]
    record = train_run(data, tmp_path / "run", Topology(4, 1, ()), TrainConfig(epochs=1, seed=3), Split(0.2, 100),
                       progress=False, plots=False)
    assert record["split"] == {"val_fraction": 0.2, "limit_per_label": 100, "test_share": 0.2, "exclude_sources": [],
                               "train": 160, "validation": 40}
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert list(validation_split(config, data).names) == list(expected.names)
    with pytest.raises(ValueError, match="validation split"):
        validation_split({"training": {}}, data)


def test_each_target_bounds_its_own_error_rate(learnable_zip, tmp_path):
    """Asymmetric targets on a model that cannot separate the labels: each target bounds its own error (swapping
    them would not), and the stored decision is the one recomputed here from the validation scores."""
    from cifake.data import load_dataset
    from cifake.models import create_model, save_model
    from cifake.models.inference import predict_logits
    from cifake.workflows.calibrate import calibrate_run
    from cifake.workflows.experiment import validation_split

    torch = pytest.importorskip("torch")
    torch.manual_seed(3)
    run = save_model(create_model("paper"), tmp_path / "untrained", training={
        "config": {"seed": 1}, "split": {"val_fraction": 0.5, "limit_per_label": None}})
    data = load_dataset(learnable_zip, progress=False)
    report = calibrate_run(run, data, max_real_flagged=0.02, max_fake_passed=0.3)
    assert report["targets"] == {"max_real_flagged": 0.02, "max_fake_passed": 0.3}
    val = validation_split(json.loads((run / "config.json").read_text()), data)
    logits = predict_logits(load_model(run)[0], val.images)
    temperature = fit_temperature(logits, val.labels)
    prob_fake = 1 - sigmoid(apply_temperature(logits, temperature))
    assert report["temperature"] == pytest.approx(temperature, rel=1e-6)
    assert report["decision"] == choose_decision(prob_fake, val.labels, 0.02, 0.3).to_dict()
    outcome = report["validation"]["decision"]
    assert outcome == decision_outcomes(prob_fake, val.labels, Decision(**report["decision"]))
    assert outcome["real_flagged_fake"] <= 0.02 and 0.2 < outcome["fake_passed_real"] <= 0.3


def test_calibrate_command_takes_both_targets(learnable_zip, tmp_path):
    from cifake.models import create_model, save_model

    pytest.importorskip("torch").manual_seed(3)  # the same untrained model whatever ran before in this process
    run = save_model(create_model("paper"), tmp_path / "untrained", training={
        "config": {"seed": 1}, "split": {"val_fraction": 0.5, "limit_per_label": None}})
    report = json.loads(cli("calibrate", run, "--data", learnable_zip, "--max-real-flagged", "0.3",
                               "--max-fake-passed", "0.02", "--json", "-q").stdout)
    assert report["targets"] == {"max_real_flagged": 0.3, "max_fake_passed": 0.02}
    outcome = report["validation"]["decision"]
    assert outcome["fake_passed_real"] <= 0.02 and 0.2 < outcome["real_flagged_fake"] <= 0.3
    table = cli("calibrate", run, "--data", learnable_zip, "-q").stdout  # the defaults, printed as a table
    assert "Temperature" in table and json.loads((run / "config.json").read_text())["calibration"]["targets"] == {
        "max_real_flagged": 0.01, "max_fake_passed": 0.02}


def test_decision_bounds_and_targets_at_their_edges():
    with pytest.raises(ValueError, match="real_at <= fake_at <= 1"):
        Decision(fake_at=1.5, real_at=0.2)
    with pytest.raises(ValueError, match="0 <= real_at"):
        Decision(fake_at=0.5, real_at=-0.1)
    scores, labels = np.array([0.1, 0.2, 0.8, 0.9]), np.array([1, 1, 0, 0])
    for name in ("max_real_flagged", "max_fake_passed"):
        for rate in (0, 1, 1.5):
            with pytest.raises(ValueError, match=name):
                choose_decision(scores, labels, **{name: rate})
    with pytest.raises(ValueError, match="both labels"):
        choose_decision(scores[:2], labels[:2])
    with pytest.raises(ValueError, match="both labels"):
        choose_decision(scores[2:], labels[2:])
    one_fake = choose_decision(np.array([0.1, 0.2, 0.3, 0.9]), np.array([1, 1, 1, 0]))  # the defaults: 1 % and 2 %
    assert one_fake.verdict(0.9) == "FAKE" and one_fake.verdict(0.3) == "REAL"


def test_a_real_image_scored_certainly_fake_caps_the_threshold_at_one():
    """P(FAKE) = 1.0 for a REAL image: the threshold that flags no REAL image is 1.0, not a float past it."""
    decision = choose_decision(np.array([1.0, 0.1, 0.9, 0.95], np.float32), np.array([1, 1, 0, 0]), 0.01, 0.4)
    assert decision.fake_at == 1.0 and decision.verdict(1.0) == "FAKE"


def test_verdicts_compare_float32_scores_in_float64():
    """A threshold a hair above 0.5 rounds to 0.5 in float32; the verdict must not flip for a score of exactly 0.5."""
    decision = Decision.single(0.5 + 1e-9)
    scores = np.array([0.5], np.float32)
    assert decision.verdict(float(scores[0])) == "REAL" and list(decision.verdicts(scores)) == ["REAL"]
    band = Decision(fake_at=0.5 + 1e-9, real_at=0.5 - 1e-9)
    assert list(band.verdicts(scores)) == ["UNSURE"] == [band.verdict(0.5)]


def test_reliability_bins_and_ece_known_answers():
    from cifake.calibration.temperature import reliability_bins

    bins = reliability_bins(np.array([0.05, 0.12, 0.18, 0.95, 1.0, 0.5]), np.array([0, 1, 0, 1, 1, 0]), bins=10)
    assert bins["edges"] == pytest.approx(np.linspace(0, 1, 11).tolist())
    assert bins["count"] == [1, 2, 0, 0, 0, 1, 0, 0, 0, 2]  # P(REAL) = 1.0 falls in the last bin
    assert bins["predicted"] == pytest.approx([0.05, 0.15, -1, -1, -1, 0.5, -1, -1, -1, 0.975])  # -1: empty bin
    assert bins["observed"] == pytest.approx([0.0, 0.5, -1, -1, -1, 0.0, -1, -1, -1, 1.0])
    assert calibration_error(np.full(10, 0.9), np.zeros(10)) == pytest.approx(0.9)
    assert calibration_error(np.full(10, 0.3), np.array([1, 1, 1] + [0] * 7)) == pytest.approx(0.0, abs=1e-6)
    assert calibration_error(np.array([0.1, 0.9]), np.array([1, 0]), bins=2) == pytest.approx(0.9)
    # the bin count is the caller's: one bin of two [0, 0.5) holds both (|0.5 - 0.25|), fifteen bins part them
    assert calibration_error(np.array([0.1, 0.4]), np.array([1, 0]), bins=2) == pytest.approx(0.25)
    assert calibration_error(np.array([0.1, 0.4]), np.array([1, 0])) == pytest.approx(0.9 / 2 + 0.4 / 2)


def test_temperature_of_a_calibrated_model_is_one_and_scaling_divides():
    logits, labels = _overconfident(temperature=1.0, seed=4)
    assert fit_temperature(logits, labels) == pytest.approx(1.0, abs=0.05)
    assert apply_temperature(np.array([3.0, -6.0]), 2.0).tolist() == [1.5, -3.0]
    assert apply_temperature(np.array([3.0]), 2.0).dtype == np.float32
    with pytest.raises(ValueError, match="both labels"):
        fit_temperature(np.zeros(0, np.float32), np.zeros(0))


def test_decision_outcomes_known_answer():
    decision = Decision(fake_at=0.8, real_at=0.3)
    prob_fake = np.array([0.9, 0.5, 0.1, 0.95, 0.2, 0.6])  # FAKE, UNSURE, REAL, FAKE, REAL, UNSURE
    labels = np.array([1, 1, 1, 0, 0, 0])
    outcome = decision_outcomes(prob_fake, labels, decision)
    assert outcome == {"images": 6, "unsure": pytest.approx(2 / 6), "real_flagged_fake": pytest.approx(1 / 3),
                       "fake_passed_real": pytest.approx(1 / 3), "accuracy_when_decided": pytest.approx(0.5)}
    only_real = decision_outcomes(np.array([0.5]), np.array([1]), decision)
    assert only_real["fake_passed_real"] is None and only_real["accuracy_when_decided"] is None
    assert decision_outcomes(np.array([0.1]), np.array([0]), decision)["real_flagged_fake"] is None


def test_the_loosest_fake_threshold_lets_through_just_what_the_target_allows():
    scores, labels = np.array([0.1, 0.2, 0.6, 0.9]), np.array([1, 1, 0, 0])
    decision = choose_decision(scores, labels, max_real_flagged=0.4, max_fake_passed=0.5)
    assert decision.real_at == decision.fake_at == pytest.approx((0.9 + np.nextafter(np.float32(0.2), 2)) / 2)


def test_calibrate_run_defaults_and_the_files_it_writes(learnable_zip, tmp_path):
    from cifake.data import load_dataset
    from cifake.models import create_model, save_model
    from cifake.workflows.calibrate import calibrate_run

    run = save_model(create_model("paper"), tmp_path / "run", training={
        "config": {"seed": 1}, "split": {"val_fraction": 0.5, "limit_per_label": None}})
    report = calibrate_run(run, load_dataset(learnable_zip, progress=False))
    assert report["targets"] == {"max_real_flagged": 0.01, "max_fake_passed": 0.02}
    assert json.loads((run / "calibration.json").read_text()) == report
    stored = json.loads((run / "config.json").read_text())["calibration"]
    assert stored["fitted_on"] == "validation split (300 images)"
    assert stored["ece_validation"] == report["validation"]["ece_after"] and stored["targets"] == report["targets"]


def _hand_ece(prob_real: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """Expected calibration error written out: equal-width bins of P(REAL), |REAL rate - mean P(REAL)| weighted by
    each bin's share of the images."""
    index = np.minimum((prob_real.astype(np.float64) * bins).astype(int), bins - 1)
    return float(sum(abs(labels[index == b].mean() - prob_real[index == b].astype(np.float64).mean())
                     * (index == b).mean() for b in range(bins) if (index == b).any()))


def test_the_ece_reported_after_calibration_is_that_of_the_calibrated_probabilities(learnable_zip, tmp_path):
    from cifake.data import load_dataset
    from cifake.data.audit import leaked_mask
    from cifake.models import Topology, load_model
    from cifake.models.inference import predict_logits, sigmoid
    from cifake.training.config import TrainConfig
    from cifake.training.split import Split
    from cifake.workflows.calibrate import calibrate_run
    from cifake.workflows.experiment import train_run, validation_split

    data = load_dataset(learnable_zip, cache_root=tmp_path, progress=False)
    train_run(data, tmp_path / "run", Topology(4, 1, ()), TrainConfig(epochs=1), Split(0.5), progress=False,
              plots=False)
    report = calibrate_run(tmp_path / "run", data, device="cpu")
    model, config = load_model(tmp_path / "run")
    temperature = report["temperature"]
    assert temperature != pytest.approx(1.0, abs=1e-3)  # calibration changed the probabilities
    val = validation_split(config, data)
    keep = ~leaked_mask(data, "test")
    for name, images, labels in (("validation", val.images, val.labels),
                                 ("test", data["test"].images, data["test"].labels),
                                 ("test_without_leaked", data["test"].images[keep], data["test"].labels[keep])):
        logits = predict_logits(model, images)
        assert report[name]["images"] == len(labels)
        assert report[name]["ece_before"] == pytest.approx(_hand_ece(sigmoid(logits), labels), abs=1e-5)
        assert report[name]["ece_after"] == pytest.approx(_hand_ece(sigmoid(logits / temperature), labels), abs=1e-5)
        assert report[name]["ece_after"] != pytest.approx(report[name]["ece_before"], abs=1e-4)


def test_reliability_bins_place_float32_scores_by_their_value_and_warn_of_nothing():
    """float32's 0.7 is 0.69999999 and belongs to the bin below 0.7 (its product with 10 in float32 rounds up to
    7.0); float32's 0.3 is 0.30000001 and belongs to the bin from 0.3. Empty bins are reported as -1 without a
    NumPy warning on the user's terminal."""
    import warnings

    from cifake.calibration.temperature import reliability_bins

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        bins = reliability_bins(np.array([0.7, 0.3], np.float32), np.array([1, 0]), bins=10)
    assert bins["count"] == [0, 0, 0, 1, 0, 0, 1, 0, 0, 0]
    assert bins["predicted"][6] == pytest.approx(0.7) and bins["predicted"][0] == -1


def test_accuracy_when_decided_counts_each_label_by_its_own_verdict():
    """Worked by hand: REAL images scored REAL, REAL, FAKE and FAKE images scored FAKE, FAKE, REAL, UNSURE: six
    decided, four right."""
    decision = Decision(fake_at=0.8, real_at=0.3)
    prob_fake = np.array([0.1, 0.2, 0.9, 0.95, 0.85, 0.1, 0.5])
    outcome = decision_outcomes(prob_fake, np.array([1, 1, 1, 0, 0, 0, 0]), decision)
    assert outcome["accuracy_when_decided"] == pytest.approx(4 / 6) and outcome["unsure"] == pytest.approx(1 / 7)


@pytest.mark.parametrize("name", ["max_real_flagged", "max_fake_passed"])
def test_a_target_outside_zero_to_one_is_refused_by_its_name(name):
    with pytest.raises(ValueError, match=rf"^{name} must lie in \(0, 1\), got 1$"):
        choose_decision(np.array([0.1, 0.9]), np.array([1, 0]), **{name: 1})
    with pytest.raises(ValueError, match="^choosing thresholds needs validation images of both labels$"):
        choose_decision(np.array([0.1, 0.9]), np.array([1, 1]))
