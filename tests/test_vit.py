"""The vision-transformer family (timm's VisionTransformer), its training settings, and the explanation methods
that go with it: Grad-CAM on the patch tokens, attention rollout, gradient-weighted rollout, Integrated Gradients."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from conftest import cli, flat, jpeg_bytes, synthetic_image
from torch import nn

from cifake.data.preprocess import Preprocess
from cifake.explain.analysis import rank_correlation
from cifake.explain.methods import METHODS, make_method
from cifake.explain.rollout import attention_maps
from cifake.models import ViTTopology, create_model, load_model, resolve_topology, save_model
from cifake.models.inference import predict_logits
from cifake.training.config import TrainConfig
from cifake.training.loop import learning_rate, make_optimizer

VIT_RECIPE = {"optimizer": "adamw", "learning_rate": 0.002, "weight_decay": 0.05, "schedule": "cosine",
              "warmup_epochs": 1, "flip": True, "batch_size": 32}


@pytest.mark.parametrize(("size", "patch", "depth", "width", "heads"),
                         [(16, 4, 1, 32, 1), (32, 2, 2, 64, 1), (32, 8, 1, 128, 2), (64, 8, 1, 192, 3),
                          (48, 16, 2, 32, 1)])
def test_the_family_builds_at_any_size_the_patch_divides(size, patch, depth, width, heads):
    name = f"vit-p{patch}-d{depth}-w{width}"
    topology = resolve_topology(name)
    assert topology == ViTTopology(patch=patch, depth=depth, width=width) and topology.name == name
    assert topology.heads == heads  # 64 numbers per head, at least one
    model = create_model(name, Preprocess(size)).eval()
    assert model.vit.patch_embed.num_patches == (size // patch) ** 2 and len(model.vit.blocks) == depth
    assert model.vit.blocks[0].attn.num_heads == heads
    logits = model(torch.rand(3, 3, size, size) * 255)
    assert logits.shape == (3,) and torch.isfinite(logits).all()


@pytest.mark.parametrize(("size", "patch", "channels"), [(16, 1, [128]), (32, 4, [32, 64, 128]),
                                                          (64, 8, [16, 32, 64, 128])])
def test_a_convolutional_stem_makes_one_token_per_patch_and_saves_exports_and_explains(size, patch, channels,
                                                                                         tmp_path):
    from cifake.models.export import OnnxRunner, export_onnx

    name = f"vit-p{patch}-d1-w128-conv"
    assert resolve_topology(name) == ViTTopology(patch, 1, 128, stem="conv") and resolve_topology(name).name == name
    model = create_model(name, Preprocess(size))
    convolutions = [m for m in model.vit.patch_embed.backbone if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convolutions] == channels  # doubling up to the width, 16 at least
    assert [c.stride[0] for c in convolutions] == [1] + [2] * (len(channels) - 1)  # full resolution first
    assert model.vit.patch_embed.grid_size == (size // patch, size // patch) and model.grid_side == size // patch
    model.train()(torch.rand(8, 3, size, size) * 255)  # moves the batch norms' running statistics off their start
    save_model(model.eval(), tmp_path / "run")
    loaded, _ = load_model(tmp_path / "run")
    images = np.stack([synthetic_image(n % 2, n, size) for n in range(4)])
    logits = predict_logits(model, images)
    assert np.array_equal(predict_logits(loaded, images), logits)
    assert np.abs(OnnxRunner(export_onnx(tmp_path / "run"))(images) - logits).max() < 1e-4
    for method in ("gradcam", "rollout"):
        assert make_method(method, loaded)(images)[0].shape == (4, size, size)
    with pytest.raises(ValueError, match="its patch must be a power of two, not 6"):
        resolve_topology("vit-p6-d1-w32-conv")


def test_a_patch_that_does_not_divide_the_image_is_a_clear_error(tmp_path, learnable_zip):
    with pytest.raises(ValueError, match="a patch of 5 px does not divide a 32 px image"):
        create_model("vit-p5-d1-w32")
    with pytest.raises(ValueError, match="a patch of 8 px does not divide a 36 px image"):
        create_model("vit-p8-d1-w32", Preprocess(36))
    proc = cli("train", "--data", learnable_zip, "--out", tmp_path / "run", "--topology", "vit-p3-d1-w32",
               "--epochs", "1", check=False)
    assert proc.returncode == 2 and "does not divide" in proc.stderr
    with pytest.raises(ValueError, match=r"unknown topology 'vit-p4-d1'.*vit-p\{patch\}-d\{depth\}-w\{width\}"):
        resolve_topology("vit-p4-d1")


def test_cosine_schedule_at_every_step_against_a_hand_computation():
    config = TrainConfig(schedule="cosine", learning_rate=0.01, warmup_epochs=2, epochs=5)
    per_epoch = 7
    warm, total = 14, 35
    for step in range(total + 2):
        if step < warm:
            expected = 0.01 * (step + 1) / warm
        else:
            progress = min(1.0, (step - warm) / (total - warm))  # 0 at the end of the warm-up, 1 at the last step
            expected = 0.01 * (1 + math.cos(math.pi * progress)) / 2
        assert learning_rate(config, step, per_epoch) == pytest.approx(expected, abs=1e-12), step
    assert learning_rate(config, warm, per_epoch) == pytest.approx(0.01)
    assert learning_rate(config, total, per_epoch) == 0.0


def test_weight_decay_spares_a_transformers_biases_norms_and_position_embedding():
    model = create_model("vit-p8-d1-w32")
    optimizer = make_optimizer(model, TrainConfig(optimizer="adamw", weight_decay=0.1), torch.device("cpu"))
    names = {id(p): n for n, p in model.named_parameters()}
    decayed, spared = ({names[id(p)] for p in g["params"]} for g in optimizer.param_groups)
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.1, 0.0]
    assert "vit.pos_embed" in spared and "vit.blocks.0.norm1.weight" in spared and "vit.head.bias" in spared
    assert "vit.blocks.0.attn.qkv.weight" in decayed and "vit.patch_embed.proj.weight" in decayed
    assert decayed | spared == set(names.values()) and not decayed & spared
    cnn = make_optimizer(create_model("resnet-s"), TrainConfig(optimizer="adamw", weight_decay=0.1),
                         torch.device("cpu"))
    assert len(cnn.param_groups) == 1  # the other families train the weights they always did


# the tests of the trained transformer share one worker, so it is trained once, not once per worker (24 s each)
on_vit_run = pytest.mark.xdist_group("vit_run")


@pytest.fixture(scope="session")  # a module's fixture is set up again when a worker's tests switch modules
def vit_run(learnable_zip, tmp_path_factory):
    """A small transformer trained by the command on the learnable set, with its recipe's settings."""
    root = tmp_path_factory.mktemp("vit")
    recipe = root / "vit.json"
    recipe.write_text(json.dumps({"topology": "vit-p4-d2-w64", "epochs": 4, **VIT_RECIPE}))
    record = json.loads(cli("train", "--data", learnable_zip, "--recipe", recipe, "--out", root / "run",
                            "--json", "--quiet").stdout)
    return root / "run", record


