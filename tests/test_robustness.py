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


def _gaussian_blur_by_hand(image: np.ndarray, sigma: float) -> np.ndarray:
    """A separable Gaussian (truncated at 3 sigma, borders reflected as scipy's 'reflect' does: edge included),
    one colour channel at a time, written out with NumPy."""
    radius = int(3.0 * sigma + 0.5)
    offsets = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
    kernel /= kernel.sum()
    out = image.astype(np.float64)
    for axis in (0, 1):
        padded = np.pad(out, [(radius, radius) if a == axis else (0, 0) for a in range(3)], mode="symmetric")
        out = sum(w * np.take(padded, np.arange(image.shape[axis]) + radius + o, axis=axis)
                  for w, o in zip(kernel, offsets))
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("sigma", [0.5, 1.0])
def test_blur_is_a_gaussian_of_its_sigma_on_each_colour_channel_alone(images, sigma):
    coloured = images.copy()
    coloured[:, :, :, 0] = 255  # a saturated red channel stays saturated only if channels are not mixed
    coloured[:, :, :, 2] = 0
    blurred = degrade(coloured, f"blur sigma {sigma}")
    assert (blurred[..., 0] == 255).all() and (blurred[..., 2] == 0).all()
    for image, out in zip(coloured[:4], blurred[:4]):
        assert np.abs(out.astype(int) - _gaussian_blur_by_hand(image, sigma)).max() <= 1


@pytest.mark.parametrize("quality", [95, 75, 50, 30])
def test_jpeg_condition_is_a_4_2_0_reencode_at_its_quality(images, quality):
    import io

    from PIL import Image

    def pillow(image):
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, "JPEG", quality=quality, subsampling="4:2:0")
        return np.asarray(Image.open(buffer).convert("RGB"))

    out = degrade(images[:4], f"jpeg q{quality}")
    expected = np.stack([pillow(image) for image in images[:4]])
    assert np.abs(out.astype(int) - expected).mean() < 1.0  # another libjpeg build: within rounding


@pytest.mark.parametrize(("scale", "side"), [(0.75, 24), (0.5, 16)])
def test_rescale_goes_through_an_image_of_the_scaled_size_and_back(images, scale, side):
    from PIL import Image

    out = degrade(images[:4], f"scale {scale:g}x")
    for image, got in zip(images[:4], out):
        small = Image.fromarray(image).resize((side, side), Image.BILINEAR)
        assert np.array_equal(got, np.asarray(small.resize((32, 32), Image.BILINEAR)))


@pytest.mark.parametrize("sigma", [2, 5, 10])
def test_noise_has_the_standard_deviation_it_is_named_by_and_no_bias(sigma):
    grey = np.full((8, 32, 32, 3), 128, np.uint8)
    difference = degrade(grey, f"noise sigma {sigma}", seed=5).astype(float) - 128
    assert difference.std() == pytest.approx(sigma, rel=0.05) and abs(difference.mean()) < 0.1 * sigma
    assert not np.array_equal(degrade(grey, f"noise sigma {sigma}", seed=5), degrade(grey, f"noise sigma {sigma}",
                                                                                      seed=6))


def test_robustness_limit_samples_with_the_commands_seed(learnable_zip, tmp_path):
    """--limit N scores N seeded test images per label: with --seed S, the ones ImageSet.limit(N, S) draws, and
    its noise follows S too."""
    import torch

    from cifake.data import load_dataset
    from cifake.metrics import compute_metrics
    from cifake.models import create_model, load_model, save_model
    from cifake.models.inference import predict_logits

    torch.manual_seed(0)
    run = save_model(create_model("paper"), tmp_path / "run")
    model = load_model(run)[0]
    test = load_dataset(learnable_zip, progress=False)["test"]

    def scored(seed: int) -> dict:
        return json.loads(cli("robustness", run, "--data", learnable_zip, "--out", tmp_path / f"r{seed}", "--limit",
                              "15", "--seed", seed, "--condition", "clean", "--condition", "noise sigma 10",
                              "--json", "-q").stdout)

    for seed in (4, 9):
        result = scored(seed)
        chosen = test.limit(15, seed)
        expected = compute_metrics(predict_logits(model, chosen.images), chosen.labels)
        assert result["seed"] == seed and result["images"] == 30
        assert result["rows"][0]["roc_auc"] == pytest.approx(expected["roc_auc"])
        noisy = compute_metrics(predict_logits(model, degrade(chosen.images, "noise sigma 10", seed)), chosen.labels)
        assert result["rows"][1]["roc_auc"] == pytest.approx(noisy["roc_auc"])


def test_figures_without_leaked_leave_out_exactly_the_test_images_also_in_train(tmp_path):
    """Three test images are copies of training images (two byte-identical, one re-encoded as PNG: the same
    pixels, other bytes); the "without leaked" figures are those of the rest, with and without --limit."""
    import io

    import torch
    from PIL import Image

    from cifake.data import load_dataset
    from cifake.metrics import compute_metrics
    from cifake.models import create_model, load_model, save_model
    from cifake.models.inference import predict_logits
    from conftest import tree_files, write_tree

    files = tree_files({"train": 12, "test": 8})
    files["test/FAKE/copy.jpg"] = files["train/FAKE/1.jpg"]
    files["test/REAL/copy.jpg"] = files["train/REAL/1 (2).jpg"]
    recoded = io.BytesIO()
    Image.open(io.BytesIO(files["train/FAKE/0 (5).jpg"])).save(recoded, "PNG")
    files["test/FAKE/recoded.png"] = recoded.getvalue()
    leaked = {"test/FAKE/copy.jpg", "test/REAL/copy.jpg", "test/FAKE/recoded.png"}
    source = write_tree(tmp_path / "leaky", files)
    torch.manual_seed(0)
    model = load_model(save_model(create_model("paper"), tmp_path / "run"))[0]
    test = load_dataset(source, progress=False)["test"]
    for limit in (None, 8):
        options = ("--limit", limit) if limit else ()
        result = json.loads(cli("robustness", tmp_path / "run", "--data", source, "--condition", "clean",
                                "--condition", "noise sigma 5", "--seed", 3, *options, "--json", "-q").stdout)
        chosen = test.limit(limit, 3)
        keep = ~np.isin(chosen.names, list(leaked))
        assert result["without_leaked"] == keep.sum() and (limit or keep.sum() == len(test) - 3)
        for row, pixels in zip(result["rows"], (chosen.images, degrade(chosen.images, "noise sigma 5", 3))):
            expected = compute_metrics(predict_logits(model, pixels)[keep], chosen.labels[keep])
            assert row["accuracy_without_leaked"] == pytest.approx(expected["accuracy"])
            assert row["roc_auc_without_leaked"] == pytest.approx(expected["roc_auc"])
            assert row["recall_fake_without_leaked"] == pytest.approx(expected["fake_recall"])
