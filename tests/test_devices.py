"""Devices: resolving --device, the clear error for a missing one, the device in every artefact, checkpoints and
models across devices, and the search's GPUs per trial reaching Ray Tune. CI has no GPU, so CUDA and MPS are
made to look present by patching what torch reports."""

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from cifake import devices
from cifake.data import load_dataset
from cifake.devices import DeviceUnavailable, resolve_device
from cifake.models import Topology
from cifake.training.checkpoint import checkpoint_precision
from cifake.training.config import TrainConfig
from cifake.training.split import Split
from cifake.workflows.experiment import train_run
from conftest import cli, flat

SMALL = Topology(4, 1, ())


@pytest.fixture
def fake_gpus(monkeypatch):
    """torch reports `count` CUDA GPUs (and MPS as given); CUDA's deterministic set-up is recorded, not applied."""
    calls = []

    def report(count: int, mps: bool = False):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
        monkeypatch.setattr(devices, "_mps_available", lambda: mps)
        monkeypatch.setattr(devices, "_deterministic_cuda", lambda: calls.append("deterministic"))
        return calls

    return report


def test_auto_prefers_cuda_then_mps_then_the_cpu(fake_gpus):
    calls = fake_gpus(2)
    assert resolve_device("auto") == torch.device("cuda", 0) and calls == ["deterministic"]
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    fake_gpus(0, mps=True)
    assert resolve_device("auto") == torch.device("mps")
    fake_gpus(0, mps=False)
    assert resolve_device("auto") == torch.device("cpu") and resolve_device("cpu") == torch.device("cpu")


def test_a_device_that_is_not_there_is_named(fake_gpus):
    fake_gpus(2)
    with pytest.raises(DeviceUnavailable, match=r"has 2 CUDA GPU\(s\), cuda:0 to cuda:1"):
        resolve_device("cuda:2")
    fake_gpus(0)
    with pytest.raises(DeviceUnavailable, match="sees no CUDA GPU"):
        resolve_device("cuda")
    with pytest.raises(DeviceUnavailable, match="no Apple GPU"):
        resolve_device("mps")
    with pytest.raises(ValueError, match="device must be auto, cpu, cuda, cuda:N or mps, not 'gpu'"):
        resolve_device("gpu")
    with pytest.raises(ValueError, match="training setting device must be one of auto, cpu, cuda, cuda:N, mps"):
        TrainConfig(device="cuda:x")


@pytest.mark.parametrize("command", [
    ["train", "--data", "nowhere", "--out", "run", "--topology", "paper"],
    ["evaluate", "run", "--data", "nowhere"],
    ["calibrate", "run", "--data", "nowhere"],
    ["robustness", "run", "--data", "nowhere"],
    ["explain", "run", "--data", "nowhere"],
    ["explain", "run", "image.jpg"],
    ["predict", "image.jpg", "--backend", "torch"],
    ["serve"],
    ["search", "--data", "nowhere", "--out", "search", "--no-ray"],
    ["search", "--data", "nowhere", "--out", "search"],
    ["reproduce", "--data", "nowhere"],
])
def test_every_command_refuses_a_missing_device_with_exit_code_2(command, fake_gpus):
    fake_gpus(0)
    result = cli(*command, "--device", "cuda", check=False)
    assert result.returncode == 2 and "sees no CUDA GPU" in flat(result.stderr), result.stderr
    assert "Traceback" not in result.stderr


@pytest.fixture(scope="module")
def run(learnable_zip, tmp_path_factory):
    """A small model trained on the CPU through the CLI."""
    folder = tmp_path_factory.mktemp("device-run") / "run"
    cli("train", "--data", learnable_zip, "--out", folder, "--filters", "4", "--conv-layers", "1", "--dense", "none",
        "--epochs", "1", "--limit", "100", "--device", "cpu", "--quiet")
    return folder


def test_the_device_is_recorded_in_every_artefact(run, learnable_zip, tmp_path):
    environment = json.loads((run / "run.json").read_text())["environment"]
    assert environment["device"] == "cpu" and "CPU" in environment["device_name"]
    assert environment["precision"] == ("bf16 autocast" if devices.cpu_runs_bf16() else "fp32")  # this CPU's
    assert environment["optimizer_kernel"] == "fused"  # Adam, CPU
    assert json.loads((run / "config.json").read_text())["training"]["environment"]["device"] == "cpu"
    result = cli("evaluate", run, "--data", learnable_zip, "--out", tmp_path / "eval", "--json", "--device", "cpu",
                 "--quiet")
    assert "device: cpu" in result.stderr and json.loads(result.stdout)["device"] == "cpu"
    assert json.loads((tmp_path / "eval" / "eval-test.json").read_text())["device"] == "cpu"
    robustness = cli("robustness", run, "--data", learnable_zip, "--out", tmp_path / "rob", "--condition", "clean",
                     "--json", "--quiet")
    assert json.loads(robustness.stdout)["device"] == "cpu"  # auto, on a machine without a GPU
    predicted = cli("predict", learnable_zip.parent, "--model", run, "--backend", "torch", "--json", check=False)
    assert "device: cpu" in predicted.stderr


