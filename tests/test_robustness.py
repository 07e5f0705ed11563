"""Degradations, robust training and `cifake robustness`."""

import json
import subprocess
import sys

import numpy as np
import pytest

from cifake.data.degrade import CONDITIONS, degrade, random_degradations
from conftest import REPO, cli, flat, synthetic_image


@pytest.fixture(scope="module")
def images():
    return np.stack([synthetic_image(n % 2, n) for n in range(16)])


def test_every_condition_keeps_shape_and_type_and_leaves_the_input_alone(images):
    before = images.copy()
    for condition in CONDITIONS:
        out = degrade(images, condition, seed=3)
        assert out.shape == images.shape and out.dtype == np.uint8, condition
        assert np.array_equal(out, degrade(images, condition, seed=3)), condition  # seeded
        assert (condition == "clean") == np.array_equal(out, images), condition
    assert np.array_equal(images, before)


def test_stronger_settings_change_images_more(images):
    change = lambda condition: np.abs(degrade(images, condition).astype(int) - images).mean()
    assert change("jpeg q95") < change("jpeg q75") < change("jpeg q30")
    assert change("blur sigma 0.5") < change("blur sigma 1.0")
    assert change("scale 0.75x") < change("scale 0.5x")
    assert change("noise sigma 2") < change("noise sigma 10")
    grey = np.full((4, 32, 32, 3), 128, np.uint8)
    assert np.std(degrade(grey, "noise sigma 10").astype(float) - 128) == pytest.approx(10, rel=0.05)
    with pytest.raises(ValueError, match="unknown condition"):
        degrade(images, "sepia")


def test_random_degradations_follow_the_probability_and_the_seed(images):
    assert np.array_equal(random_degradations(images, 0.0, np.random.default_rng(1)), images)
    everything = random_degradations(images, 1.0, np.random.default_rng(1))
    assert all(not np.array_equal(a, b) for a, b in zip(everything, images))
    assert np.array_equal(everything, random_degradations(images, 1.0, np.random.default_rng(1)))


def test_robust_training_is_seeded(learnable_zip, tmp_path):
    runs = []
    for name, share in (("a", "0.5"), ("b", "0.5"), ("plain", "0")):
        cli("train", "--data", learnable_zip, "--out", tmp_path / name, "--epochs", "1", "--filters", "8",
               "--dense", "none", "--degrade", share, "-q")
        runs.append((tmp_path / name / "model.safetensors").read_bytes())
    assert runs[0] == runs[1] and runs[0] != runs[2]  # seeded, and the degradations change what is learnt
    config = json.loads((tmp_path / "a" / "config.json").read_text())
    assert config["training"]["config"]["degrade"] == 0.5
    bad = cli("train", "--data", learnable_zip, "--out", tmp_path / "c", "--degrade", "2", check=False)
    assert bad.returncode == 2 and "training setting degrade must be in [0, 1], not 2.0" in bad.stderr


def test_robustness_command_writes_table_plot_and_report(learnable_zip, tmp_path):
    run = tmp_path / "run"
    cli("train", "--data", learnable_zip, "--out", run, "--epochs", "2", "--filters", "8", "--dense", "none", "-q")
    result = json.loads(cli("robustness", run, "--data", learnable_zip, "--out", tmp_path / "r", "--json",
                               "-q").stdout)
    assert [row["condition"] for row in result["rows"]] == list(CONDITIONS)
    evaluated = json.loads((run / "run.json").read_text())["test"]
    clean = result["rows"][0]
    assert clean["accuracy"] == pytest.approx(evaluated["accuracy"])
    assert clean["roc_auc"] == pytest.approx(evaluated["roc_auc"])
    for name in ("robustness.json", "robustness.csv", "robustness.md", "robustness.html", "robustness.png"):
        assert (tmp_path / "r" / name).is_file(), name
    assert (tmp_path / "r" / "robustness.csv").read_text().count("\n") == len(CONDITIONS) + 1
    some = json.loads(cli("robustness", run, "--data", learnable_zip, "--out", tmp_path / "s", "--condition",
                             "jpeg q30", "--limit", "20", "--json", "-q").stdout)
    assert [r["condition"] for r in some["rows"]] == ["jpeg q30"] and some["images"] == 40
    bad = cli("robustness", run, "--data", learnable_zip, "--condition", "sepia", check=False)
    assert bad.returncode == 2 and "'sepia' is not one of" in flat(bad.stderr)


def test_robustness_on_real_photographs_only_reports_the_false_accusation_rate(learnable_zip, tmp_path):
    """The generalisation check's shape: a folder of real photos (tools/outside_photos.py) scored per condition;
    accuracy is the share called REAL, and ROC-AUC and FAKE recall are undefined, not 0."""
    run = tmp_path / "run"
    cli("train", "--data", learnable_zip, "--out", run, "--epochs", "1", "--filters", "8", "--dense", "none", "-q")
    photos = tmp_path / "outside"
    subprocess.run([sys.executable, REPO / "tools" / "outside_photos.py", photos], check=True, capture_output=True)
    files = list((photos / "photos" / "test" / "REAL").glob("*.png"))
    assert len(files) >= 3 * 21  # three photographs at least (matplotlib, scikit-learn), each whole + 20 tiles
    result = json.loads(cli("robustness", run, "--data", photos / "photos", "--out", tmp_path / "r",
                            "--condition", "clean", "--condition", "blur sigma 1.0", "--json", "-q").stdout)
    assert result["images"] == len(files)
    for row in result["rows"]:
        assert row["roc_auc"] is None and row["recall_fake"] is None
        assert row["accuracy"] == pytest.approx(row["recall_real"])
    assert "| clean |" in (tmp_path / "r" / "robustness.md").read_text()
