"""The `cifake` command end to end, in subprocesses as a user runs it."""

import json
import signal
import subprocess
import sys
import time


from conftest import jpeg_bytes, synthetic_image, tree_files, write_zip


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


def test_bad_source_fails_with_a_clear_message(tmp_path):
    proc = cifake("data", "info", tmp_path / "nowhere", check=False)
    assert proc.returncode == 2 and "nowhere: no such file or folder" in proc.stderr


def test_train_then_evaluate(learnable_zip, tmp_path):
    run = tmp_path / "run"
    cifake("train", "--data", learnable_zip, "--out", run, "--epochs", "2", "--filters", "16", "--dense", "none", "-q")
    for name in ("model.safetensors", "config.json", "metrics.json", "history.csv", "training_curves.png",
                 "test_confusion_matrix.png", "test_roc.png", "test_per_class.png", "checkpoint.safetensors"):
        assert (run / name).is_file(), name
    config = json.loads((run / "config.json").read_text())
    assert config["topology"] == {"filters": 16, "conv_layers": 2, "dense": []}
    assert config["training"]["data"]["train"] + config["training"]["data"]["validation"] == 600
    test_metrics = json.loads((run / "metrics.json").read_text())["test"]
    evaluated = json.loads(cifake("evaluate", run, "--data", learnable_zip, "--json", "-q").stdout)
    assert evaluated["accuracy"] == test_metrics["accuracy"] and evaluated["n"] == 200
    assert (run / "eval-test.json").is_file() and (run / "eval-test_roc.png").is_file()
    again = cifake("train", "--data", learnable_zip, "--out", run, "-q", check=False)
    assert again.returncode == 2 and "--resume" in again.stderr


def test_training_killed_mid_epoch_resumes_and_matches_an_unbroken_run(tmp_path):
    source = write_zip(tmp_path / "big.zip", tree_files({"train": 2500}))
    args = ["--data", source, "--epochs", "4", "--val-fraction", "0.2", "-q"]
    cifake("data", "info", source, "-q")  # decode once, outside the timed runs
    unbroken = tmp_path / "unbroken"
    cifake("train", *args, "--out", unbroken)

    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "cifake", "train", *map(str, args), "--out", str(killed)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (killed / "checkpoint.safetensors").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    time.sleep(0.3)  # well inside the second epoch
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the run ended before it could be killed"
    assert not (killed / "metrics.json").exists()

    proc = cifake("train", *args, "--out", killed, "--resume")
    resumed = json.loads((killed / "config.json").read_text())["training"]
    assert 1 <= resumed["resumed_from_epoch"] < 4 and resumed["epochs_run"] == 4
    metrics = lambda run: json.loads((run / "metrics.json").read_text())["validation"]
    assert metrics(killed) == metrics(unbroken)


def test_explain_files_overlays_and_bad_file(tmp_path):
    from cifake.models import build_model, save_model

    save_model(build_model("paper"), tmp_path / "run")
    good = tmp_path / "imgs" / "5 (3).jpg"
    good.parent.mkdir()
    good.write_bytes(jpeg_bytes(synthetic_image(0, 5)))
    bad = tmp_path / "imgs" / "bad.jpg"
    bad.write_text("not an image")
    proc = cifake("explain", tmp_path / "run", tmp_path / "imgs", "--out", tmp_path / "out", check=False)
    assert proc.returncode == 1 and "bad.jpg: not an image" in proc.stderr
    assert (tmp_path / "out" / "5 (3)_gradcam.png").is_file()
    saved = json.loads((tmp_path / "out" / "explanations.json").read_text())
    assert [r["overlay"] for r in saved["results"]] == ["5 (3)_gradcam.png"] and len(saved["failures"]) == 1
    assert cifake("explain", tmp_path / "run", "--out", tmp_path / "o2", check=False).returncode == 2
