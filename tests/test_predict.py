"""The Detector API and `cifake predict`, on the bundled model and on the bad-input corpus."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bad_inputs import corpus
from cifake import Detector
from cifake.predict import bundled_model_dir, expand_paths
from conftest import REPO, cli, jpeg_bytes, synthetic_image


@pytest.fixture(scope="module")
def detector():
    return Detector.load()


@pytest.fixture(scope="module")
def unchecked(tmp_path_factory) -> Path:
    """The bundled model without its domain check: the tests of verdict rules on synthetic images, which the
    check calls OUT_OF_DOMAIN (tests/test_domain.py tests the check)."""
    folder = tmp_path_factory.mktemp("unchecked")
    for name in ("model.safetensors", "model.onnx"):
        shutil.copy(bundled_model_dir() / name, folder / name)
    config = json.loads((bundled_model_dir() / "config.json").read_text())
    del config["domain"]
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus")
    for name, (data, _) in corpus().items():
        (folder / name).write_bytes(data)
    return folder


def test_bundled_model_is_small_and_carded():
    folder = bundled_model_dir()
    assert (folder / "model.safetensors").stat().st_size < 10_000_000
    card = (folder / "MODEL_CARD.md").read_text()
    assert "REAL = 1 is the positive class" in card and "Limits" in card and "Intended use" in card


def test_every_kind_of_input_gives_the_same_score(detector, tmp_path):
    pixels = synthetic_image(0, 5)
    data = jpeg_bytes(pixels)
    path = tmp_path / "x.jpg"
    path.write_bytes(data)
    decoded = np.asarray(Image.open(path).convert("RGB"))
    results = detector.predict([path, str(path), data, Image.open(path), decoded])
    assert len({r.prob_fake for r in results}) == 1 and results[0].error is None
    assert results[0].source == str(path) and results[2].source == "<input 2>"
    assert results[0].verdict == (detector.decision.verdict(results[0].prob_fake) if results[0].in_domain
                                  else "OUT_OF_DOMAIN")
    assert len({(r.domain_score, r.in_domain) for r in results}) == 1
    assert results[0].model_id.startswith(f"bundled-{detector.model.topology.name}-")
    # a resize model resizes any input, even one smaller than its size: `upscaled` is a crop model's flag
    tiny = detector.predict([np.full((8, 8, 3), 90, np.uint8)])[0]
    assert detector.preprocess.mode == "resize" and not tiny.upscaled and not any(r.upscaled for r in results)


def test_threshold_decides_the_verdict(unchecked):
    detector = Detector.load(unchecked)
    image = synthetic_image(1, 9)
    p = detector.predict([image])[0].prob_fake
    assert detector.predict([image], threshold=p)[0].verdict == "FAKE"
    assert detector.predict([image], threshold=min(1.0, p + 1e-6))[0].verdict == "REAL"
    with pytest.raises(ValueError, match="threshold"):
        detector.predict([image], threshold=1.5)


def test_bad_inputs_are_reported_and_never_stop_the_batch(detector, corpus_dir):
    expected = corpus()
    results = {r.source.split("/")[-1]: r for r in detector.predict(sorted(corpus_dir.iterdir()))}
    assert set(results) == set(expected)
    for name, (_, problem) in expected.items():
        if problem is None:
            assert results[name].error is None and 0 <= results[name].prob_fake <= 1, name
        else:
            assert problem in results[name].error and results[name].prob_fake is None, name
            assert results[name].verdict is None and not results[name].upscaled, name
    # a failed input's row still names the model and its decision, as in a CSV of the whole batch
    good = results[next(name for name, (_, problem) in expected.items() if problem is None)]
    assert {(r.threshold, r.real_below, r.model_id) for r in results.values()} == {
        (good.threshold, good.real_below, good.model_id)}
    odd = detector.predict([np.zeros((5, 5, 2), np.uint8), 42, tmp := "/nonexistent/file.jpg"])
    assert "array must be uint8" in odd[0].error and "cannot read a int" in odd[1].error
    assert odd[2].source == tmp and odd[2].error == "unreadable file (No such file or directory)"


def test_explain_gives_a_map_per_good_input(detector):
    explained = detector.explain([synthetic_image(1, 1), b"junk"])
    assert explained[0][1].shape == (32, 32) and explained[1][1] is None and explained[1][0].error
    assert [prediction.source for prediction, _ in explained] == ["<input 0>", "<input 1>"]
    png = detector.overlay_png(synthetic_image(0, 2))
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and Image.open(__import__("io").BytesIO(png)).width >= 512


def test_expand_paths(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    for name in ("a/1.jpg", "a/b/2.PNG", "a/notes.txt", "c.jpg"):
        (tmp_path / name).write_bytes(b"x")
    assert [p.name for p in expand_paths([tmp_path / "a"])] == ["1.jpg", "2.PNG"]
    assert [p.name for p in expand_paths([str(tmp_path / "*.jpg")])] == ["c.jpg"]
    expanded = expand_paths([tmp_path / "a" / "notes.txt", tmp_path / "gone.jpg"])
    assert [p.name for p in expanded] == ["notes.txt", "gone.jpg"]


@pytest.mark.e2e
def test_predict_cli_on_the_bad_input_corpus(corpus_dir, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "cifake", "predict", str(corpus_dir), "--json", "--explain",
                           str(tmp_path / "overlays")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    expected = corpus()
    assert {r["path"].split("/")[-1] for r in rows} == {n for n, (_, problem) in expected.items() if problem is None}
    assert all(set(r) == {"path", "prob_fake", "verdict", "threshold", "real_below", "model_id", "upscaled",
                          "domain_score", "in_domain"}
               for r in rows)
    for name, (_, problem) in expected.items():
        if problem:
            assert any(line.endswith(f"{name}: " + line.split(f"{name}: ", 1)[-1]) and problem in line
                       for line in proc.stderr.splitlines()), name
    assert len(list((tmp_path / "overlays").glob("*_gradcam.png"))) == 4
    csv_out = subprocess.run([sys.executable, "-m", "cifake", "predict", str(corpus_dir / "good.jpg"), "--csv"],
                             capture_output=True, text=True, timeout=300)
    assert csv_out.returncode == 0
    assert csv_out.stdout.splitlines()[0] == ("path,prob_fake,verdict,threshold,real_below,model_id,upscaled,"
                                              "domain_score,in_domain")


def test_bundled_model_scores_on_onnxruntime_with_the_same_probabilities(detector):
    assert detector.backend == "onnx" and detector.onnx.path == bundled_model_dir() / "model.onnx"
    images = [synthetic_image(n % 2, n) for n in range(32)]
    by_torch = Detector.load(backend="torch")
    assert by_torch.backend == "torch"
    differences = [abs(a.prob_fake - b.prob_fake) for a, b in zip(detector.predict(images), by_torch.predict(images))]
    assert max(differences) < 1e-5


def test_more_inputs_than_one_chunk_each_get_their_own_score(detector):
    """Inputs are read and scored `chunk` at a time: past the first chunk, every result still belongs to its input."""
    images = [synthetic_image(n % 2, n) for n in range(300)]
    expected = detector.prob_fake(np.stack(images))
    for results in (detector.predict(images), list(detector.iter_predict(images, chunk=7))):
        assert len(results) == 300
        assert [r.source for r in results] == [f"<input {n}>" for n in range(300)]
        assert np.abs(np.array([r.prob_fake for r in results]) - expected).max() < 1e-6
    read = []
    results = detector.iter_predict(read.append(n) or image for n, image in enumerate(images))
    next(results)
    assert len(read) == 256  # the first result comes after one chunk of 256 is read, not the whole input


def test_predict_cli_threshold_and_backend(tmp_path, unchecked):
    images = tmp_path / "images"
    images.mkdir()
    for n in range(6):
        (images / f"{n}.jpg").write_bytes(jpeg_bytes(synthetic_image(n % 2, n)))
    run = lambda *args: [json.loads(line) for line in cli("predict", images, "--json", "--model", unchecked,
                                                          *args).stdout.splitlines()]
    onnx, torch_rows = run("--backend", "onnx"), run("--backend", "torch")
    assert [r["path"] for r in onnx] == [r["path"] for r in torch_rows] and len(onnx) == 6
    assert max(abs(a["prob_fake"] - b["prob_fake"]) for a, b in zip(onnx, torch_rows)) < 1e-5
    scores = sorted(r["prob_fake"] for r in onnx)
    cut = round((scores[2] + scores[3]) / 2, 6)  # between two scores (printed rounded): both verdicts occur
    for threshold in (0.0, cut):
        rows = run("--threshold", str(threshold))
        assert all(r["threshold"] == r["real_below"] == threshold for r in rows)
        assert [r["verdict"] for r in rows] == ["FAKE" if r["prob_fake"] >= threshold else "REAL" for r in rows]
    assert {r["verdict"] for r in run("--threshold", str(cut))} == {"REAL", "FAKE"}
    bad = cli("predict", images, "--backend", "tpu", check=False)
    assert bad.returncode == 2 and "backend" in bad.stderr


@pytest.mark.integration
@pytest.mark.xdist_group("real_data")
def test_bundled_metrics_are_what_the_bundled_model_scores_on_the_test_split(real_data):
    """The shipped metrics.json (and so the model card) recomputed on the official test split by the shipped ONNX
    graph, which scores twice as fast as torch here; test_onnx checks the graph against the weights."""
    from cifake.data.audit import leaked_mask
    from cifake.metrics import compute_metrics
    from cifake.models.export import OnnxRunner, weights_digest

    shipped = json.loads((bundled_model_dir() / "metrics.json").read_text())
    runner = OnnxRunner(bundled_model_dir() / "model.onnx")
    assert runner.metadata["cifake_weights_sha256"] == weights_digest(bundled_model_dir())  # this graph, these weights
    test = real_data["test"]
    logits = runner(test.images)
    keep = ~leaked_mask(real_data, "test")
    assert keep.sum() == len(test) - 378 == shipped["test_without_leaked"]["n"]
    for name, index in (("test", slice(None)), ("test_without_leaked", keep)):
        metrics = compute_metrics(logits[index], test.labels[index], test.classes[index])
        for key in ("n", "accuracy", "precision", "recall", "f1", "roc_auc"):
            assert metrics[key] == pytest.approx(shipped[name][key], abs=1e-4), (name, key)
    assert shipped["test"]["accuracy"] > 0.95


def test_bundled_generalisation_figures_are_what_the_bundled_model_scores_on_the_outside_photos(tmp_path):
    """The model card's false-accusation rate on real photographs from outside CIFAKE, recomputed from the weights
    on the same photographs (tools/outside_photos.py) under the clean condition."""
    pytest.importorskip("skimage", reason="the shipped figures were measured with scikit-image's photographs")
    shipped = json.loads((bundled_model_dir() / "metrics.json").read_text())["outside"]
    subprocess.run([sys.executable, REPO / "tools" / "outside_photos.py", tmp_path], check=True, capture_output=True)
    card = (bundled_model_dir() / "MODEL_CARD.md").read_text()
    for name, result in shipped.items():
        clean = next(row for row in result["rows"] if row["condition"] == "clean")
        scored = json.loads(cli("robustness", bundled_model_dir(), "--data", tmp_path / name, "--condition",
                                "clean", "--out", tmp_path / f"scored-{name}", "--json", "-q").stdout)
        assert scored["images"] == result["images"]
        assert scored["rows"][0]["accuracy"] == pytest.approx(clean["accuracy"], abs=1e-6), name
        assert f"at {1 - clean['accuracy']:.1%} clean" in card, name


def test_arrays_of_every_accepted_shape_and_their_refusals(detector):
    rgb = synthetic_image(1, 6, size=40)
    grey = rgb[..., 0].copy()
    rgba = np.concatenate([rgb, np.full((40, 40, 1), 255, np.uint8)], axis=2)
    expected_grey = np.asarray(Image.fromarray(grey).convert("RGB").resize((32, 32), Image.Resampling.BILINEAR))
    assert np.array_equal(detector.pixels(grey), expected_grey)
    assert np.array_equal(detector.pixels(grey[..., None]), expected_grey)
    assert np.array_equal(detector.pixels(rgba), detector.pixels(rgb))
    resized = np.asarray(Image.fromarray(rgb).resize((32, 32), Image.Resampling.BILINEAR))
    assert np.array_equal(detector.pixels(rgb), resized)
    for bad in (rgb.astype(np.float32), np.zeros((4, 4, 2), np.uint8), np.zeros((2, 4, 4, 3), np.uint8),
                np.zeros(5, np.uint8)):
        with pytest.raises(Exception, match="array must be uint8"):
            detector.pixels(bad)
    small = Detector(detector.model, detector.config, "small", max_pixels=100)
    assert "over the limit of 100 pixels" in small.predict([rgb])[0].error
    assert "over the limit of 100 pixels" in small.predict([Image.fromarray(rgb)])[0].error
    assert small.predict([jpeg_bytes(synthetic_image(1, 1, size=8))])[0].error is None  # 64 pixels: under it


def test_a_run_folder_detector_is_named_after_it_and_takes_options(tmp_path):
    import torch

    from cifake.models import create_model, save_model
    from cifake.models.export import weights_digest

    torch.manual_seed(0)
    run = save_model(create_model("paper"), tmp_path / "my-run")
    loaded = Detector.load(run, backend="torch", max_pixels=50, batch_size=7)
    assert loaded.model_id == f"my-run-{loaded.model.topology.name}-{weights_digest(run)[:12]}"
    assert loaded.max_pixels == 50 and loaded.batch_size == 7 and loaded.backend == "torch"
    assert "over the limit of 50 pixels" in loaded.predict([synthetic_image(1, 0)])[0].error


def test_explain_uses_the_layer_asked_for(detector):
    images = [synthetic_image(0, 3), synthetic_image(1, 4)]
    default = detector.explain(images)
    from cifake.explain.gradcam import conv_layer_names

    first = conv_layer_names(detector.model)[0]
    early = detector.explain(images, layer=first)
    assert any(not np.allclose(a[1], b[1]) for a, b in zip(default, early))


def test_predict_explain_decodes_each_image_once_and_overlays_show_the_printed_verdicts(tmp_path, monkeypatch,
                                                                                       unchecked):
    import cifake.predict.detector as detector_module

    images = tmp_path / "images"
    images.mkdir()
    for n in range(3):
        (images / f"{n}.jpg").write_bytes(jpeg_bytes(synthetic_image(n % 2, n)))
    decoded = []
    real_decode = detector_module.decode_for
    monkeypatch.setattr(detector_module, "decode_for",
                        lambda data, *options: decoded.append(1) or real_decode(data, *options))
    out = tmp_path / "overlays"
    printed = cli("predict", images, "--explain", out, "--threshold", "0", "--json", "--backend", "torch",
                  "--model", unchecked).stdout
    rows = [json.loads(line) for line in printed.splitlines()]
    assert len(decoded) == 3 and len(rows) == 3 and {r["verdict"] for r in rows} == {"FAKE"}  # threshold 0
    overlays = json.loads((out / "explanations.json").read_text())["results"]
    assert [(o["path"], o["verdict"]) for o in overlays] == [(r["path"], r["verdict"]) for r in rows]
    assert [o["prob_fake"] for o in overlays] == pytest.approx([r["prob_fake"] for r in rows], abs=1e-6)


def test_predict_imports_no_library_it_does_not_use(tmp_path):
    """`cifake predict`'s start-up counts in its files/s: torchmetrics (with scipy.signal and transformers),
    scikit-learn, captum and matplotlib load only with the commands that use them."""
    path = tmp_path / "x.jpg"
    path.write_bytes(jpeg_bytes(synthetic_image(0, 3)))
    script = ("import sys\nfrom cifake.cli import main\nsys.argv = ['cifake', 'predict', sys.argv[1], '--csv']\n"
              "try:\n    main()\nexcept SystemExit:\n    pass\n"
              "print(sorted(m for m in ('torchmetrics', 'sklearn', 'captum', 'matplotlib')\n"
              "           if m in sys.modules), file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True, check=True)
    assert done.stdout.startswith("path,prob_fake,verdict") and done.stderr.strip().endswith("[]"), done.stderr


def test_a_detector_scores_in_batches_of_64_on_every_core_unless_told():
    """The documented defaults (Detector.load, docs/detect.md): batches of 64, onnxruntime on every core this
    process may use; `threads` sets the count (e.g. cores / workers when several processes serve). An unknown
    backend is refused."""
    from cifake.data.dataset import available_cores

    def threads_of(detector):
        return detector.onnx.session.get_session_options().intra_op_num_threads

    default = Detector.load(backend="onnx")
    assert default.batch_size == 64 and threads_of(default) == available_cores()
    assert threads_of(Detector.load(backend="onnx", threads=1)) == 1
    with pytest.raises(ValueError, match=r"^backend must be one of auto, onnx, torch, not 'tpu'$"):
        Detector.load(backend="tpu")