@on_vit_run
def test_it_trains_through_the_recipe_and_scores_like_any_family(vit_run, learnable_zip, tmp_path):
    from fastapi.testclient import TestClient

    from cifake.models.export import OnnxRunner, export_onnx
    from cifake.predict import Detector
    from cifake.serve.app import create_app
    from cifake.serve.limits import Limits

    run, record = vit_run
    assert record["test"]["accuracy"] >= 0.9, record["test"]  # the learnable set's stripes are plain to see
    model, config = load_model(run)
    assert config["topology"]["family"] == "vit" and config["training"]["config"]["schedule"] == "cosine"
    images = np.stack([synthetic_image(n % 2, 5000 + n) for n in range(24)])
    logits = predict_logits(model, images)
    assert ((logits > 0) == (np.arange(24) % 2 == 1)).mean() >= 0.9
    runner = OnnxRunner(export_onnx(run, tmp_path / "vit.onnx"))
    assert np.abs(runner(images) - logits).max() < 1e-4
    features = runner.embed(images)[1]
    assert np.abs(features - model.embed(torch.from_numpy(images).permute(0, 3, 1, 2).float())[1]
                  .detach().numpy()).max() < 1e-4
    files = []
    for n in range(6):
        files.append(tmp_path / f"{n}.jpg")
        files[-1].write_bytes(jpeg_bytes(images[n], quality=95))
    by_torch = [p.prob_fake for p in Detector.load(run, backend="torch").predict(files)]
    by_onnx = [p.prob_fake for p in Detector.load(run, backend="onnx").predict(files)]
    assert np.abs(np.array(by_torch) - np.array(by_onnx)).max() < 1e-4
    rows = [json.loads(line) for line in cli("predict", *files, "--model", run, "--json").stdout.splitlines()]
    assert [r["prob_fake"] for r in rows] == pytest.approx(by_torch, abs=1e-3)  # JSON rounds to 5 digits
    client = TestClient(create_app(Detector.load(run, backend="onnx"), Limits()))
    served = client.post("/v1/predict", files=[("files", (f.name, f.read_bytes(), "image/jpeg")) for f in files])
    assert [r["prob_fake"] for r in served.json()["results"]] == pytest.approx(by_torch, abs=1e-3)
    overlay = client.post("/v1/explain", files={"file": ("0.jpg", files[0].read_bytes(), "image/jpeg")})
    assert overlay.status_code == 200 and overlay.content.startswith(b"\x89PNG")  # Grad-CAM on the patch tokens