def test_a_checkpoint_resumes_only_on_the_device_type_it_was_made_on(learnable_zip, tmp_path):
    data = load_dataset(learnable_zip, progress=False)
    config = TrainConfig(epochs=1, device="cpu")
    train_run(data, tmp_path, SMALL, config, Split(0.1, 60), progress=False, plots=False)
    checkpoint = tmp_path / "checkpoint.safetensors"
    with safe_open(checkpoint, "pt") as file:
        metadata = file.metadata()
    state = json.loads(metadata["cifake_checkpoint"])
    assert state["device"] == "cpu"
    state["device"] = "cuda"  # as a GPU run writes it: tensors on the CPU, the device in the header
    save_file(load_file(checkpoint), checkpoint, metadata={"cifake_checkpoint": json.dumps(state)})
    with pytest.raises(ValueError, match="trained on cuda and cannot continue exactly on cpu; resume it with "
                                         "--device cuda") as refused:
        train_run(data, tmp_path, SMALL, TrainConfig(epochs=2, device="cpu"), Split(0.1, 60), resume=True,
                  progress=False, plots=False)
    assert str(refused.value).startswith(f"{checkpoint}: this run was trained on cuda")
    del state["device"]  # a checkpoint older than the device record was made on the CPU, and continues there
    save_file(load_file(checkpoint), checkpoint, metadata={"cifake_checkpoint": json.dumps(state)})
    resumed = train_run(data, tmp_path, SMALL, TrainConfig(epochs=2, device="cpu"), Split(0.1, 60), resume=True,
                        progress=False, plots=False)
    assert resumed["resumed_from_epoch"] == 1 and resumed["epochs_run"] == 2


def test_a_cpu_run_uses_its_thread_count_records_it_and_resumes_only_with_it(learnable_zip, tmp_path):
    data = load_dataset(learnable_zip, progress=False)
    before = torch.get_num_threads()
    record = train_run(data, tmp_path, SMALL, TrainConfig(epochs=1, device="cpu", threads=1), Split(0.1, 60),
                       progress=False, plots=False)
    assert record["environment"]["threads"] == 1 and record["config"]["threads"] == 1
    name = record["environment"]["device_name"]  # e.g. x86_64 CPU (AVX2), 1 thread: the run's count, not the caller's
    assert name.endswith(f"CPU ({torch.backends.cpu.get_cpu_capability()}), 1 thread"), name
    assert torch.get_num_threads() == before  # the caller's count is restored
    with safe_open(tmp_path / "checkpoint.safetensors", "pt") as file:
        assert json.loads(file.metadata()["cifake_checkpoint"])["threads"] == 1
    with pytest.raises(ValueError, match=r"trained on 1 CPU thread\(s\) and cannot continue exactly on 2; "
                                         "resume it with --threads 1 "):
        train_run(data, tmp_path, SMALL, TrainConfig(epochs=2, device="cpu", threads=2), Split(0.1, 60), resume=True,
                  progress=False, plots=False)
    resumed = train_run(data, tmp_path, SMALL, TrainConfig(epochs=2, device="cpu", threads=1), Split(0.1, 60),
                        resume=True, progress=False, plots=False)
    assert resumed["resumed_from_epoch"] == 1 and resumed["epochs_run"] == 2


def test_a_cpu_without_bf16_kernels_trains_in_fp32_and_a_bf16_run_does_not_continue_there(learnable_zip, tmp_path,
                                                                                           monkeypatch):
    data = load_dataset(learnable_zip, progress=False)

    def train(folder, cpu_runs_bf16: bool, **settings):
        monkeypatch.setattr(devices, "cpu_runs_bf16", lambda: cpu_runs_bf16)
        return train_run(data, tmp_path / folder, SMALL, TrainConfig(device="cpu", threads=1, **settings),
                         Split(0.1, 60), progress=False, plots=False, resume=settings.get("epochs") == 2)

    assert train("amx", True, epochs=1)["environment"]["precision"] == "bf16 autocast"
    bf16 = load_file(tmp_path / "amx" / "model.safetensors")  # one epoch, before the resume below
    with safe_open(tmp_path / "amx" / "checkpoint.safetensors", "pt") as file:
        assert json.loads(file.metadata()["cifake_checkpoint"])["precision"] == "bf16 autocast"
    with pytest.raises(ValueError, match="trained in bf16 autocast and would continue in fp32 here"):
        train("amx", False, epochs=2)
    assert train("amx", True, epochs=2)["resumed_from_epoch"] == 1  # where it has bf16 kernels, it continues
    assert train("avx2", False, epochs=1)["environment"]["precision"] == "fp32"
    # what `search-status` reads to weigh a trial's cost: the precision from the header, None without a checkpoint
    assert [checkpoint_precision(tmp_path / run) for run in ("amx", "avx2", "none")] == ["bf16 autocast", "fp32", None]
    train("no-bf16", True, epochs=1, bf16=False)  # fp32 asked for, on any CPU
    fallback, asked = (load_file(tmp_path / run / "model.safetensors") for run in ("avx2", "no-bf16"))
    assert all(torch.equal(fallback[key], asked[key]) for key in asked)  # the fallback is plain fp32
    assert not all(torch.equal(bf16[key], asked[key]) for key in asked)  # and bf16, one epoch too, is not


