"""The domain check: OUT_OF_DOMAIN for images unlike a model's training data (cifake.calibration.domain), fitted by
`cifake calibrate`, saved with the model, and reported by predict, the API, serve and explain."""

from __future__ import annotations

import csv
import io
import json
import shutil

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from cifake import Detector
from cifake.calibration import OUT_OF_DOMAIN
from cifake.calibration.domain import SIZE_TOLERANCE, DomainCheck
from cifake.runfolder import RunFolder
from conftest import cli, flat, jpeg_bytes, synthetic_image


def _clustered(rng, centres: np.ndarray, n: int, spread: float = 0.15) -> tuple[np.ndarray, np.ndarray]:
    """(unit vectors scattered around the given centres (rows), the index of each one's centre)."""
    which = rng.integers(len(centres), size=n)
    vectors = centres[which] + spread * rng.normal(size=(n, centres.shape[1])) / np.sqrt(centres.shape[1])
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32), which


@pytest.fixture(scope="module")
def features():
    """Training features and labels, validation and outside features: two labels around three directions in 32
    dimensions inside, a fourth direction outside."""
    rng = np.random.default_rng(0)
    basis = np.linalg.qr(rng.normal(size=(32, 32)))[0]
    train, centre = _clustered(rng, basis[:3], 600)
    val, outside = _clustered(rng, basis[:3], 400)[0], _clustered(rng, basis[3:4], 100)[0]
    return train, (centre == 0).astype(np.uint8), val, outside


def test_the_score_separates_a_different_set_and_the_threshold_holds_its_validation_share(features):
    train, labels, val, outside = features
    check = DomainCheck.fit(train, labels, val, sides=None, max_flagged=0.05)
    flagged_val = (check.scores(val) > 1).mean()
    assert flagged_val <= 0.05 and flagged_val >= 0.04  # the quantile sits at the share asked for, not far below
    assert (check.scores(outside) > 1).all()
    assert check.means.shape == (2, 32) and check.precision.shape == (32, 32) and check.training_images == 600
    strict = DomainCheck.fit(train, labels, val, sides=None, max_flagged=0.01)
    assert strict.threshold > check.threshold and (strict.scores(val) > 1).mean() <= 0.01


def test_the_distance_is_the_mahalanobis_distance_to_the_nearer_class_mean(features):
    """Against a float64 computation written out: class means, their pooled covariance shrunk towards its mean
    variance, and the quadratic form of each query, the smaller of the two."""
    train, labels, val, outside = features
    check = DomainCheck.fit(train, labels, val, sides=None, shrink=0.01)
    x = train.astype(np.float64)
    means = [x[labels == c].mean(0) for c in (0, 1)]
    pooled = np.concatenate([x[labels == c] - means[c] for c in (0, 1)])
    covariance = pooled.T @ pooled / len(pooled)
    covariance += 0.01 * np.trace(covariance) / 32 * np.eye(32)
    queries = np.concatenate([val[:20], outside[:20]]).astype(np.float64)
    expected = np.min([np.einsum("nd,nd->n", queries - m, np.linalg.solve(covariance, (queries - m).T).T)
                       for m in means], axis=0)
    assert np.allclose(check.distances(queries), expected, rtol=1e-4)
    assert np.allclose(check.scores(queries), expected / check.threshold, rtol=1e-4)
    assert expected[20:].min() > expected[:20].max()  # the outside queries are the far ones


def test_a_saved_check_loads_and_scores_exactly_as_fitted(features, tmp_path):
    train, labels, val, outside = features
    check = DomainCheck.fit(train, labels, val, sides=(32, 48))
    folder = RunFolder(tmp_path)
    folder.write_domain(check.tensors())
    assert check.to_config() == {"method": "mahalanobis-penultimate", "threshold": check.threshold,
                                 "features": train.shape[1], "training_images": 600, "max_flagged": 0.01,
                                 "sides": [32, 48], "size_tolerance": SIZE_TOLERANCE}  # what config.json records
    loaded = DomainCheck.from_saved(json.loads(json.dumps(check.to_config())), folder.read_domain())
    assert np.array_equal(loaded.scores(outside), check.scores(outside))
    assert np.array_equal(loaded.scores(val), check.scores(val))
    assert loaded.sides == (32, 48) and loaded.threshold == check.threshold
    assert loaded.training_images == check.training_images == 600 and loaded.max_flagged == check.max_flagged
    older = {key: value for key, value in check.to_config().items() if key != "training_images"}
    assert DomainCheck.from_saved(older, folder.read_domain()).training_images == 0  # a record without the count
    with pytest.raises(ValueError, match="invalid domain check"):
        DomainCheck.from_saved({"max_flagged": 0.01}, folder.read_domain())


