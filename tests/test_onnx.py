"""ONNX export, the onnxruntime path of the Detector, and parity with torch."""

import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from cifake import Detector
from cifake.models import load_model
from cifake.models.export import OnnxRunner, export_onnx, weights_digest
from cifake.models.inference import predict_embeddings, predict_logits, sigmoid
from cifake.predict import bundled_model_dir
from cifake.runfolder import RunFolder
from conftest import cli, synthetic_image


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("run")
    for name in ("model.safetensors", "config.json", "domain.safetensors"):
        shutil.copy(bundled_model_dir() / name, folder / name)
    return folder


def test_exported_graph_matches_torch_at_any_batch_size(run):
    path = export_onnx(run, run / "exported.onnx")
    runner = OnnxRunner(path, threads=1)
    assert runner.metadata["cifake_weights_sha256"] == weights_digest(run)
    model, _ = load_model(run)
    images = np.stack([synthetic_image(n % 2, n) for n in range(300)])
    expected = predict_logits(model, images)
    for batch in (1, 7, 300):
        assert np.abs(runner(images, batch) - expected).max() < 1e-4
    logits, features = runner.embed(images, 64)  # the domain check's features come out of the same graph
    torch_logits, torch_features = predict_embeddings(model, images)
    assert np.abs(logits - expected).max() < 1e-4 and np.abs(features - torch_features).max() < 1e-4
    assert np.allclose(np.linalg.norm(features, axis=1), 1, atol=1e-5)


def test_detector_uses_a_matching_onnx_file_and_ignores_a_stale_one(run, tmp_path, monkeypatch):
    monkeypatch.setenv("CIFAKE_CACHE", str(tmp_path / "cache"))
    export_onnx(run, run / RunFolder.ONNX)
    images = [synthetic_image(n % 2, n) for n in range(20)]
    by_torch = Detector.load(run, backend="torch")
    by_onnx = Detector.load(run, backend="onnx")
    assert by_torch.backend == "torch" and by_onnx.backend == "onnx" and by_onnx.onnx.path == run / RunFolder.ONNX
    a = np.array([p.prob_fake for p in by_torch.predict(images)])
    b = np.array([p.prob_fake for p in by_onnx.predict(images)])
    assert np.abs(a - b).max() < 1e-5
    stale = tmp_path / "stale"  # other weights next to the old model.onnx: that graph must not be used
    shutil.copytree(run, stale)
    weights = load_file(stale / "model.safetensors")
    output_bias = [key for key in weights if ".head." in f".{key}" and key.endswith("bias")][-1]
    weights[output_bias] = weights[output_bias] + 1.0  # shifts the output logit
    save_file(weights, stale / "model.safetensors")
    fresh = Detector.load(stale, backend="onnx")
    assert fresh.onnx.path.parent == tmp_path / "cache" / "onnx"
    expected = np.array([p.prob_fake for p in Detector.load(stale, backend="torch").predict(images)])
    assert np.abs(np.array([p.prob_fake for p in fresh.predict(images)]) - expected).max() < 1e-5
    assert np.abs(expected - a).max() > 1e-3
    broken = tmp_path / "broken"
    shutil.copytree(run, broken)
    (broken / RunFolder.ONNX).write_bytes(b"not an onnx graph")
    assert Detector.load(broken, backend="onnx").onnx.path.parent == tmp_path / "cache" / "onnx"
    with pytest.raises(ValueError, match="backend"):
        Detector.load(run, backend="tpu")


def test_export_command_writes_a_graph_with_the_models_logits(run, tmp_path):
    out = tmp_path / "m.onnx"
    proc = cli("export", run, "--onnx", out)
    assert "Wrote" in proc.stdout and str(out) in proc.stdout
    images = np.stack([synthetic_image(n % 2, n) for n in range(50)])
    model, _ = load_model(run)
    assert np.abs(OnnxRunner(out, threads=1)(images) - predict_logits(model, images)).max() < 1e-4
    bad = cli("export", tmp_path / "missing", "--onnx", out, check=False)
    assert bad.returncode == 2 and "missing" in bad.stderr


@pytest.mark.integration
@pytest.mark.xdist_group("real_data")
def test_onnx_parity_on_1000_real_test_images(real_data, run):
    test = real_data["test"].limit(500, seed=1)
    model, _ = load_model(run)
    runner = OnnxRunner(export_onnx(run, run / "parity.onnx"))
    difference = np.abs(sigmoid(predict_logits(model, test.images)) - sigmoid(runner(test.images)))
    assert len(test) == 1000 and difference.max() < 1e-4


