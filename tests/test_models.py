import json

import pytest
import torch

from cifake.models import TOPOLOGIES, Topology, build_model, count_parameters, load_model, resolve_topology, save_model


@pytest.mark.parametrize("filters", [16, 32, 64, 128])
@pytest.mark.parametrize("conv_layers", [1, 2, 3])
def test_study_feature_extractors_build_and_run(filters, conv_layers):
    model = build_model(Topology(filters, conv_layers, ()))
    out = model(torch.rand(4, 3, 32, 32) * 255)
    assert out.shape == (4,)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == conv_layers and all(c.out_channels == filters and c.kernel_size == (3, 3) for c in convs)


def test_paper_topology_matches_the_study():
    assert TOPOLOGIES["paper"] == Topology(32, 2, (64,))
    model = build_model("paper")
    # conv 3->32 (896) + conv 32->32 (9,248) + dense 6*6*32->64 (73,792) + output 64->1 (65)
    assert count_parameters(model) == 896 + 9248 + 73792 + 65
    layers = [type(m).__name__ for m in model.modules() if not isinstance(m, torch.nn.Sequential)][1:]
    assert layers == ["Conv2d", "ReLU", "MaxPool2d", "Conv2d", "ReLU", "MaxPool2d", "Flatten", "Linear", "ReLU", "Linear"]


def test_resolve_topology_overrides_and_rejects():
    assert resolve_topology(None, filters=64, dense=()) == Topology(64, 2, ())
    assert resolve_topology("paper", dense=(128, 64)).dense == (128, 64)
    with pytest.raises(ValueError, match="unknown topology"):
        resolve_topology("resnet-9000")
    with pytest.raises(ValueError, match="shrink"):
        Topology(32, 5, ())


def test_save_load_round_trip_is_exact(tmp_path):
    torch.manual_seed(1)
    model = build_model(Topology(16, 3, (32, 8)))
    save_model(model, tmp_path, {"note": "test"})
    loaded, config = load_model(tmp_path)
    x = torch.rand(5, 3, 32, 32) * 255
    assert torch.equal(model.eval()(x), loaded(x))
    assert config["topology"] == {"filters": 16, "conv_layers": 3, "dense": [32, 8]}
    assert config["labels"] == {"1": "REAL", "0": "FAKE"} and config["positive_class"] == "REAL"
    assert config["training"] == {"note": "test"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_model(tmp_path)
    save_model(build_model("paper"), tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["topology"]["filters"] = 64
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="model.safetensors: weights do not fit"):
        load_model(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ValueError, match="not a cifake model config"):
        load_model(tmp_path)
    (tmp_path / "config.json").write_text("{broken")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_model(tmp_path)


def test_model_scales_pixels_itself():
    model = build_model("paper")
    torch.nn.init.zeros_(model.features[0].bias)
    x = torch.full((1, 3, 32, 32), 255.0)
    assert torch.allclose(model.features[0](x / 255), model.features[0]((x - model.mean) / model.std))
