"""Ensembles: the mean logit of trained models, saved as one model folder; `cifake ensemble`; Grad-CAM over members."""

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from cifake.explain import GradCam
from cifake.models import (EnsembleCNN, ResNetTopology, count_parameters, create_model, load_model, resolve_topology,
                           save_ensemble, save_model)
from cifake.models.export import OnnxRunner, export_onnx
from cifake.models.inference import predict_logits
from conftest import REPO, cli, synthetic_image, tree_files, write_zip

SPLIT = {"split": {"val_fraction": 0.1, "limit_per_label": None, "train": 90, "validation": 10},
         "config": {"seed": 1}}


def trained_member(folder, seed: int, widths=(8, 16), training: dict | None = None):
    """A small residual model with random batch-norm statistics (so flips and members differ), saved to folder."""
    torch.manual_seed(seed)
    model = create_model(ResNetTopology(widths=widths, blocks=1))
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-1, 1)
            torch.nn.init.uniform_(module.weight, 0.5, 1.5)
    save_model(model.eval(), folder, SPLIT if training is None else training)
    return folder


@pytest.fixture
def members(tmp_path):
    return [trained_member(tmp_path / "a", 1), trained_member(tmp_path / "b", 2, widths=(8, 16, 32))]


def pixels(n: int = 6) -> np.ndarray:
    return np.stack([synthetic_image(i % 2, i) for i in range(n)])


def test_the_ensemble_is_the_mean_logit_of_its_members_without_flips(members, tmp_path):
    folder = save_ensemble(members, tmp_path / "ens")
    ensemble, config = load_model(folder)
    assert isinstance(ensemble, EnsembleCNN) and config["topology"]["family"] == "ensemble"
    assert ensemble.topology.name == "ens-res8-16-b1-hp+res8-16-32-b1-hp"
    twins = load_model(save_ensemble([members[0], members[0]], tmp_path / "twins"))[0]
    assert twins.topology.name == "ens2-res8-16-b1-hp"
    assert [m["flip_tta"] for m in config["topology"]["members"]] == [False, False]
    singles = []
    for member in members:
        model, _ = load_model(member)
        model.topology = dataclasses.replace(model.topology, flip_tta=False)
        singles.append(predict_logits(model, pixels()))
    with_flips = predict_logits(load_model(members[0])[0], pixels())
    assert np.abs(with_flips - singles[0]).max() > 1e-4  # the members' own flips do change their logits
    assert np.allclose(predict_logits(ensemble, pixels()), (singles[0] + singles[1]) / 2, atol=1e-5)
    assert config["training"]["parameters"] == count_parameters(ensemble) == sum(
        count_parameters(load_model(m)[0]) for m in members)
    assert [m["run"] for m in config["training"]["members"]] == [str(m) for m in members]
    assert config["training"]["split"] == SPLIT["split"]  # what calibrate and evaluate --split validation carve


def test_an_ensemble_round_trips_and_exports_to_onnx_with_the_same_logits(members, tmp_path):
    folder = save_ensemble(members, tmp_path / "ens")
    first, _ = load_model(folder)
    again = save_model(first, tmp_path / "again", json.loads((folder / "config.json").read_text())["training"])
    assert (again / "model.safetensors").read_bytes() == (folder / "model.safetensors").read_bytes()
    runner = OnnxRunner(export_onnx(folder, folder / "model.onnx"), threads=1)
    assert np.abs(runner(pixels(), 4) - predict_logits(first, pixels())).max() < 1e-4


