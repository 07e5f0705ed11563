import json

import numpy as np
import pytest
import torch

from cifake.explain import GradCam, centre_share, conv_layer_names, deletion_insertion, rank_correlation, region_table
from cifake.models import Topology, create_model, save_model
from conftest import cli

CORNERS = {"top-left": (slice(0, 8), slice(0, 8)), "top-right": (slice(0, 8), slice(24, 32)),
           "bottom-left": (slice(24, 32), slice(0, 8)), "bottom-right": (slice(24, 32), slice(24, 32))}


def brightness_model() -> torch.nn.Module:
    """Known by construction: bright pixels (above mid-grey) are the only evidence, and it is evidence for REAL."""
    model = create_model(Topology(filters=1, conv_layers=1, dense=()))
    with torch.no_grad():
        conv, head = model.features[0], model.head[1]
        conv.weight.fill_(1 / 27)  # mean of a 3x3x3 patch, pixels scaled to 0..1
        conv.bias.fill_(-0.5)  # only patches brighter than mid-grey get through the ReLU
        head.weight.fill_(1.0)
        head.bias.fill_(-1.0)
    return model.eval()


def patch_images() -> np.ndarray:
    """Dark images with one bright 8x8 patch, each in a different corner."""
    images = np.full((len(CORNERS), 32, 32, 3), 20, np.uint8)
    for image, (rows, cols) in zip(images, CORNERS.values()):
        image[rows, cols] = 250
    return images


def quadrant_share(heatmap: np.ndarray, rows: slice, cols: slice) -> float:
    quadrant = (slice(0, 16) if rows.start == 0 else slice(16, 32), slice(0, 16) if cols.start == 0 else slice(16, 32))
    return float(heatmap[quadrant].sum() / heatmap.sum())


def test_known_answer_map_mass_sits_on_the_evidence():
    maps, targets = GradCam(brightness_model(), batch_size=3)(patch_images(), "predicted")
    assert maps.shape == (4, 32, 32) and list(targets) == [1, 1, 1, 1]  # the bright patch makes each REAL
    for heatmap, (name, (rows, cols)) in zip(maps, CORNERS.items()):
        assert quadrant_share(heatmap, rows, cols) > 0.9, name
        assert heatmap[rows, cols].sum() > 0.5 * heatmap.sum(), name  # the 8x8 patch itself: 1/16 of the image


def test_map_for_the_other_label_is_empty():
    """REAL evidence is the logit; FAKE evidence its negative, so the bright patch gives FAKE nothing."""
    maps, targets = GradCam(brightness_model())(patch_images(), "FAKE")
    assert list(targets) == [0, 0, 0, 0] and np.allclose(maps, 0)


def test_batching_and_repeats_do_not_change_maps():
    torch.manual_seed(3)
    model = create_model("paper")
    images = np.random.default_rng(0).integers(0, 256, (10, 32, 32, 3), dtype=np.uint8)
    one, _ = GradCam(model, batch_size=3)(images, "REAL")
    two, _ = GradCam(model, batch_size=256)(images, "REAL")
    again, _ = GradCam(model, batch_size=3)(images, "REAL")
    assert np.allclose(one, two, atol=1e-6) and np.array_equal(one, again)


def test_layers_can_be_chosen_and_bad_ones_are_refused():
    model = create_model("paper")
    assert conv_layer_names(model) == ["features.0", "features.1", "features.3", "features.4"]
    images = patch_images()
    maps, _ = GradCam(model, layer="features.0")(images, np.array([1, 0, 1, 0]))
    assert maps.shape == (4, 32, 32)
    with pytest.raises(ValueError, match="unknown layer"):
        GradCam(model, layer="head.1")
    with pytest.raises(ValueError, match="target must be"):
        GradCam(model)(images, "MAYBE")


def test_centre_share_and_region_table():
    uniform = np.ones((1, 32, 32), np.float32)
    centre = np.zeros((1, 32, 32), np.float32)
    centre[0, 8:24, 8:24] = 1
    empty = np.zeros((1, 32, 32), np.float32)
    shares = centre_share(np.concatenate([uniform, centre, empty]))
    assert shares[0] == pytest.approx(0.25) and shares[1] == pytest.approx(1.0) and np.isnan(shares[2])
    table = region_table(np.concatenate([uniform, centre, empty]), np.array([1, 0, 0]), np.array([0, 0, 1]))
    assert table["REAL"]["airplane"] == pytest.approx(0.25) and table["FAKE"]["airplane"] == pytest.approx(1.0)
    assert table["FAKE"]["automobile"] is None and table["empty_maps"] == 1