def test_fitting_refuses_too_little_data_and_impossible_shares(features):
    train, labels, val, _ = features
    with pytest.raises(ValueError, match="more than 8 training images for 32 features"):
        DomainCheck.fit(train[:8], labels[:8], val, sides=None)
    with pytest.raises(ValueError, match="at least 1 validation"):
        DomainCheck.fit(train, labels, val[:0], sides=None)
    for share in (0, 1, 1.5, -0.1):  # flagging none or all of the validation images sets no threshold
        with pytest.raises(ValueError, match="between 0 and 1"):
            DomainCheck.fit(train, labels, val, sides=None, max_flagged=share)


@pytest.mark.parametrize(("count", "share", "rank"), [(10, 0.15, 8), (7, 0.2, 5), (3, 0.5, 1)])
def test_the_threshold_is_the_validation_distance_that_leaves_at_most_the_share_outside(features, count, share,
                                                                                         rank):
    """With few validation images the threshold is one of their distances, the one at the rank computed by hand
    (ceil((count - 1) * (1 - share))), not a value interpolated between two: at most `share` of them score above 1."""
    train, labels, val, _ = features
    check = DomainCheck.fit(train, labels, val[:count], sides=None, max_flagged=share)
    distances = np.sort(check.distances(val[:count]))
    assert check.threshold == pytest.approx(distances[rank], rel=1e-6)
    assert (check.scores(val[:count]) > 1 + 1e-6).sum() <= int(share * count)


def test_a_validation_set_at_the_class_means_gives_a_tiny_positive_threshold(features):
    """Validation images lying on the class means are at distance 0: the threshold's floor keeps scores finite, and
    an image only a little off the means is already outside."""
    train, labels, _, _ = features
    means = np.stack([train[labels == label].mean(0) for label in (0, 1)])
    check = DomainCheck.fit(train, labels, means, sides=None, max_flagged=0.5)
    assert 0 < check.threshold < 1e-3
    nudged = means[:1] + 0.01 * np.linalg.norm(means[0]) / np.sqrt(means.shape[1])
    assert np.isfinite(check.scores(means)).all() and check.scores(nudged)[0] > 1


def test_a_check_fitted_on_one_label_alone_measures_the_distance_to_its_mean(features):
    """Real photographs alone make a valid domain: one class mean, the covariance around it."""
    train, labels, val, outside = features
    real, fake = train[labels == 1], train[labels == 0]
    check = DomainCheck.fit(real[:150], np.ones(150), real[150:], sides=None)
    assert check.means.shape == (1, 32) and np.allclose(check.means[0], real[:150].mean(0), atol=1e-6)
    assert (check.scores(outside) > 1).all() and (check.scores(fake) > 1).all()  # other directions are outside