def test_the_test_time_flips_setting_trains_the_same_weights_and_saves_a_model_scoring_both_views(learnable_zip,
                                                                                                   tmp_path):
    """The recipe's test_time_flips gives the model tools/test_time_flips.py --on would make of the run trained
    without it: the same epochs and weights, its test figures those of the image and its mirror."""
    from safetensors.torch import load_file

    from cifake.models.io import save_with_flips

    common = ("train", "--data", learnable_zip, "--topology", "vit-p8-d1-w32", "--epochs", "2", "--limit", "100",
              "--json", "--quiet", "--optimizer", "adamw", "--flip")
    plain = json.loads(cli(*common, "--out", tmp_path / "plain").stdout)
    flipped = json.loads(cli(*common, "--test-time-flips", "--out", tmp_path / "flipped").stdout)
    history = [(tmp_path / run / "history.csv").read_text().splitlines() for run in ("plain", "flipped")]
    assert [line.split(",")[:5] for line in history[0]] == [line.split(",")[:5] for line in history[1]]
    weights = [load_file(tmp_path / run / "model.safetensors") for run in ("plain", "flipped")]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][name], weights[1][name]) for name in weights[0])
    assert not load_model(tmp_path / "plain")[0].topology.flip_tta
    assert load_model(tmp_path / "flipped")[0].topology.flip_tta and flipped["topology"]["flip_tta"]
    save_with_flips(tmp_path / "plain", tmp_path / "copy", flips=True)
    copy = json.loads(cli("evaluate", tmp_path / "copy", "--data", learnable_zip, "--json").stdout)  # 100 per label
    assert copy["loss"] == pytest.approx(flipped["test"]["loss"], abs=1e-6) and copy["loss"] != plain["test"]["loss"]
    refused = cli("train", "--data", learnable_zip, "--topology", "paper", "--test-time-flips", "--out",
                  tmp_path / "cnn", check=False)
    assert refused.returncode == 2 and "f32-c2-d64 has no test-time flips" in flat(refused.stderr)
    assert not (tmp_path / "cnn" / "checkpoint.safetensors").exists()


