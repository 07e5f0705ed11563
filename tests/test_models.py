import json

import pytest

from cifake.data import Preprocess
import torch

from cifake.models import Topology, create_model, count_parameters, load_model, resolve_topology, save_model


@pytest.mark.parametrize("filters", [16, 32, 64, 128])
@pytest.mark.parametrize("conv_layers", [1, 2, 3])
def test_study_feature_extractors_build_and_run(filters, conv_layers):
    model = create_model(Topology(filters, conv_layers, ()))
    out = model(torch.rand(4, 3, 32, 32) * 255)
    assert out.shape == (4,)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == conv_layers and all(c.out_channels == filters and c.kernel_size == (3, 3) for c in convs)


def test_paper_topology_matches_the_study():
    assert resolve_topology("paper") == Topology(32, 2, (64,))
    model = create_model("paper")
    # conv 3->32 (896) + conv 32->32 (9,248) + dense 6*6*32->64 (73,792) + output 64->1 (65)
    assert count_parameters(model) == 896 + 9248 + 73792 + 65
    layers = [type(m).__name__ for m in model.modules() if not isinstance(m, torch.nn.Sequential)][1:]
    assert layers == ["Conv2d", "ReLU", "MaxPool2d", "Conv2d", "ReLU", "MaxPool2d",
                      "Flatten", "Linear", "ReLU", "Linear"]


def test_resolve_topology_overrides_and_rejects():
    assert resolve_topology(None, filters=64, dense=()) == Topology(64, 2, ())
    assert resolve_topology("paper", dense=(128, 64)).dense == (128, 64)
    with pytest.raises(ValueError, match="unknown topology"):
        resolve_topology("resnet-9000")
    with pytest.raises(ValueError, match="shrink a 32 px image"):  # the model's size decides what fits
        create_model(Topology(32, 5, ()))
    assert create_model(Topology(32, 5, ()), Preprocess(128)).head[-1].in_features == 32 * 2 * 2


def test_save_load_round_trip_is_exact(tmp_path):
    torch.manual_seed(1)
    model = create_model(Topology(16, 3, (32, 8)))
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
    save_model(create_model("paper"), tmp_path)
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


def test_flatten_sends_its_gradient_back_channels_last_with_the_same_values():
    """The CNN's Flatten gives nn.Flatten's output and gradient, but the gradient keeps the input's memory format
    (so max-pool's backward need not convert its full-resolution tensors); eval mode is plain flatten."""
    from cifake.models.cnn import Flatten

    leaf = torch.randn(4, 8, 5, 5).to(memory_format=torch.channels_last).requires_grad_()
    weight = torch.randn(8 * 25)
    gradients = {}
    for name, flatten in (("ours", Flatten()), ("reference", torch.nn.Flatten())):
        x = leaf * 1  # not a leaf: its gradient arrives as the op behind it sends it (a leaf's .grad is re-laid)
        x.register_hook(lambda gradient, name=name: gradients.__setitem__(name, gradient))
        output = flatten(x)
        (output @ weight).sum().backward()
        gradients[name + " output"] = output
    assert torch.equal(gradients["ours output"], gradients["reference output"])
    assert torch.equal(gradients["ours"], gradients["reference"])
    assert gradients["ours"].is_contiguous(memory_format=torch.channels_last) and not gradients["ours"].is_contiguous()
    assert gradients["reference"].is_contiguous()  # nn.Flatten's comes back NCHW: the conversion this avoids
    with torch.no_grad():
        assert Flatten()(leaf).grad_fn is None
    assert Flatten().eval()(leaf).grad_fn.name() == torch.nn.Flatten()(leaf).grad_fn.name()  # export: plain


@pytest.mark.parametrize("conv_layers", [1, 3])
def test_training_pools_before_relu_with_the_same_logits_and_gradients_bit_for_bit(conv_layers):
    """While training, each conv block pools before its ReLU (ReLU on a quarter of the elements); ReLU and max
    commute, so logits and every gradient equal the study's order exactly, ties and all-negative windows included.
    In eval mode (inference, export, Grad-CAM's hooks) the model runs the study's order itself."""
    torch.manual_seed(0)
    model = create_model(Topology(8, conv_layers, (16,))).to(memory_format=torch.channels_last)
    for conv in model.features[::3]:
        torch.nn.init.normal_(conv.bias, 0, 0.3)  # half the channels entirely negative
    pixels = torch.randint(0, 4, (16, 3, 32, 32)).float().to(memory_format=torch.channels_last)  # many ties

    def study_order(x):
        return model.head(model.features((x - model.mean) / model.std)).squeeze(1)

    results = {}
    for name, forward in (("study", study_order), ("model", model)):
        model.zero_grad()
        logits = forward(pixels)
        (logits * torch.linspace(-1, 1, len(logits))).sum().backward()
        results[name] = [logits.detach()] + [p.grad.clone() for p in model.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(results["study"], results["model"]))
    assert any(p.grad.abs().sum() > 0 for p in model.features.parameters())
    calls = []
    hook = model.features[1].register_forward_hook(lambda module, inputs, output: calls.append(output.shape))
    model(pixels)
    model.eval()(pixels)
    hook.remove()
    assert calls == [(16, 8, 15, 15), (16, 8, 30, 30)]  # pooled while training; full resolution in eval mode


