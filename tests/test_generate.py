"""`cifake generate` and `cifake data build`, offline, on a tiny random-weight Stable Diffusion pipeline."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from PIL import Image, JpegImagePlugin

from cifake.data import load_dataset
from cifake.data.sources import cifar_class
from cifake.generate import GenerateConfig, counts_like, image_seed, parse_shard, plan_jobs
from cifake.generate.tiny import build_tiny_pipeline
from conftest import cli, flat, synthetic_image, tree_files, write_tree

FAST = ["--classes", "airplane,cat", "--per-class", "3", "--steps", "2", "--size", "64", "--batch-size", "2", "-q"]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return build_tiny_pipeline(tmp_path_factory.mktemp("tiny-sd") / "sd")


def cifake(*args, check=True, env=None):
    proc = subprocess.run([sys.executable, "-m", "cifake", *map(str, args)], capture_output=True, text=True,
                          timeout=600, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def files_of(folder):
    return {p.name: p.read_bytes() for p in sorted((folder / "FAKE").iterdir())}


def test_plan_names_seeds_and_shards():
    config = GenerateConfig(out="x", classes=["airplane", "cat", "dog"], per_class=[2, 1, 0])
    jobs = plan_jobs(config)
    assert [j.file_name for j in jobs] == ["0.jpg", "1.jpg", "0 (4).jpg"]  # cat is CIFAR-10 class 3
    assert [j.class_index for j in jobs] == [0, 0, 3]
    assert [j.prompt for j in jobs] == ["a photograph of an airplane"] * 2 + ["a photograph of a cat"]
    assert jobs[2].seed == image_seed(1, "cat", 0) != image_seed(2, "cat", 0)
    big = GenerateConfig(out="x", classes=["a", "b"], per_class=5)
    shards = [plan_jobs(GenerateConfig(out="x", classes=["a", "b"], per_class=5, shard=(i, 3))) for i in range(3)]
    names = [(j.class_name, j.index) for s in shards for j in s]
    assert sorted(names) == sorted((j.class_name, j.index) for j in plan_jobs(big)) and len(set(names)) == 10
    assert parse_shard("1/4") == (1, 4)
    with pytest.raises(ValueError, match=r"^generation setting steps must be .*, not 0$"):  # named as the CLI shows it
        GenerateConfig(out="x", steps=0)
    with pytest.raises(ValueError, match=r"--shard 4/4: need 0 <= i < n"):
        parse_shard("4/4")
    for shard in (3, -1):  # a plan asked for directly (the API) names the indices that exist
        with pytest.raises(ValueError, match=rf"^shard {shard}/3: the index must lie in 0\.\.2$"):
            plan_jobs(GenerateConfig(out="x", classes=["a"], per_class=1, shard=(shard, 3)))


def test_generate_writes_cifake_files_and_manifest(tiny_model, tmp_path):
    out = tmp_path / "twin"
    cli("generate", "--model", tiny_model, "--out", out, *FAST, "--keep-full-size")
    files = files_of(out)
    assert set(files) == {"0.jpg", "1.jpg", "2.jpg", "0 (4).jpg", "1 (4).jpg", "2 (4).jpg"}
    reference = Image.open(out / "FAKE" / "0.jpg")
    assert reference.format == "JPEG" and reference.size == (32, 32) and reference.mode == "RGB"
    assert JpegImagePlugin.get_sampling(reference) == 2  # 4:2:0
    quality75 = tmp_path / "q75.jpg"
    Image.fromarray(synthetic_image(1, 0)).save(quality75, "JPEG", quality=75)
    assert reference.quantization == Image.open(quality75).quantization
    assert Image.open(out / "full-size" / "cat" / "0 (4).png").size == (64, 64)
    manifest = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert len(manifest) == 6 and {m["file"] for m in manifest} == {f"FAKE/{n}" for n in files}
    entry = next(m for m in manifest if m["file"] == "FAKE/1 (4).jpg")
    assert entry["prompt"] == "a photograph of a cat" and entry["seed"] == image_seed(1, "cat", 1)
    assert entry["class_index"] == 3
    assert entry["scheduler"] == "euler-ancestral" and entry["steps"] == 2 and entry["seconds"] > 0
    data = load_dataset(out, progress=False)  # the data layer reads the result directly
    assert len(data["all"]) == 6 and set(data["all"].labels) == {0}
    assert sorted(set(data["all"].classes)) == [0, 3]  # airplane and cat, by their CIFAR-10 numbers


def test_same_seed_same_bytes_and_single_image_regeneration(tiny_model, tmp_path):
    cli("generate", "--model", tiny_model, "--out", tmp_path / "a", *FAST)
    cli("generate", "--model", tiny_model, "--out", tmp_path / "b", *FAST)
    first = files_of(tmp_path / "a")
    assert first == files_of(tmp_path / "b")
    (tmp_path / "a" / "FAKE" / "1 (4).jpg").unlink()
    proc = cli("generate", "--model", tiny_model, "--out", tmp_path / "a", *FAST)
    assert "1 made, 5 already there" in proc.stdout
    assert files_of(tmp_path / "a") == first  # made alone, in a batch of one, the image is the same
    cli("generate", "--model", tiny_model, "--out", tmp_path / "c", *FAST, "--seed", "2")
    assert files_of(tmp_path / "c")["0.jpg"] != first["0.jpg"]


@pytest.mark.e2e
def test_killed_run_resumes(tiny_model, tmp_path):
    args = ["generate", "--model", tiny_model, "--classes", "airplane,cat", "--per-class", "8", "--steps", "3",
            "--size", "64", "--batch-size", "1", "-q"]
    cifake(*args, "--out", tmp_path / "whole")
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "cifake", *map(str, args), "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and len(list((out / "FAKE").glob("*.jpg"))) < 3:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the run ended before it could be killed"
    made = len(list((out / "FAKE").glob("*.jpg")))
    assert 0 < made < 16 and not list((out / "FAKE").glob(".*"))  # no half-written file is visible
    resumed = cifake(*args, "--out", out)
    assert f"{16 - made} made, {made} already there" in resumed.stdout
    assert files_of(out) == files_of(tmp_path / "whole")
    manifest = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert {m["file"] for m in manifest} == {f"FAKE/{n}" for n in files_of(out)}


def test_shards_split_without_overlap(tiny_model, tmp_path):
    for shard in ("0/2", "1/2"):
        cli("generate", "--model", tiny_model, "--out", tmp_path / "s", *FAST, "--shard", shard)
    cli("generate", "--model", tiny_model, "--out", tmp_path / "one", *FAST)
    assert files_of(tmp_path / "s") == files_of(tmp_path / "one")
    lines = (tmp_path / "s" / "manifest.jsonl").read_text().splitlines()
    assert len(lines) == 6 and len({json.loads(line)["file"] for line in lines}) == 6


@pytest.mark.e2e
def test_no_weights_fails_at_once_with_instructions(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    started = time.time()
    proc = cifake("generate", "--out", tmp_path / "x", "--per-class", "1", check=False, env=env)
    assert proc.returncode == 2 and time.time() - started < 60
    assert "huggingface-cli download CompVis/stable-diffusion-v1-4" in proc.stderr and "--model" in proc.stderr
    assert not (tmp_path / "x" / "FAKE").exists() or not any((tmp_path / "x" / "FAKE").iterdir())
    (tmp_path / "empty").mkdir()
    proc = cifake("generate", "--out", tmp_path / "y", "--model", tmp_path / "empty", check=False)
    assert proc.returncode == 2 and "no model_index.json" in proc.stderr


def test_like_and_build_make_a_cifake_dataset(tiny_model, tmp_path):
    real = write_tree(tmp_path / "real", tree_files({"x": 20}, split_dirs=False))  # 20 REAL: 2 per class
    (real / "REAL" / "1 (3).jpg").unlink()
    names, counts = counts_like(real)
    assert names[:3] == ["airplane", "automobile", "bird"] and counts == [2, 2, 1, 2, 2, 2, 2, 2, 2, 2]
    (real / "REAL" / "1 (3).jpg").write_bytes((real / "REAL" / "0 (3).jpg").read_bytes())
    twin = tmp_path / "twin"
    cli("generate", "--model", tiny_model, "--out", twin, "--like", real, "--steps", "2", "--size", "64", "-q")
    assert len(files_of(twin)) == 20
    built = tmp_path / "built"
    proc = cli("data", "build", "--real", real, "--fake", twin, "--out", built, "--test-fraction", "0.5")
    data = load_dataset(built, progress=False)
    assert set(data.splits) == {"train", "test"}
    for split in ("train", "test"):
        counts = data[split].counts()
        assert counts["REAL"]["total"] == counts["FAKE"]["total"] == 10, proc.stdout
        assert counts["REAL"]["airplane"] == counts["FAKE"]["truck"] == 1
    origins = json.loads((built / "build.json").read_text())["files"]
    assert len(origins) == 40 and all(":" in v for v in origins.values())
    again = cli("data", "build", "--real", real, "--fake", twin, "--out", built, check=False)
    assert again.returncode == 2 and "not empty" in again.stderr


def test_ray_fans_shards_out(tiny_model, tmp_path):
    pytest.importorskip("ray", reason="ray is in the dev extra; CI installs it")
    from cifake.generate.distributed import generate_on_ray

    config = GenerateConfig(out=str(tmp_path / "ray"), classes=["airplane", "cat"], per_class=3, model=str(tiny_model),
                            steps=2, size=64, batch_size=2)
    summaries = generate_on_ray(config, "local", shards=2, gpus_per_shard=0)
    assert sorted(s["planned"] for s in summaries) == [3, 3] and sum(s["generated"] for s in summaries) == 6
    assert len(list((tmp_path / "ray" / "FAKE").glob("*.jpg"))) == 6


def test_generate_device_dtype_and_ray_options(tiny_model, tmp_path):
    out = tmp_path / "bf16"
    cli("generate", "--model", tiny_model, "--out", out, *FAST, "--device", "cpu", "--dtype", "bf16")
    manifest = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert len(manifest) == 6 and {(m["device"], m["dtype"]) for m in manifest} == {("cpu", "bf16")}
    assert all(Image.open(out / m["file"]).size == (32, 32) for m in manifest)
    bad = cli("generate", "--model", tiny_model, "--out", tmp_path / "x", *FAST, "--dtype", "fp8", check=False)
    assert bad.returncode == 2 and "'fp8' is not one of 'fp32', 'fp16', 'bf16'" in flat(bad.stderr)
    pytest.importorskip("ray", reason="ray is in the dev extra; CI installs it")
    on_ray = cli("generate", "--model", tiny_model, "--out", tmp_path / "ray", *FAST, "--ray-address", "local",
                 check=False)
    assert on_ray.returncode == 2 and "no GPUs" in on_ray.stderr and "--shard" in on_ray.stderr


def test_classes_outside_cifar10_are_named_so_they_read_back_as_unknown(tiny_model, tmp_path):
    config = GenerateConfig(out="x", classes=["truck", "Cat", "giraffe", "frog"], per_class=2)
    jobs = plan_jobs(config)
    assert [j.class_index for j in jobs] == [9, 9, 3, 3, -1, -1, 6, 6]
    assert [j.file_name for j in jobs if j.class_name == "giraffe"] == ["giraffe-0.jpg", "giraffe-1.jpg"]
    assert [cifar_class(j.file_name) for j in jobs] == [j.class_index for j in jobs]
    with pytest.raises(ValueError, match="twice"):
        GenerateConfig(out="x", classes=["cat", "CAT"]).counts()
    out = tmp_path / "odd"
    cli("generate", "--model", tiny_model, "--out", out, "--classes", "ship,giraffe", "--per-class", "2", "--steps",
        "2", "--size", "64", "-q")
    data = load_dataset(out, progress=False)["all"]
    assert sorted(zip(data.names.tolist(), data.classes.tolist())) == [
        ("FAKE/0 (9).jpg", 8), ("FAKE/1 (9).jpg", 8), ("FAKE/giraffe-0.jpg", -1), ("FAKE/giraffe-1.jpg", -1)]


def test_prompts_seeds_counts_and_shards_are_checked():
    import hashlib

    from cifake.generate.plan import prompt_for

    assert prompt_for("a photograph of {article} {label}", "airplane") == "a photograph of an airplane"
    assert prompt_for("{article} {label}", "horse") == "a horse" and prompt_for("{article} {label}", "Owl") == "an Owl"
    expected = int.from_bytes(hashlib.sha256(b"1/cat/0").digest()[:8], "big") >> 1  # never changes between versions
    assert image_seed(1, "cat", 0) == expected < 2**63 and image_seed(1, "cat", 1) != expected
    assert image_seed(1, "dog", 0) != expected
    assert GenerateConfig(out="x", classes=["cat", "dog"], per_class=[3, 0]).counts() == [3, 0]
    for bad in ([1], [1, -1], -2):
        with pytest.raises(ValueError, match="one non-negative count per class"):
            GenerateConfig(out="x", classes=["cat", "dog"], per_class=bad).counts()
    for text in ("x", "1", "0/0", "-1/3", "3/3", "1/2/3"):
        with pytest.raises(ValueError, match="--shard"):
            parse_shard(text)
    assert parse_shard("0/1") == (0, 1)
    with pytest.raises(ValueError, match="shard 2/2"):
        plan_jobs(GenerateConfig(out="x", shard=(2, 2)))
    with pytest.raises(ValueError, match="no letters or digits"):
        plan_jobs(GenerateConfig(out="x", classes=["!!!"], per_class=1))


def test_like_needs_real_images_with_cifar_classes(tmp_path, capfd):
    folder = tmp_path / "mine"
    (folder / "REAL").mkdir(parents=True)
    (folder / "FAKE").mkdir()
    Image.fromarray(synthetic_image(1, 0)).save(folder / "REAL" / "holiday.jpg")
    Image.fromarray(synthetic_image(0, 0)).save(folder / "FAKE" / "3 (4).jpg")  # a FAKE cat does not count
    with pytest.raises(ValueError, match="no REAL images with a CIFAR-10 class"):
        counts_like(folder)
    Image.fromarray(synthetic_image(1, 1)).save(folder / "REAL" / "7 (10).jpg")
    capfd.readouterr()
    assert counts_like(folder) == (["truck"], [1])
    assert capfd.readouterr() == ("", "")  # read quietly: `generate --like` prints its own lines


def test_config_to_dict_round_trips():
    config = GenerateConfig(out="x", classes=["cat"], per_class=[2], shard=(1, 3))
    assert GenerateConfig(**config.to_dict()) == config and config.to_dict()["classes"] == ["cat"]