def test_rank_correlation():
    rng = np.random.default_rng(0)
    a = rng.random((3, 32, 32))
    b = a.copy()
    b[1] = -a[1]
    b[2] = 0
    rho = rank_correlation(a, b)
    assert rho[0] == pytest.approx(1) and rho[1] == pytest.approx(-1) and np.isnan(rho[2])


def test_deletion_beats_random_order_on_the_known_model():
    model = brightness_model()
    images = patch_images()
    maps, targets = GradCam(model)(images, "predicted")
    result = deletion_insertion(model, images, maps, targets, steps=8, sigma=4.0)
    assert result["deletion_map"]["auc"] < result["deletion_random"]["auc"] - 0.1
    assert result["insertion_map"]["auc"] > result["insertion_random"]["auc"]
    assert len(result["deletion_map"]["curve"]) == 9
    in_chunks = deletion_insertion(model, images, maps, targets, steps=8, sigma=4.0, chunk=3)
    for key in ("deletion_map", "deletion_random", "insertion_map", "insertion_random"):  # chunks change no result
        assert in_chunks[key]["auc"] == pytest.approx(result[key]["auc"], rel=1e-5)
        assert in_chunks[key]["curve"] == pytest.approx(result[key]["curve"], rel=1e-5)


def test_faithfulness_scores_the_view_the_maps_explain():
    """A model with test-time flips is scored on the image as given, as its maps are made: the curves start at
    that view's probability of each image's target, not at the two views' mean."""
    from cifake.models.io import set_test_time_flips

    torch.manual_seed(0)
    model = create_model("resnet-s").eval()
    set_test_time_flips(model, True)
    images = np.random.default_rng(0).integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    pixels = torch.from_numpy(images).permute(0, 3, 1, 2).float()
    with torch.no_grad():
        one_view, both = model.single_view(pixels).numpy(), model(pixels).numpy()
    assert np.abs(one_view - both).max() > 1e-3  # the mirror image changes the score
    targets = np.array([1, 0, 1, 0, 1, 0])
    sign = np.where(targets == 1, 1.0, -1.0)
    maps = np.random.default_rng(1).random((6, 32, 32)).astype(np.float32)
    result = deletion_insertion(model, images, maps, targets, steps=4)
    start = [result[f"deletion_{order}"]["curve"][0] for order in ("map", "random")]
    end = [result[f"insertion_{order}"]["curve"][-1] for order in ("map", "random")]
    expected = float(np.mean(1 / (1 + np.exp(-sign * one_view))))
    assert start == pytest.approx([expected] * 2, abs=1e-6) and end == pytest.approx([expected] * 2, abs=1e-6)
    assert float(np.mean(1 / (1 + np.exp(-sign * both)))) != pytest.approx(expected, abs=1e-4)


def test_the_gap_between_orders_and_its_interval():
    """The map order against the random one, image by image: none where the map's order is the random order
    itself, and a clear one (its 95 % interval away from 0) for the map of a model known by construction."""
    model = brightness_model()
    images = np.concatenate([patch_images()] * 3)
    maps, targets = GradCam(model)(images, "predicted")
    known = deletion_insertion(model, images, maps, targets, steps=8, seed=5)
    for curve, sign in (("deletion", -1), ("insertion", 1)):
        gap = known[f"{curve}_gap"]
        assert gap["mean"] == pytest.approx(known[f"{curve}_map"]["auc"] - known[f"{curve}_random"]["auc"], abs=1e-6)
        assert sign * gap["mean"] > gap["ci95"] > 0, (curve, gap)
    random_keys = np.random.default_rng(5).random((len(images), 32 * 32))  # the order the random curves follow
    same_order = deletion_insertion(model, images, -random_keys.reshape(-1, 32, 32), targets, steps=8, seed=5)
    assert same_order["deletion_gap"] == {"mean": 0.0, "ci95": 0.0}
    assert same_order["insertion_gap"] == {"mean": 0.0, "ci95": 0.0}


def test_checks_run_on_a_seeded_subset():
    from cifake.explain.analysis import checked_subset

    chosen = checked_subset(100, 30, seed=4)
    assert len(chosen) == 30 == len(set(chosen.tolist())) and list(chosen) == sorted(chosen) and chosen.max() < 100
    assert list(checked_subset(100, 30, seed=4)) == list(chosen) and list(checked_subset(100, 30, 5)) != list(chosen)
    assert list(checked_subset(20, 30, seed=4)) == list(range(20))