def test_model_scales_pixels_itself():
    """forward() takes raw 0..255 pixels and gives the logits of the layers applied to pixels / 255."""
    torch.manual_seed(0)
    model = create_model("paper").eval()
    pixels = torch.randint(0, 256, (4, 3, 32, 32)).float()
    expected = model.head(model.features(pixels / 255)).squeeze(1)
    assert torch.allclose(model(pixels), expected, atol=1e-6)
    assert not torch.allclose(model(pixels), model.head(model.features(pixels)).squeeze(1), atol=1e-3)


# --- the residual family beyond the study ------------------------------------------------------------------

from cifake.models import ResidualCNN, ResNetTopology  # noqa: E402


def test_named_residual_topologies_build_and_refuse_cnn_overrides():
    model = create_model("resnet")
    assert isinstance(model, ResidualCNN) and model.topology.name == "res32-64-128-b1-hp"
    assert model(torch.rand(3, 3, 32, 32) * 255).shape == (3,)
    with pytest.raises(ValueError, match="--filters do not shape 'resnet'"):
        resolve_topology("resnet", filters=8)
    with pytest.raises(ValueError, match="invalid topology"):
        ResNetTopology(widths=())


def test_test_time_flips_average_the_image_and_its_mirror():
    torch.manual_seed(0)
    model = create_model(ResNetTopology(widths=(8, 16), blocks=1)).eval()
    for module in model.modules():  # random BN statistics, so the mirror gives another logit
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-1, 1)
            torch.nn.init.uniform_(module.weight, 0.5, 1.5)
    pixels = torch.rand(4, 3, 32, 32) * 255
    with torch.no_grad():
        single, mirrored, both = model.single_view(pixels), model.single_view(pixels.flip(3)), model(pixels)
    assert not torch.allclose(single, mirrored)
    assert torch.allclose(both, (single + mirrored) / 2, atol=1e-5)
    assert torch.allclose(model(pixels.flip(3)), both, atol=1e-5)  # flip-averaged: a mirror gives the same verdict


def test_residual_model_save_load_round_trip(tmp_path):
    torch.manual_seed(0)
    model = create_model(ResNetTopology(widths=(8, 16), blocks=1, high_pass=False))
    model.train()
    model(torch.rand(8, 3, 32, 32) * 255)  # move BN statistics away from their initial values
    save_model(model.eval(), tmp_path)
    loaded, config = load_model(tmp_path)
    assert config["topology"]["family"] == "resnet" and loaded.topology == model.topology
    pixels = torch.rand(2, 3, 32, 32) * 255
    with torch.no_grad():
        assert torch.equal(loaded(pixels), model(pixels))


# --- the registry: a new family is a file that registers itself ----------------------------------------------

def test_a_registered_family_builds_by_name_and_round_trips_through_a_saved_config(tmp_path):
    from dataclasses import asdict, dataclass

    from torch import nn

    from cifake.models import register_family, register_model, topology_from_dict
    from cifake.models.registry import _FAMILIES, _MODELS

    @dataclass(frozen=True)
    class LinearTopology:
        width: int = 4
        family: str = "test-linear"

        @property
        def name(self) -> str:
            return f"linear{self.width}"

        def to_dict(self) -> dict:
            return asdict(self)

        @classmethod
        def from_dict(cls, values: dict):
            return cls(**values)

    class LinearModel(nn.Module):
        def __init__(self, topology: LinearTopology, image_size: int = 32):
            super().__init__()
            self.topology = topology
            self.layer = nn.Linear(3, topology.width)
            self.out = nn.Linear(topology.width, 1)
            self.register_buffer("mean", torch.zeros(1, 3, 1, 1), persistent=False)
            self.register_buffer("std", torch.ones(1, 3, 1, 1), persistent=False)

        def normalise_with(self, mean: float, std: float) -> None:
            self.mean.fill_(mean)
            self.std.fill_(std)

        def forward(self, pixels):
            return self.out(self.layer(((pixels - self.mean) / self.std).mean((2, 3)))).squeeze(1)

    register_family("test-linear", LinearTopology, LinearModel)
    register_model("linear-7", LinearTopology(width=7))
    try:
        model = create_model("linear-7")
        assert isinstance(model, LinearModel) and model.layer.out_features == 7
        assert topology_from_dict(model.topology.to_dict()) == LinearTopology(7)
        with pytest.raises(ValueError, match="registered twice"):
            register_model("linear-7", LinearTopology(width=8))
        save_model(model, tmp_path)
        loaded, config = load_model(tmp_path)
        assert isinstance(loaded, LinearModel) and config["topology"]["family"] == "test-linear"
        pixels = torch.rand(2, 3, 32, 32) * 255
        assert torch.equal(loaded(pixels), model.eval()(pixels))
    finally:
        del _FAMILIES["test-linear"], _MODELS["linear-7"]
    with pytest.raises(ValueError, match="unknown model family 'test-linear'"):
        topology_from_dict({"family": "test-linear", "width": 7})