@pytest.mark.parametrize("extra", [-1, 0])
def test_features_no_wider_than_the_limit_are_all_kept(extra):
    from cifake.calibration.domain import MAX_FEATURES

    rng = np.random.default_rng(2)
    width = MAX_FEATURES + extra
    check = DomainCheck.fit(rng.normal(size=(width // 2, width)), rng.integers(2, size=width // 2),
                            rng.normal(size=(20, width)), sides=None)
    assert check.columns is None and check.precision.shape == (width, width)


@pytest.mark.parametrize(("sides", "size", "outside"), [
    ((32, 32), (32, 32), False), ((32, 32), (40, 40), False), ((32, 32), (41, 32), True),
    ((32, 32), (26, 26), False), ((32, 32), (25, 25), True), ((32, 32), (512, 512), True),
    ((512, 1024), (600, 800), False), ((512, 1024), (410, 700), False), ((512, 1024), (409, 700), True),
    ((512, 1024), (4000, 3000), True), (None, (4000, 3000), False),
    ((40, 64), (32, 32), False), ((40, 64), (31, 64), True)])  # 32 x 1.25 is 40 exactly: at the edge, inside
def test_a_native_size_is_outside_beyond_the_training_range_and_its_tolerance(features, sides, size, outside):
    train, labels, val, _ = features
    check = DomainCheck.fit(train, labels, val, sides=sides)
    assert check.size_outside(*size) is outside
    assert check.describe_size() == {(32, 32): "32 px", (512, 1024): "512-1024 px", (40, 64): "40-64 px",
                                     None: "not checked"}[sides]
    assert SIZE_TOLERANCE == 1.25  # the cases above sit at the edges of this factor, the one the docs state


def test_native_sizes_come_from_the_header_and_the_sides_from_the_named_files_alone(tmp_path):
    """The check's size range is the smallest and largest side among the training files (JPEG or PNG, read
    from headers); files outside the names given do not count, unreadable ones are skipped, none readable is an
    error naming the source."""
    from cifake.data.sizes import file_sides, native_size

    def png(width: int, height: int) -> bytes:
        buffer = io.BytesIO()
        Image.new("RGB", (width, height), (9, 99, 199)).save(buffer, "PNG")
        return buffer.getvalue()

    wide = jpeg_bytes(np.zeros((24, 40, 3), np.uint8))
    assert native_size(wide) == (40, 24) and native_size(png(17, 31)) == (17, 31)
    assert native_size(b"\xff\xd8 not a jpeg") is None and native_size(b"GIF89a") is None
    files = {"train/REAL/a.jpg": wide, "train/FAKE/b.png": png(33, 50), "train/FAKE/broken.jpg": b"\xff\xd8 no",
             "test/REAL/huge.png": png(300, 20)}
    for name, data in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(data)
    train = np.array(["train/REAL/a.jpg", "train/FAKE/b.png", "train/FAKE/broken.jpg"])
    assert file_sides(tmp_path, train) == (24, 50)  # test/REAL/huge.png is not a training file
    assert file_sides(tmp_path, train[:2], count=1, seed=3) in {(24, 40), (33, 50)}  # a sample of one
    with pytest.raises(ValueError, match="no readable image among the 1 sampled"):
        file_sides(tmp_path, np.array(["train/FAKE/broken.jpg"]))


# --- a trained model with its check: calibrate, predict, the API, serve, explain ---

def _noise(seed: int, size: int = 32) -> np.ndarray:
    """Images no training image resembles: uniform colour noise, where the training images are smooth gradients."""
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def checked_run(learnable_zip, tmp_path_factory):
    """A small residual CNN (with test-time flips) trained briefly on the learnable set and calibrated by the
    command, with its domain check."""
    from cifake.data import load_dataset
    from cifake.models.resnet import ResNetTopology
    from cifake.training.config import TrainConfig
    from cifake.training.split import Split
    from cifake.workflows.experiment import train_run

    root = tmp_path_factory.mktemp("domain")
    data = load_dataset(learnable_zip, cache_root=root / "cache", progress=False)
    train_run(data, root / "run", ResNetTopology(widths=(8, 16, 32), high_pass=False), TrainConfig(epochs=2),
              Split(0.2), progress=False, plots=False)
    report = json.loads(cli("calibrate", root / "run", "--data", learnable_zip, "--max-out-of-domain", "0.02",
                            "--json", "-q").stdout)
    return root / "run", report


def test_calibrate_fits_the_check_on_training_data_and_stores_it_with_the_model(checked_run):
    run, report = checked_run
    config = RunFolder(run).read_config()
    assert config["domain"]["max_flagged"] == 0.02 and config["domain"]["sides"] == [32, 32]
    assert config["domain"]["threshold"] == report["domain"]["threshold"] > 0
    assert RunFolder(run).domain.is_file()
    assert 0 <= report["domain"]["test_flagged"] <= 0.1  # test images are like the training images
    assert report["domain"]["test_accuracy_when_decided"] > 0.8


def test_predict_says_out_of_domain_for_unlike_images_and_still_gives_p_fake(checked_run, tmp_path):
    run, _ = checked_run
    detector = Detector.load(run, backend="torch")
    inside = detector.predict([synthetic_image(label, 1000 + i) for i in range(20) for label in (0, 1)])
    noise = detector.predict([_noise(i) for i in range(20)])
    assert sum(p.in_domain for p in inside) >= 36  # 40 test-like images: at most a few flagged
    assert all(p.verdict == OUT_OF_DOMAIN and p.in_domain is False and p.domain_score > 1 for p in noise)
    assert all(p.verdict != OUT_OF_DOMAIN for p in inside if p.in_domain)
    assert all(0 <= p.prob_fake <= 1 for p in noise)  # the probability is still given
    enlarged = Image.fromarray(synthetic_image(1, 1003)).resize((200, 200), Image.Resampling.BILINEAR)
    path = tmp_path / "large.png"
    enlarged.save(path)
    (large,) = detector.predict([path])
    assert large.verdict == OUT_OF_DOMAIN and large.in_domain is False  # a size no training file had


def test_both_backends_give_the_same_domain_scores(checked_run):
    pytest.importorskip("onnxruntime")
    run, _ = checked_run
    items = [synthetic_image(1, 1001), _noise(3), jpeg_bytes(synthetic_image(0, 1002))]
    torch_scores = [p.domain_score for p in Detector.load(run, backend="torch").predict(items)]
    onnx_scores = [p.domain_score for p in Detector.load(run, backend="onnx").predict(items)]
    assert np.allclose(torch_scores, onnx_scores, atol=1e-3)


def test_a_bad_input_among_good_ones_keeps_every_judgement_in_place(checked_run):
    run, _ = checked_run
    detector = Detector.load(run, backend="torch")
    results = detector.predict([_noise(1), b"not an image", synthetic_image(1, 1004)])
    assert results[0].verdict == OUT_OF_DOMAIN
    assert results[1].error and results[1].verdict is None and results[1].in_domain is None
    alone = detector.predict([synthetic_image(1, 1004)])[0]
    assert results[2].domain_score == pytest.approx(alone.domain_score, abs=1e-4)  # batch size: float noise only
    assert results[2].verdict == alone.verdict


def test_a_model_calibrated_without_a_check_behaves_as_before(checked_run, learnable_zip, tmp_path):
    run, _ = checked_run
    plain = tmp_path / "plain"
    shutil.copytree(run, plain, ignore=shutil.ignore_patterns("*.onnx"))
    cli("calibrate", plain, "--data", learnable_zip, "--no-domain-check", "-q")  # the earlier check goes too
    assert "domain" not in RunFolder(plain).read_config() and not RunFolder(plain).domain.exists()
    detector = Detector.load(plain, backend="torch")
    assert detector.domain is None
    for result in detector.predict([_noise(2), synthetic_image(0, 1005)]):
        assert result.verdict in ("REAL", "FAKE", "UNSURE") and result.domain_score is None and result.in_domain is None
    table = cli("predict", tmp_path, "--model", plain, check=False).stdout
    assert "domain" not in table


def test_a_check_whose_features_file_is_missing_or_damaged_is_named(checked_run, tmp_path):
    run, _ = checked_run
    broken = tmp_path / "broken"
    shutil.copytree(run, broken)
    (broken / "domain.safetensors").write_bytes(b"garbage")
    with pytest.raises(ValueError, match=r"domain\.safetensors: unreadable"):
        Detector.load(broken, backend="torch")
    (broken / "domain.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match=r"domain\.safetensors: missing"):
        Detector.load(broken, backend="torch")


def test_the_cli_reports_the_domain_in_table_json_and_csv(checked_run, tmp_path):
    run, _ = checked_run
    Image.fromarray(_noise(5)).save(tmp_path / "noise.png")
    Image.fromarray(synthetic_image(1, 1006)).save(tmp_path / "photo.png")
    rows = [json.loads(line) for line in cli("predict", tmp_path, "--model", run, "--json").stdout.splitlines()]
    by_name = {row["path"].rsplit("/", 1)[-1]: row for row in rows}
    assert by_name["noise.png"]["verdict"] == OUT_OF_DOMAIN and by_name["noise.png"]["in_domain"] is False
    assert by_name["noise.png"]["domain_score"] > 1 and by_name["photo.png"]["in_domain"] is True
    table = list(csv.DictReader(io.StringIO(cli("predict", tmp_path, "--model", run, "--csv").stdout)))
    assert {row["in_domain"] for row in table} == {"True", "False"} and all(row["domain_score"] for row in table)
    text = flat(cli("predict", tmp_path, "--model", run).stdout)
    assert "domain" in text and "OUT_OF_DOMAIN: unlike every image the model was trained on" in text


def test_serve_reports_the_domain_and_counts_out_of_domain_verdicts(checked_run):
    from cifake.serve.app import create_app
    from cifake.serve.limits import Limits

    run, _ = checked_run
    client = TestClient(create_app(Detector.load(run, backend="torch"), Limits()))
    files = [("files", ("noise.png", _png(_noise(7)), "image/png")),
             ("files", ("photo.png", _png(synthetic_image(0, 1007)), "image/png"))]
    results = client.post("/v1/predict", files=files).json()["results"]
    assert results[0]["verdict"] == OUT_OF_DOMAIN and results[0]["in_domain"] is False
    assert results[1]["in_domain"] is True and results[1]["domain_score"] <= 1
    metrics = client.get("/metrics").text
    assert 'cifake_verdicts_total{verdict="OUT_OF_DOMAIN"} 1.0' in metrics


def test_explain_records_the_domain_beside_each_overlay(checked_run, tmp_path):
    run, _ = checked_run
    Image.fromarray(_noise(9)).save(tmp_path / "noise.png")
    cli("explain", run, tmp_path / "noise.png", "--out", tmp_path / "out")
    (result,) = json.loads((tmp_path / "out" / "explanations.json").read_text())["results"]
    assert result["verdict"] == OUT_OF_DOMAIN and result["in_domain"] is False and result["domain_score"] > 1


def test_an_overlay_explains_the_label_asked_for_and_calls_an_out_of_domain_verdict_a_guess(checked_run,
                                                                                          monkeypatch):
    run, _ = checked_run
    detector = Detector.load(run, backend="torch")
    drawn = []
    monkeypatch.setattr("cifake.explain.figures.overlay_figure",
                        lambda pixels, heatmap, title, out: drawn.append((heatmap, title)))
    photo, noise = synthetic_image(1, 1000), _noise(3)
    for item, target in [(item, target) for item in (photo, noise) for target in ("FAKE", "REAL")]:
        (expected,) = detector.explanations([item], target)
        detector.overlay_png(item, target)
        heatmap, title = drawn.pop()
        assert np.array_equal(heatmap, expected.heatmap) and expected.map_for == target
        p = expected.prediction
        guess = " (a guess)" if item is noise else ""
        assert p.in_domain is (item is photo) and title == f"{p.verdict}: P(FAKE) = {p.prob_fake:.3f}{guess}"


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def test_wide_features_keep_a_seeded_subset_of_columns_saved_with_the_check(tmp_path):
    from cifake.calibration.domain import MAX_FEATURES

    rng = np.random.default_rng(1)
    train, val = rng.normal(size=(2000, MAX_FEATURES + 500)), rng.normal(size=(200, MAX_FEATURES + 500))
    check = DomainCheck.fit(train, rng.integers(2, size=2000), val, sides=None)
    assert check.precision.shape == (MAX_FEATURES, MAX_FEATURES) and len(set(check.columns)) == MAX_FEATURES
    again = DomainCheck.fit(train, rng.integers(2, size=2000), val, sides=None)
    assert np.array_equal(again.columns, check.columns)  # seeded: the same columns on every fit of that width
    far = val + 3.0 * rng.normal(size=val.shape)
    assert (check.scores(far) > 1).mean() > 0.9
    folder = RunFolder(tmp_path)
    folder.write_domain(check.tensors())
    loaded = DomainCheck.from_saved(check.to_config(), folder.read_domain())
    assert np.array_equal(loaded.columns, check.columns) and np.array_equal(loaded.scores(far), check.scores(far))