def test_by_default_a_report_checks_200_images_and_100_for_integrated_gradients(learnable_zip, tmp_path):
    from cifake.data import load_dataset
    from cifake.workflows.explain_report import explain_dataset

    torch.manual_seed(1)
    save_model(create_model("paper"), tmp_path / "run")
    data = load_dataset(learnable_zip, progress=False)
    checked = {method: explain_dataset(tmp_path / "run", data, tmp_path / method, "train", sample_per_label=120,
                                       per_class=1, method=method)["faithfulness"]["images"]
               for method in ("gradcam", "ig")}
    assert checked == {"gradcam": 200, "ig": 100}


def test_the_report_checks_a_subset_and_cascades_where_maps_are_cheap(learnable_zip, tmp_path):
    torch.manual_seed(1)
    save_model(create_model("paper"), tmp_path / "run")
    base = ["explain", tmp_path / "run", "--data", learnable_zip, "--sample", "20", "--per-class", "1"]
    cli(*base, "--checks", "12", "--method", "gradcam", "--out", tmp_path / "gc")
    cli(*base, "--checks", "12", "--method", "ig", "--out", tmp_path / "ig")
    cli(*base, "--checks", "12", "--method", "ig", "--cascade", "--out", tmp_path / "ig-cascade")
    cli(*base, "--checks", "100", "--method", "gradcam", "--no-cascade", "--out", tmp_path / "all")
    saved = {name: json.loads((tmp_path / name / "explain.json").read_text())
             for name in ("gc", "ig", "ig-cascade", "all")}
    assert [saved[n]["faithfulness"]["images"] for n in saved] == [12, 12, 12, 40]
    assert [len(saved[n]["randomisation"]["cascading"]) for n in saved] == [4, 0, 4, 0]
    assert saved["gc"]["images"] == 40 and saved["gc"]["centre_share"]["empty_maps"] <= 40
    report = (tmp_path / "ig" / "explain.md").read_text()
    assert "a seeded subset of 12 of the 40 images" in report and "--cascade runs it" in report
    assert "all 40 images" in (tmp_path / "all" / "explain.md").read_text()


def test_explain_dataset_report(learnable_zip, tmp_path):
    from cifake.data import load_dataset
    from cifake.workflows.explain_report import explain_dataset

    torch.manual_seed(1)
    save_model(create_model("paper"), tmp_path / "run")
    summary = explain_dataset(tmp_path / "run", load_dataset(learnable_zip, progress=False), tmp_path / "out",
                              sample_per_label=40, per_class=2)
    assert summary["images"] == 80 and summary["per_label"] == {"REAL": 40, "FAKE": 40}
    for name in ("explain.md", "explain.html", "explain.json", "gradcam_grid.png", "mean_maps.png",
                 "centre_share.png", "deletion_insertion.png"):
        assert (tmp_path / "out" / name).is_file(), name
    page = (tmp_path / "out" / "explain.html").read_text()
    assert page.count("data:image/png;base64,") == 4 and "src='http" not in page and "href=" not in page
    saved = json.loads((tmp_path / "out" / "explain.json").read_text())
    assert set(saved["randomisation"]) == {"full", "cascading"} and len(saved["randomisation"]["cascading"]) == 4


def test_claim_verdict_follows_the_numbers():
    from cifake.workflows.explain_report import claim_verdict

    table = lambda real, fake: {"REAL": {"all": real}, "FAKE": {"all": fake}}
    border = claim_verdict(table(0.15, 0.18))
    assert "as the study reports" in border and "do not" not in border
    assert "for FAKE images alone" in claim_verdict(table(0.26, 0.1))
    assert "do not concentrate" in claim_verdict(table(0.253, 0.283))
    assert "leaning towards the centre" in claim_verdict(table(0.26, 0.28))
    assert "leaning" not in claim_verdict(table(0.24, 0.28))


def test_gradcam_runs_on_the_residual_family():
    from cifake.explain.gradcam import GradCam
    from cifake.models import create_model

    torch.manual_seed(0)
    model = create_model("resnet-s").eval()
    method = GradCam(model)
    assert method.layer_name == "features.2.2.out"  # the last residual block's output
    images = np.random.default_rng(0).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    maps, targets = method(images, "REAL")
    assert maps.shape == (5, 32, 32) and (maps >= 0).all() and set(targets) == {1}