def test_residual_model_exports_with_its_test_time_flips(tmp_path):
    from cifake.models import ResNetTopology, create_model, save_model

    torch.manual_seed(0)
    model = create_model(ResNetTopology(widths=(8, 16), blocks=1))
    model.train()
    model(torch.rand(16, 3, 32, 32) * 255)  # batch-norm statistics away from their start
    save_model(model.eval(), tmp_path)
    runner = OnnxRunner(export_onnx(tmp_path))
    images = np.stack([synthetic_image(n % 2, n) for n in range(40)])
    loaded, _ = load_model(tmp_path)
    assert np.abs(runner(images) - predict_logits(loaded, images)).max() < 1e-4
    assert np.abs(runner(images) - runner(images[:, :, ::-1].copy())).max() < 1e-4  # flip-averaged in the graph


def test_without_onnxruntime_auto_scores_with_torch_and_onnx_says_what_to_install(run, tmp_path, monkeypatch):
    import sys

    from cifake.predict import backend as detector_module

    monkeypatch.setenv("CIFAKE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # an import of it now fails
    assert Detector.load(run).backend == "torch"
    with pytest.raises(ValueError, match=r"pip install 'cifake\[onnx\]'"):
        Detector.load(run, backend="onnx")
    monkeypatch.undo()
    monkeypatch.setenv("CIFAKE_CACHE", str(tmp_path / "cache"))
    copy = tmp_path / "copy"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("*.onnx"))

    def failing_export(*args, **kwargs):
        raise RuntimeError("exporter broke")

    monkeypatch.setattr(detector_module, "export_onnx", failing_export)
    assert Detector.load(copy).backend == "torch"  # auto: torch gives the same scores
    with pytest.raises(ValueError, match="could not run the model on onnxruntime .exporter broke"):
        Detector.load(copy, backend="onnx")


def test_a_fresh_export_is_cached_by_weights_and_reused(run, tmp_path, monkeypatch):
    monkeypatch.setenv("CIFAKE_CACHE", str(tmp_path / "cache"))
    copy = tmp_path / "copy"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("*.onnx"))
    first = Detector.load(copy, backend="onnx")
    cached = tmp_path / "cache" / "onnx" / f"{weights_digest(copy)}.onnx"
    assert first.onnx.path == cached and cached.is_file()
    written = cached.stat().st_mtime_ns
    again = Detector.load(copy, backend="onnx")
    assert again.onnx.path == cached and cached.stat().st_mtime_ns == written  # not exported twice
    assert again.model_id == first.model_id == f"copy-{first.model.topology.name}-{weights_digest(copy)[:12]}"


def test_a_detectors_batch_size_bounds_the_batches_either_backend_runs(run, tmp_path, monkeypatch):
    """20 images at batch size 7 run as batches of 7, 7 and 6, on torch and on onnxruntime alike, for the logits
    and for the predictions (whose features come from the same pass)."""
    monkeypatch.setenv("CIFAKE_CACHE", str(tmp_path / "cache"))
    images = np.stack([synthetic_image(n % 2, n) for n in range(20)])
    by_torch = Detector.load(run, backend="torch", batch_size=7)
    seen: list[int] = []
    first_conv = next(m for m in by_torch.model.modules() if isinstance(m, torch.nn.Conv2d))  # on either pass
    hook = first_conv.register_forward_pre_hook(lambda module, args: seen.append(len(args[0])))
    try:
        by_torch.logits(images)
        by_torch.predict(list(images))
    finally:
        hook.remove()
    assert seen == [7, 7, 6] * 2
    by_onnx = Detector.load(run, backend="onnx", batch_size=7)
    session, fed = by_onnx.onnx.session, []

    class Recording:  # onnxruntime's session is a C++ object: record the batches it is fed through a stand-in
        def run(self, outputs, feeds):
            fed.append(len(feeds["pixels"]))
            return session.run(outputs, feeds)

    monkeypatch.setattr(by_onnx.onnx, "session", Recording())
    by_onnx.logits(images)
    by_onnx.predict(list(images))
    assert fed == [7, 7, 6] * 2