@on_vit_run
@pytest.mark.parametrize("method", list(METHODS))
def test_each_method_maps_at_the_images_size_and_depends_on_the_weights(vit_run, method):
    model, _ = load_model(vit_run[0])
    images = np.stack([synthetic_image(n % 2, 7000 + n) for n in range(12)])
    maps, targets = make_method(method, model)(images)
    assert maps.shape == (12, 32, 32) and maps.dtype == np.float32 and (maps >= 0).all()
    varied = maps.reshape(12, -1).max(1) > maps.reshape(12, -1).min(1)
    # grad-rollout leaves a map empty where no attention raises the score (each attention weight times its
    # gradient is negative there; the evidence takes the residual path): which ones depends on the training's
    # rounding, so only most of its maps must vary
    assert varied.all() if method != "grad-rollout" else varied.mean() >= 0.75
    randomised = create_model("vit-p4-d2-w64").eval()
    for module in randomised.modules():
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.3)
    other, _ = make_method(method, randomised)(images, targets)
    assert np.nanmean(rank_correlation(maps, other)) < 0.8


def test_rollout_finds_the_patch_that_attention_is_forced_onto():
    torch.manual_seed(0)
    model = create_model("vit-p8-d2-w32").eval()  # a 4 x 4 grid of patches
    chosen = 6  # row 1, column 2: pixels 8-15 down, 16-23 across

    def onto_one_patch(module, args, attention):
        forced = torch.zeros_like(attention)
        forced[..., chosen] = 1
        return forced

    hooks = [block.attn.attn_drop.register_forward_hook(onto_one_patch) for block in model.vit.blocks]
    images = np.stack([synthetic_image(n % 2, n) for n in range(4)])
    maps, _ = make_method("rollout", model)(images)
    for hook in hooks:
        hook.remove()
    patch_mass = maps.reshape(4, 4, 8, 4, 8).mean((2, 4)).reshape(4, 16)
    assert (patch_mass.argmax(1) == chosen).all()
    rows, columns = np.divmod(maps.reshape(4, -1).argmax(1), 32)
    assert (rows // 8 == 1).all() and (columns // 8 == 2).all()  # the brightest pixel lies in that patch


def test_attention_is_read_from_timms_fused_attention_and_fusion_is_restored():
    torch.manual_seed(0)
    model = create_model("vit-p8-d3-w64").eval()
    modules = [block.attn for block in model.vit.blocks]
    assert all(m.fused_attn for m in modules)  # timm's default: the fused kernel, which skips attn_drop
    pixels = torch.rand(2, 3, 32, 32) * 255
    with torch.no_grad():
        fused = model(pixels)
        with attention_maps(model) as maps:
            unfused = model(pixels)
    assert all(m.fused_attn for m in modules)
    assert len(maps) == 3 and all(a.shape == (2, 1, 16, 16) for a in maps)
    assert torch.allclose(maps[0].sum(-1), torch.ones(2, 1, 16)) and torch.allclose(fused, unfused, atol=1e-5)


def test_integrated_gradients_of_a_linear_model_are_its_weights_times_the_pixels():
    class Linear(nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = nn.Linear(3 * 8 * 8, 1)

        def forward(self, pixels):
            return self.layer(pixels.flatten(1)).squeeze(1)

    torch.manual_seed(0)
    model = Linear()
    images = np.random.default_rng(0).integers(0, 256, (5, 8, 8, 3), dtype=np.uint8)
    weights = model.layer.weight.detach().numpy().reshape(3, 8, 8)
    by_hand = (weights[None] * images.transpose(0, 3, 1, 2).astype(np.float32)).sum(1)
    for target, sign in (("REAL", 1), ("FAKE", -1)):
        maps, _ = make_method("ig", model)(images, target)
        np.testing.assert_allclose(maps, np.clip(sign * by_hand, 0, None), rtol=1e-4, atol=1e-3)


def test_a_method_that_does_not_apply_is_refused_with_exit_2(tmp_path):
    torch.manual_seed(0)
    save_model(create_model("resnet-s"), tmp_path / "cnn")
    image = tmp_path / "one.jpg"
    image.write_bytes(jpeg_bytes(synthetic_image(1, 0)))
    for method in ("rollout", "grad-rollout"):
        proc = cli("explain", tmp_path / "cnn", image, "--method", method, "--out", tmp_path / "out", check=False)
        assert proc.returncode == 2 and "ResidualCNN has no attention" in proc.stderr
        assert "use gradcam or ig" in proc.stderr
    from cifake.models import EnsembleCNN, EnsembleTopology

    members = [create_model("vit-p8-d1-w32"), create_model("vit-p8-d1-w32")]
    ensemble = EnsembleCNN(EnsembleTopology((members[0].topology, members[1].topology)), members)
    with pytest.raises(ValueError, match="not an ensemble"):
        make_method("rollout", ensemble)
    proc = cli("explain", tmp_path / "cnn", image, "--method", "ig", "--layer", "features.0", check=False)
    assert proc.returncode == 2 and "--layer chooses Grad-CAM's layer" in proc.stderr
    assert not (tmp_path / "out").exists()


@on_vit_run
def test_explain_report_of_a_transformer_names_its_method(vit_run, learnable_zip, tmp_path):
    out = tmp_path / "rollout"
    cli("explain", vit_run[0], "--data", learnable_zip, "--sample", "20", "--per-class", "1", "--method", "rollout",
        "--out", out)
    summary = json.loads((out / "explain.json").read_text())
    assert summary["method"] == "rollout" and summary["layer"] is None and summary["images"] == 40
    steps = [row["randomised_down_to"] for row in summary["randomisation"]["cascading"]]
    assert steps == ["vit.head", "vit.blocks.1", "vit.blocks.0", "vit.patch_embed.proj"]  # a block per step
    assert (out / "rollout_grid.png").is_file() and "attention rollout" in (out / "explain.md").read_text()
    image = tmp_path / "one.jpg"
    image.write_bytes(jpeg_bytes(synthetic_image(0, 3)))
    cli("explain", vit_run[0], image, "--method", "grad-rollout", "--out", tmp_path / "files")
    saved = json.loads((tmp_path / "files" / "explanations.json").read_text())
    assert saved["results"][0]["method"] == "grad-rollout" and (tmp_path / "files" / "one_grad-rollout.png").is_file()


@on_vit_run
def test_comparison_report_puts_a_cnn_beside_a_transformer_on_the_same_images(vit_run, learnable_zip, tmp_path):
    torch.manual_seed(0)
    cnn = tmp_path / "cnn"
    save_model(create_model("resnet-s"), cnn)
    out = tmp_path / "compare"
    cli("explain", cnn, "--data", learnable_zip, "--compare", vit_run[0], "--sample", "10", "--seed", "3",
        "--out", out)
    summary = json.loads((out / "compare.json").read_text())
    assert summary["images"] == 20 and summary["seed"] == 3
    cnn_row, vit_row = summary["models"]
    assert list(cnn_row["methods"]) == ["gradcam", "ig"] and list(vit_row["methods"]) == list(METHODS)
    for row in (cnn_row, vit_row):
        for measured in row["methods"].values():
            assert set(measured["deletion"]) == {"map", "random"} and -1 <= measured["randomisation_rho"] <= 1
    pairs = {(r["a"], r["b"]) for r in summary["agreement"]}
    assert len(pairs) == 2 * 4 and ("cnn: Grad-CAM", "run: Grad-CAM") in pairs  # across models only
    assert (out / "side_by_side.png").is_file() and "Do the models agree?" in (out / "compare.md").read_text()
    proc = cli("explain", cnn, "--compare", vit_run[0], check=False)
    assert proc.returncode == 2 and "--compare explains a dataset split" in proc.stderr