def test_randomisation_check_handles_bias_free_convolutions():
    from cifake.explain.analysis import randomisation_check
    from cifake.explain.gradcam import GradCam
    from cifake.models import ResNetTopology, create_model

    torch.manual_seed(0)
    model = create_model(ResNetTopology(widths=(8, 16), blocks=1)).eval()
    images = np.random.default_rng(1).integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    maps, targets = GradCam(model)(images, "REAL")
    result = randomisation_check(model, images, maps, targets, lambda m: GradCam(m))
    convolutions = [n for n, m in model.named_modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    assert [row["randomised_down_to"] for row in result["cascading"]] == convolutions[::-1]
    assert "mean" in result["full"]


def test_randomisation_check_randomises_a_copy_and_the_maps_follow():
    """Re-initialised weights give other maps (low rank correlation), every layer in the cascade is redrawn, and
    the trained model itself is left untouched."""
    from cifake.explain.analysis import randomisation_check

    torch.manual_seed(0)
    model = create_model(Topology(filters=8, conv_layers=2, dense=(16,))).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    images = np.random.default_rng(2).integers(0, 256, (16, 32, 32, 3), dtype=np.uint8)
    maps, targets = GradCam(model)(images, "predicted")
    assert (maps.reshape(len(maps), -1).max(1) > 0).all()  # every map has mass, so every correlation is defined
    drawn = []

    def method(candidate):
        drawn.append({k: v.clone() for k, v in candidate.state_dict().items()})
        return GradCam(candidate)

    result = randomisation_check(model, images, maps, targets, method)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    layers = ["head.3", "head.1", "features.3", "features.0"]  # cascade: from the output down; then all at once
    assert [row["randomised_down_to"] for row in result["cascading"]] == layers and len(drawn) == 5
    changed = [{k.rsplit(".", 1)[0] for k in before if not torch.equal(state[k], before[k])} for state in drawn]
    assert changed == [set(layers[: n + 1]) for n in range(4)] + [set(layers)]
    assert result["full"]["mean"] < 0.3 and result["cascading"][-1]["mean"] < 0.3
    itself = randomisation_check(model, images, maps, targets, lambda m: (lambda i, t: (maps, t)))
    assert itself["full"]["mean"] == pytest.approx(1.0)  # the measure itself: identical maps correlate fully


def test_the_explained_sample_follows_the_runs_seed_or_the_commands(learnable_zip, tmp_path):
    """`cifake explain --data` draws its sample with the seed the model was trained with, unless --seed says
    otherwise; explain.json names the seed and a digest of the sampled names, checked here independently."""
    import hashlib

    from cifake.data import load_dataset

    torch.manual_seed(1)
    save_model(create_model(Topology(filters=4, conv_layers=1, dense=())), tmp_path / "run",
               training={"config": {"seed": 7}})
    test = load_dataset(learnable_zip, progress=False)["test"]

    def explained(*options) -> dict:
        out = tmp_path / f"out{len(options)}"
        cli("explain", tmp_path / "run", "--data", learnable_zip, "--sample", 10, "--per-class", 1, "--out", out,
            "--device", "cpu", "-q", *options)
        return json.loads((out / "explain.json").read_text())

    def digest(seed: int) -> str:
        return hashlib.sha256("\n".join(test.limit(10, seed).names).encode()).hexdigest()

    by_run, by_command = explained(), explained("--seed", 3)
    assert by_run["seed"] == 7 and by_run["sample_sha256"] == digest(7)
    assert by_command["seed"] == 3 and by_command["sample_sha256"] == digest(3) != digest(7)


def test_the_predicted_target_is_each_images_own_verdict():
    """A batch of REAL verdicts (a bright patch) and FAKE verdicts (all dark): "predicted" explains each image
    for its own verdict, the label the model's logit gives it, and its maps are those asked for label by label."""
    from cifake.models.inference import predict_logits

    model = brightness_model()
    images = np.concatenate([patch_images()[:2], np.full((2, 32, 32, 3), 20, np.uint8)])
    verdicts = (predict_logits(model, images) > 0).astype(int)
    assert list(verdicts) == [1, 1, 0, 0]
    maps, targets = GradCam(model, batch_size=3)(images, "predicted")
    assert list(targets) == [1, 1, 0, 0]
    explicit, _ = GradCam(model, batch_size=3)(images, verdicts)
    assert np.allclose(maps, explicit)
    assert maps[:2].sum() > 0 and np.allclose(GradCam(model)(images, "REAL")[0][:2], maps[:2])
