"""The `cifake` command end to end: in-process through typer (`cli`), and in subprocesses where the process matters."""

import json
import signal
import subprocess
import sys
import time

import pytest

from cifake.training.checkpoint import checkpoint_progress
from conftest import cli, flat, jpeg_bytes, synthetic_image, tree_files, write_zip


def cifake(*args, check=True, **kwargs) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "cifake", *map(str, args)], capture_output=True, text=True,
                          timeout=600, **kwargs)
    if check and proc.returncode != 0:
        command = " ".join(map(str, args))
        raise AssertionError(f"cifake {command} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def test_data_info_lists_counts_and_skipped_files(tmp_path):
    files = tree_files({"train": 4, "test": 2})
    files["test/REAL/broken.jpg"] = jpeg_bytes(synthetic_image(1, 7))[:150]
    files["train/FAKE/zero.jpg"] = b""
    source = write_zip(tmp_path / "src.zip", files)
    info = json.loads(cifake("data", "info", source, "--json", "-q").stdout)
    assert info["splits"]["train"]["REAL"]["total"] == 4 and info["splits"]["test"]["FAKE"]["total"] == 2
    assert info["splits"]["train"]["FAKE"]["airplane"] == 1
    assert {s["name"].split(":")[-1]: s["reason"].split(" (")[0] for s in info["skipped"]} == {
        "test/REAL/broken.jpg": "truncated or corrupt image data", "train/FAKE/zero.jpg": "empty file"}
    table = cifake("data", "info", source, "-q").stdout
    assert "Skipped files: 2" in table and "broken.jpg" in table and "Cache:" in table


def test_data_audit_writes_report(tmp_path):
    files = tree_files({"train": 3, "test": 2})
    files["test/FAKE/leak.jpg"] = files["train/FAKE/0 (2).jpg"]
    out = tmp_path / "audit"
    proc = cifake("data", "audit", write_zip(tmp_path / "s.zip", files), "--out", out, "-q")
    assert "leaked" in proc.stdout
    assert json.loads((out / "audit.json").read_text())["leaked_test_pixels"] == ["test/FAKE/leak.jpg"]


@pytest.mark.e2e
def test_bad_source_fails_with_a_clear_message(tmp_path):
    proc = cifake("data", "info", tmp_path / "nowhere", check=False)
    assert proc.returncode == 2 and "nowhere: no such file or folder" in proc.stderr


def test_train_then_evaluate(learnable_zip, tmp_path):
    run = tmp_path / "run"
    cli("train", "--data", learnable_zip, "--out", run, "--epochs", "2", "--filters", "16", "--dense", "none", "-q")
    for name in ("model.safetensors", "config.json", "run.json", "history.csv", "training_curves.png",
                 "test_confusion_matrix.png", "test_roc.png", "test_per_class.png", "checkpoint.safetensors"):
        assert (run / name).is_file(), name
    config = json.loads((run / "config.json").read_text())
    assert config["topology"] == {"filters": 16, "conv_layers": 2, "dense": []}
    assert config["training"]["split"]["train"] + config["training"]["split"]["validation"] == 600
    record = json.loads((run / "run.json").read_text())
    assert {k: v for k, v in record.items() if k not in ("validation", "test")} == config["training"]
    phases = record["phases"]
    assert list(phases) == ["split", "training", "validation", "checkpoints_and_setup", "scoring"]
    assert all(v >= 0 for v in phases.values()) and phases["training"] > 0
    # where the run's own seconds went; seconds are rounded to 0.1 and each phase to 0.001
    assert sum(phases.values()) <= record["seconds"] + 0.05 + 0.0005 * len(phases)
    test_metrics = record["test"]
    evaluated = json.loads(cli("evaluate", run, "--data", learnable_zip, "--json", "-q").stdout)
    assert evaluated["accuracy"] == test_metrics["accuracy"] and evaluated["n"] == 200
    assert (run / "eval-test.json").is_file() and (run / "eval-test_roc.png").is_file()
    again = cli("train", "--data", learnable_zip, "--out", run, "-q", check=False)
    assert again.returncode == 2 and "--resume" in again.stderr


@pytest.mark.e2e
def test_training_killed_mid_epoch_resumes_and_matches_an_unbroken_run(tmp_path):
    source = write_zip(tmp_path / "big.zip", tree_files({"train": 2500}))
    args = ["--data", source, "--epochs", "4", "--val-fraction", "0.2", "-q"]
    cli("data", "info", source)  # decode once, outside the timed runs
    unbroken = tmp_path / "unbroken"
    cli("train", *args, "--out", unbroken)  # in this process: only the killed run needs one of its own

    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "cifake", "train", *map(str, args), "--out", str(killed)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (killed / "checkpoint.safetensors").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    # The checkpoint appears (renamed into place) as epoch 2 starts, so killing at once lands in epoch 2's first
    # steps. No wait is safe: epoch 1 pays for the first kernels and, under a parallel test run, for the other
    # workers' start-up, so later epochs can be many times faster. A starved test process may still kill in a
    # later epoch: any epoch but the last is a kill mid-run, from which the resume must continue exactly.
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the run ended before it could be killed"
    assert not (killed / "run.json").exists()
    finished = len(checkpoint_progress(killed).history)
    assert 1 <= finished < 4, f"the kill landed after {finished} of 4 epochs, not mid-run"

    cli("train", *args, "--out", killed, "--resume")
    resumed = json.loads((killed / "config.json").read_text())["training"]
    assert resumed["resumed_from_epoch"] == finished and resumed["epochs_run"] == 4
    metrics = lambda run: json.loads((run / "run.json").read_text())["validation"]
    assert metrics(killed) == metrics(unbroken)


def test_explain_files_overlays_and_bad_file(tmp_path):
    from cifake.models import create_model, save_model

    save_model(create_model("paper"), tmp_path / "run")
    good = tmp_path / "imgs" / "5 (3).jpg"
    good.parent.mkdir()
    good.write_bytes(jpeg_bytes(synthetic_image(0, 5)))
    bad = tmp_path / "imgs" / "bad.jpg"
    bad.write_text("not an image")
    proc = cli("explain", tmp_path / "run", tmp_path / "imgs", "--out", tmp_path / "out", check=False)
    assert proc.returncode == 1 and "bad.jpg: not an image" in proc.stderr
    assert (tmp_path / "out" / "5 (3)_gradcam.png").is_file()
    saved = json.loads((tmp_path / "out" / "explanations.json").read_text())
    assert [r["overlay"] for r in saved["results"]] == ["5 (3)_gradcam.png"] and len(saved["failures"]) == 1
    assert cli("explain", tmp_path / "run", "--out", tmp_path / "o2", check=False).returncode == 2


def _untrained_run(folder):
    import torch

    from cifake.models import create_model, save_model

    torch.manual_seed(0)
    return save_model(create_model("paper"), folder)


def _recoded_png(jpeg: bytes) -> bytes:
    """The same decoded pixels in other bytes: a leak that only a pixel comparison finds."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.open(io.BytesIO(jpeg)).save(buffer, "PNG")
    return buffer.getvalue()


def test_exclude_leaked_drops_pixel_identical_copies_not_only_byte_identical_ones(tmp_path):
    files = tree_files({"train": 12, "test": 6})
    files["test/FAKE/copy.jpg"] = files["train/FAKE/0 (4).jpg"]  # byte-identical to a train image
    files["test/REAL/recoded.png"] = _recoded_png(files["train/REAL/0 (3).jpg"])  # pixel-identical only
    source = write_zip(tmp_path / "leaky.zip", files)
    run = _untrained_run(tmp_path / "run")
    clean = json.loads(cli("evaluate", run, "--data", source, "--exclude-leaked", "--json", "-q").stdout)
    assert clean["excluded_leaked"] == 2 and clean["n"] == 12


def test_evaluate_split_out_and_exclude_leaked(tmp_path):
    from cifake.data import load_dataset
    from cifake.metrics import compute_metrics
    from cifake.models import load_model
    from cifake.models.inference import predict_logits

    files = tree_files({"train": 20, "test": 10})
    files["test/FAKE/leak.jpg"] = files["train/FAKE/1 (4).jpg"]  # a test image that also sits in train
    source = write_zip(tmp_path / "leaky.zip", files)
    run = _untrained_run(tmp_path / "run")
    every = json.loads(cli("evaluate", run, "--data", source, "--json", "-q").stdout)
    clean = json.loads(cli("evaluate", run, "--data", source, "--exclude-leaked", "--json", "-q").stdout)
    assert every["n"] == 21 and every["excluded_leaked"] == 0
    assert clean["n"] == 20 and clean["excluded_leaked"] == 1 and (run / "eval-test-no-leaked.json").is_file()
    data = load_dataset(source, progress=False)
    test = data["test"]
    keep = [i for i, name in enumerate(test.names) if name != "test/FAKE/leak.jpg"]
    logits = predict_logits(load_model(run)[0], test.images[keep])
    assert clean["accuracy"] == compute_metrics(logits, test.labels[keep])["accuracy"]
    out = tmp_path / "elsewhere"
    on_train = json.loads(cli("evaluate", run, "--data", source, "--split", "train", "--out", out, "--json",
                                 "-q").stdout)
    assert on_train["split"] == "train" and on_train["n"] == 40 and (out / "eval-train.json").is_file()
    table = cli("evaluate", run, "--data", source, "--exclude-leaked", "-q").stdout
    assert "Left out 1 leaked test images" in table and "accuracy" in table
    missing = cli("evaluate", run, "--data", source, "--split", "validation", check=False)
    assert missing.returncode == 2 and "does not record how its validation split was made" in missing.stderr
    missing = cli("evaluate", run, "--data", source, "--split", "holdout", check=False)
    assert missing.returncode == 2 and "no split 'holdout'" in missing.stderr


def test_train_the_residual_family_with_every_recipe_option(learnable_zip, tmp_path):
    run = tmp_path / "resnet"
    recipe = {"--optimizer": "sgd", "--lr": "0.05", "--weight-decay": "0.0005", "--schedule": "onecycle",
              "--warmup-epochs": "0.5", "--label-smoothing": "0.1", "--ema": "0.9", "--degrade": "0.25",
              "--batch-size": "32", "--epochs": "2", "--patience": "3", "--val-fraction": "0.25", "--seed": "3",
              "--limit": "60"}
    cli("train", "--data", learnable_zip, "--out", run, "--topology", "resnet-s", "--flip", "--no-bf16",
           "--no-channels-last", *[part for pair in recipe.items() for part in pair], "-q")
    config = json.loads((run / "config.json").read_text())
    training = config["training"]
    assert config["topology"]["family"] == "resnet" and config["topology"]["widths"] == [16, 32, 64]
    assert {k: training["config"][k] for k in (
        "optimizer", "learning_rate", "weight_decay", "schedule", "warmup_epochs", "label_smoothing", "ema",
        "degrade", "batch_size", "epochs", "patience", "seed", "flip", "bf16", "channels_last")} == {
        "optimizer": "sgd", "learning_rate": 0.05, "weight_decay": 0.0005, "schedule": "onecycle",
        "warmup_epochs": 0.5, "label_smoothing": 0.1, "ema": 0.9, "degrade": 0.25, "batch_size": 32, "epochs": 2,
        "patience": 3, "seed": 3, "flip": True, "bf16": False, "channels_last": False}
    assert training["split"]["limit_per_label"] == 60 and training["split"]["val_fraction"] == 0.25
    assert training["split"]["train"] == 90 and training["split"]["validation"] == 30 and training["epochs_run"] == 2
    adamw = tmp_path / "adamw"
    cli("train", "--data", learnable_zip, "--out", adamw, "--filters", "4", "--conv-layers", "1", "--dense", "8",
           "--optimizer", "adamw", "--epochs", "1", "--limit", "40", "-q")
    settings = json.loads((adamw / "config.json").read_text())
    assert settings["topology"] == {"filters": 4, "conv_layers": 1, "dense": [8]}
    assert settings["training"]["config"]["optimizer"] == "adamw"
    bad = cli("train", "--data", learnable_zip, "--out", tmp_path / "bad", "--optimizer", "rmsprop", check=False)
    assert bad.returncode == 2 and "'rmsprop' is not one of 'adam', 'adamw', 'sgd'" in flat(bad.stderr)
    out_of_range = cli("train", "--data", learnable_zip, "--out", tmp_path / "bad", "--ema", "1.5", check=False)
    assert out_of_range.returncode == 2 and "training setting ema must be in [0, 1), not 1.5" in out_of_range.stderr


def test_a_recipe_file_sets_the_training_settings_and_options_override_it(learnable_zip, tmp_path):
    recipe = tmp_path / "recipe.json"
    recipe.write_text(json.dumps({"topology": "resnet-s", "optimizer": "adamw", "learning_rate": 0.003,
                                  "epochs": 3, "flip": True}))
    run = tmp_path / "run"
    cli("train", "--data", learnable_zip, "--out", run, "--recipe", recipe, "--epochs", "1", "--limit", "40", "-q")
    config = json.loads((run / "config.json").read_text())
    assert config["topology"]["family"] == "resnet" and config["topology"]["widths"] == [16, 32, 64]
    settings = config["training"]["config"]
    assert (settings["optimizer"], settings["learning_rate"], settings["flip"], settings["epochs"]) == (
        "adamw", 0.003, True, 1)  # the recipe's, except --epochs given on the command line
    recipe.write_text(json.dumps({"optimiser": "adamw"}))
    bad = cli("train", "--data", learnable_zip, "--out", tmp_path / "bad", "--recipe", recipe, check=False)
    assert bad.returncode == 2 and "unknown training setting(s) optimiser" in bad.stderr


def test_explain_a_dataset_split_from_the_command_line(learnable_zip, tmp_path):
    run = _untrained_run(tmp_path / "run")
    out = tmp_path / "explained"
    proc = cli("explain", run, "--data", learnable_zip, "--split", "train", "--sample", "12", "--per-class", "1",
                  "--layer", "features.1", "--out", out, "-q")
    assert "24 images" in proc.stdout and (out / "explain.html").is_file()
    saved = json.loads((out / "explain.json").read_text())
    assert saved["per_label"] == {"REAL": 12, "FAKE": 12} and saved["layer"] == "features.1"
    image = tmp_path / "one.jpg"
    image.write_bytes(jpeg_bytes(synthetic_image(1, 0)))
    for target in ("REAL", "FAKE"):
        cli("explain", run, image, "--target", target, "--out", tmp_path / target)
    real = (tmp_path / "REAL" / "one_gradcam.png").read_bytes()
    assert real != (tmp_path / "FAKE" / "one_gradcam.png").read_bytes()  # each target has a map of its own
    bad_layer = cli("explain", run, image, "--layer", "no.such.layer", "--out", tmp_path / "x", check=False)
    assert bad_layer.returncode == 2 and "no.such.layer" in bad_layer.stderr


def test_data_info_refresh_decodes_again(tmp_path):
    source = write_zip(tmp_path / "s.zip", tree_files({"train": 2}))
    first = json.loads(cli("data", "info", source, "--json", "-q").stdout)
    manifest = tmp_path.joinpath(first["cache"], "manifest.json")
    written = manifest.stat().st_mtime_ns
    cli("data", "info", source, "--json", "-q")
    assert manifest.stat().st_mtime_ns == written  # a warm load reads the cache
    again = json.loads(cli("data", "info", source, "--refresh", "--json", "-q").stdout)
    assert again["cache"] == first["cache"] and manifest.stat().st_mtime_ns > written
    assert again["splits"] == first["splits"]


def test_cache_option_places_the_decoded_images(tmp_path):
    source = write_zip(tmp_path / "s.zip", tree_files({"train": 2}))
    info = json.loads(cli("data", "info", source, "--cache", tmp_path / "mine", "--json", "-q").stdout)
    assert info["cache"].startswith(str(tmp_path / "mine")) and (tmp_path / "mine").is_dir()


def _assert_readable_at_80_columns(text: str, figures: list[str]) -> None:
    """Every line fits in 80 columns, nothing is cut with an ellipsis, and each figure is printed whole."""
    assert all(len(line) <= 80 for line in text.splitlines()), max(text.splitlines(), key=len)
    assert "…" not in text
    words = set(text.replace("|", " ").split())
    missing = [figure for figure in figures if figure not in words]
    assert not missing, f"{missing} not printed whole in:\n{text}"


def test_search_status_table_keeps_the_longest_paper_topology_name_on_one_line(monkeypatch):
    """The one table writer at 80 columns (as when piped): the paper search's longest trial name beside
    search-status's six figure columns must neither fold nor push a figure off the line."""
    import io

    from rich.console import Console

    from cifake.cli import common
    from cifake.cli.search import STATUS_HEADER
    from cifake.search.grid import PROFILES

    space = PROFILES["paper"].space
    extractor = max(space.stage1(), key=lambda t: len(t.name))
    longest = max(space.stage2(extractor), key=lambda t: len(t.name)).name
    monkeypatch.setattr(common, "console", Console(file=io.StringIO(), width=80))
    row = [longest, "2", "finished", "10/10", 0.1833, "1h15m", 0.9297]
    common.print_table(STATUS_HEADER, [row])
    shown = common.console.file.getvalue()
    assert len(longest) == 23 and shown.splitlines()[-1].split() == list(map(common.fmt, row))
    _assert_readable_at_80_columns(shown, [longest, "0.1833", "0.9297"])


def test_every_table_is_readable_at_80_columns_and_offers_json(learnable_zip, tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    info = json.loads(cli("data", "info", learnable_zip, "--json", "-q").stdout)
    counts = [f"{n:,}" for split in info["splits"].values() for row in split.values() for n in row.values()]
    _assert_readable_at_80_columns(cli("data", "info", learnable_zip, "-q").stdout, counts)

    audit = json.loads(cli("data", "audit", learnable_zip, "--out", tmp_path / "a", "--json", "-q").stdout)
    _assert_readable_at_80_columns(cli("data", "audit", learnable_zip, "--out", tmp_path / "a", "-q").stdout,
                                   [f"{n:,}" for n in audit["splits"].values()])

    run = tmp_path / "run"
    cli("train", "--data", learnable_zip, "--out", run, "--epochs", "1", "--filters", "4", "--dense", "none", "-q")
    metrics = json.loads(cli("evaluate", run, "--data", learnable_zip, "--json", "-q").stdout)
    _assert_readable_at_80_columns(cli("evaluate", run, "--data", learnable_zip, "-q").stdout,
                                   [f"{metrics[k]:.4f}" for k in ("accuracy", "loss", "roc_auc", "fake_f1")])

    report = json.loads(cli("calibrate", run, "--data", learnable_zip, "--json", "-q").stdout)
    figures = [f"{report[s]['ece_after']:.4f}" for s in ("validation", "test", "test_without_leaked")]
    figures += [f"{report[s]['decision']['unsure']:.2%}" for s in ("validation", "test")]
    _assert_readable_at_80_columns(cli("calibrate", run, "--data", learnable_zip, "-q").stdout, figures)

    result = json.loads(cli("robustness", run, "--data", learnable_zip, "--limit", "20", "--json", "-q").stdout)
    figures = [f"{row[k]:.4f}" for row in result["rows"] for k in ("accuracy", "roc_auc_without_leaked")]
    _assert_readable_at_80_columns(cli("robustness", run, "--data", learnable_zip, "--limit", "20", "-q").stdout,
                                   figures + [row["condition"].split()[0] for row in result["rows"]])