def test_save_ensemble_refuses_what_cannot_be_combined(members, tmp_path):
    with pytest.raises(ValueError, match="at least two members"):
        save_ensemble(members[:1], tmp_path / "one")
    other = trained_member(tmp_path / "other", 3, training={**SPLIT, "config": {"seed": 2}})
    with pytest.raises(ValueError, match=r"other: validation split .* differs"):
        save_ensemble([members[0], other], tmp_path / "mixed")
    save_ensemble(members, tmp_path / "ens")
    with pytest.raises(ValueError, match="ens: is an ensemble already"):
        save_ensemble([members[0], tmp_path / "ens"], tmp_path / "nested")
    config = json.loads((tmp_path / "ens" / "config.json").read_text())
    (tmp_path / "ens" / "config.json").write_text(json.dumps(config | {"topology": {"family": "ensemble",
                                                                                    "members": ["resnet4"]}}))
    with pytest.raises(ValueError, match=r"ens/config.json: invalid topology .* list of member topologies"):
        load_model(tmp_path / "ens")
    (members[0] / "checkpoint.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match="holds a training run"):
        save_ensemble(members, members[0])


def test_gradcam_on_an_ensemble_sums_the_members_terms_before_the_relu(members, tmp_path):
    ensemble, _ = load_model(save_ensemble(members, tmp_path / "ens"))
    method = GradCam(ensemble)
    assert method.layer_name == "members.0.features.1.2.out,members.1.features.2.2.out"
    images, targets = pixels(), np.array([1, 0, 1, 0, 1, 0])
    maps, _ = method(images, targets)
    parts = [GradCam(ensemble, layer) for layer in method.layer_name.split(",")]
    assert all(p.layer_name.startswith("members.") for p in parts)
    # the members' last layers are 16 and 8 px: each term is brought to 32 px, summed, then ReLU'd
    batch = torch.from_numpy(images).permute(0, 3, 1, 2).float()
    labels = torch.from_numpy(targets)
    terms = [torch.nn.functional.interpolate(g.attribute(batch, labels), (32, 32), mode="bilinear")
             for p in parts for g in p.gradcams]
    expected = torch.relu(terms[0] + terms[1]).squeeze(1).detach().numpy()
    assert maps.shape == (6, 32, 32) and maps.min() >= 0
    assert np.allclose(maps, expected, atol=1e-5)
    with pytest.raises(ValueError, match="unknown layer 'members.5.features.0'"):
        GradCam(ensemble, "members.0.features.0.0.0,members.5.features.0")


def test_cli_ensemble_writes_a_model_folder_that_evaluates_on_its_validation_split(learnable_zip, tmp_path):
    runs = [tmp_path / "a", tmp_path / "b"]
    for run, seed in zip(runs, (1, 1)):
        cli("train", "--data", learnable_zip, "--out", run, "--epochs", "1", "--topology", "resnet-s",
            "--limit", "80", "--seed", str(seed), "-q")
    out = cli("ensemble", *runs, "--out", tmp_path / "ens").stdout
    assert "ensemble of 2 models" in out
    metrics = json.loads(cli("evaluate", tmp_path / "ens", "--data", learnable_zip, "--split", "validation",
                             "--json", "-q").stdout)
    member = json.loads((runs[0] / "run.json").read_text())
    assert metrics["n"] == member["validation"]["n"] == 16  # the same held-out images the members never trained on
    again = json.loads(cli("evaluate", runs[0], "--data", learnable_zip, "--split", "validation", "--json",
                           "-q").stdout)
    assert (again["loss"], again["accuracy"]) == pytest.approx((member["validation"]["loss"],
                                                                member["validation"]["accuracy"]), abs=1e-6)
    refused = cli("evaluate", tmp_path / "ens", "--data", learnable_zip, "--split", "validation",
                  "--exclude-leaked", check=False)
    assert refused.returncode == 2 and "validation split is part of train" in refused.stderr
    failed = cli("ensemble", runs[0], "--out", tmp_path / "one", check=False)
    assert failed.returncode != 0 and "at least two members" in failed.stdout + failed.stderr


def test_cli_explain_reports_on_an_ensemble(members, tmp_path):
    source = write_zip(tmp_path / "tiny.zip", tree_files({"train": 4, "test": 6}))
    save_ensemble(members, tmp_path / "ens")
    cli("explain", tmp_path / "ens", "--data", source, "--sample", "6", "--per-class", "1", "--out",
        tmp_path / "explain", "-q")
    saved = json.loads((tmp_path / "explain" / "explain.json").read_text())
    assert saved["layer"] == "members.0.features.1.2.out,members.1.features.2.2.out"
    report = (tmp_path / "explain" / "explain.md").read_text()
    assert "(ens-res8-16-b1-hp+res8-16-32-b1-hp)" in report


def test_test_time_flips_copies_a_model_scoring_one_view_or_two_with_the_same_weights(tmp_path):
    run = trained_member(tmp_path / "run", seed=4)
    tool = [sys.executable, str(REPO / "tools" / "test_time_flips.py")]
    subprocess.run([*tool, run, tmp_path / "single"], check=True, capture_output=True)
    original, config = load_model(run)
    single, single_config = load_model(tmp_path / "single")
    assert original.topology.flip_tta and not single.topology.flip_tta
    assert single_config["training"] == config["training"]  # so calibrate carves the run's validation images
    images = np.stack([synthetic_image(i % 2, i) for i in range(8)])
    pixels = torch.from_numpy(images).permute(0, 3, 1, 2).float()
    with torch.no_grad():
        one_view, both = original.single_view(pixels).numpy(), original(pixels).numpy()
    assert np.array_equal(predict_logits(single, images), one_view) and not np.allclose(one_view, both)
    # a transformer saved without flips gains them with --on: the mean logit of the image and its mirror
    save_model(create_model(resolve_topology("vit-p8-d1-w32")), tmp_path / "vit")
    subprocess.run([*tool, tmp_path / "vit", tmp_path / "vit-flips", "--on"], check=True, capture_output=True)
    vit, flipped = load_model(tmp_path / "vit")[0], load_model(tmp_path / "vit-flips")[0]
    assert not vit.topology.flip_tta and flipped.topology.flip_tta
    with torch.no_grad():
        mirrored = (vit.single_view(pixels) + vit.single_view(pixels.flip(3))).numpy() / 2
    assert np.allclose(predict_logits(flipped, images), mirrored, atol=1e-5)
    assert not np.allclose(predict_logits(vit, images), mirrored, atol=1e-5)
    save_model(create_model(resolve_topology("paper")), tmp_path / "cnn")
    refused = subprocess.run([*tool, tmp_path / "cnn", tmp_path / "x"], capture_output=True, text=True)
    assert refused.returncode != 0 and "has no test-time flips" in refused.stderr