def test_a_model_loads_on_the_device_asked_for(run):
    from cifake.models import load_model
    from cifake.predict import Detector

    model, _ = load_model(run, "cpu")
    assert next(model.parameters()).device.type == "cpu"
    assert Detector.load(run, "torch", "cpu").device == "cpu" and Detector.load(run, "onnx").device == "cpu"
    with pytest.raises(DeviceUnavailable):
        Detector.load(run, "torch", "mps" if not devices._mps_available() else "cuda:99")


def test_the_onnx_backend_refuses_a_gpu(run, fake_gpus):
    from cifake.predict import Detector

    fake_gpus(1)
    with pytest.raises(ValueError, match="backend 'onnx' scores on the CPU; use --backend torch"):
        Detector.load(run, "onnx", "cuda")


def test_the_search_asks_ray_for_the_gpus_per_trial(learnable_zip, tmp_path):
    ray = pytest.importorskip("ray", reason="ray is in the dev extra; CI installs it")
    from cifake.search.grid import Budget, SearchSpace
    from cifake.workflows.search import run_search
    from cifake.workflows.search import _gpus_per_trial

    data = load_dataset(learnable_zip, progress=False)
    space, budget = SearchSpace(filters=(4, 8), conv_layers=(1,)), Budget.of(epochs=1, patience=1, limit_per_label=60)
    cpu_only = run_search(data, tmp_path / "cpu", space, budget, stages=1, progress=False)  # a machine without GPUs
    assert cpu_only["trial_resources"] == {"f8-c1-dnone": {"CPU": 1.0}, "f4-c1-dnone": {"CPU": 1.0}}
    ray.init(address="local", num_cpus=2, num_gpus=1, include_dashboard=False, log_to_driver=False)
    try:  # Ray believes in one GPU: two trials share it, and each finds no CUDA in torch, so trains on the CPU
        shared = run_search(data, tmp_path / "gpu", space, budget, stages=1, progress=False, gpus_per_trial=0.5)
        with pytest.raises(ValueError, match="asks for 2 GPU"):
            run_search(data, tmp_path / "two", space, budget, stages=1, progress=False, gpus_per_trial=2)
    finally:
        ray.shutdown()
    assert {r["GPU"] for r in shared["trial_resources"].values()} == {0.5}
    assert {r["environment"]["device"] for r in shared["stage1"]} == {"cpu"}
    assert json.loads((tmp_path / "gpu" / "search_settings.json").read_text())["gpus_per_trial"] == 0.5
    assert _gpus_per_trial(None, 4) == 0.25 and _gpus_per_trial(None, 0) == 0 and _gpus_per_trial(1, 4) == 1
    with pytest.raises(ValueError, match="without Ray"):
        run_search(data, tmp_path / "no-ray", space, budget, use_ray=False, gpus_per_trial=1)


@pytest.mark.e2e
def test_the_gpu_check_runs_on_the_cpu_from_a_subset_zip(learnable_zip, tmp_path):
    import subprocess
    import sys
    import zipfile

    from conftest import REPO

    subset = tmp_path / "subset.zip"
    cli("data", "subset", learnable_zip, "--out", subset, "--train", "120", "--test", "50")
    with zipfile.ZipFile(subset) as small, zipfile.ZipFile(learnable_zip) as full:
        names = small.namelist()
        assert len(names) == 2 * (120 + 50)
        assert {tuple(n.split("/")[:2]) for n in names} == {(s, k) for s in ("train", "test") for k in ("REAL", "FAKE")}
        originals = {n.split("/", 1)[1] if n.count("/") > 2 else n: n for n in full.namelist()}
        assert small.read(names[0]) == full.read(originals.get(names[0], names[0]))  # the files' own bytes
    done = subprocess.run(
        [sys.executable, "benchmarks/gpu_check.py", "--data", str(subset), "--device", "cpu", "--out",
         str(tmp_path / "check"), "--epochs", "2", "--throughput-images", "200", "--size-images", "32",
         "--search-filters", "4", "--vit-epochs", "1",
         "--search-conv-layers", "1", "--search-dense-units", "8"], cwd=REPO, capture_output=True, text=True,
        timeout=600)
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "check" / "gpu_check.json").read_text())
    assert report["device"] == "cpu" and report["throughput"]["cpu"] > 0
    assert report["training"]["deterministic"] is True and report["training"]["device_cpu_gap_points"] == 0
    assert report["search"]["trials"] == 3 and report["search"]["paper_projection_minutes"] > 0
    vit = report["vit_recipe"]
    assert vit["topology"] == "vit-p4-d6-w128-conv" and vit["epochs"] == 1 and vit["train_images"] == 216
    assert 0 <= vit["test_accuracy"] <= 1 and vit["full_split_minutes"] > 0
    for family in ("resnet4", "vit"):
        rates = report["sizes"][family]
        assert set(rates) == {"32", "128", "256"} and all(rate > 0 for rate in rates.values())
    assert "determinism: two runs on cpu give identical metrics" in done.stdout
