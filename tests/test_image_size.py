"""Image size and preprocessing owned by the model; generator sources; unsplit data; data read in bounded memory;
`cifake study` (on the face set when it is there)."""

from __future__ import annotations

import io
import json
import os
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import REPO, cli, flat, jpeg_bytes, synthetic_image, write_tree


def sized_files(side: int, per_label: dict[str, int], fakes: tuple[str, ...] = (), split_dirs: bool = True
                ) -> dict[str, bytes]:
    """{path: JPEG} of side x side images; FAKE images spread over the folders `fakes` (a source each) if given."""
    files = {}
    for split, count in per_label.items():
        for label, label_dir in ((1, "REAL"), (0, "FAKE")):
            for i in range(count):
                folder = f"{split}/{label_dir}" if split_dirs else label_dir
                if label == 0 and fakes:
                    folder += f"/{fakes[i % len(fakes)]}"
                pixels = synthetic_image(label, i + 1000 * (split == "test"), side)
                files[f"{folder}/img-{i:03d}.jpg"] = jpeg_bytes(pixels, quality=95)
    return files


@pytest.fixture(scope="module")
def sized_tree(tmp_path_factory) -> Path:
    """96 px images, train 24 + 24, test 12 + 12, FAKE from two sources."""
    return write_tree(tmp_path_factory.mktemp("sized"), sized_files(96, {"train": 24, "test": 12}, ("gen-a", "gen-b")))


def _train(data: Path, out: Path, *options) -> dict:
    cli("train", "--data", data, "--out", out, "--epochs", "1", "--batch-size", "16", "-q", *options)
    return json.loads((out / "run.json").read_text())


def test_a_crop_model_takes_an_array_or_a_pillow_image_as_it_takes_the_file(sized_tree, tmp_path):
    """An array or a Pillow image goes the way the file goes (decoded at its native size, then cropped), under the
    same pixel limit."""
    from cifake import Detector

    run = tmp_path / "run"
    _train(sized_tree, run, "--image-size", 32, "--preprocess", "crop", "--topology", "paper")
    photo = sized_tree / "test" / "FAKE" / "gen-a" / "img-000.jpg"
    detector = Detector.load(run, backend="torch")
    (found,) = detector.predict([photo])
    pixels = np.asarray(Image.open(photo).convert("RGB"))
    # A small limit first: a limit mistaken for the size then costs megabytes, not all of the machine's memory.
    at_limit = Detector.load(run, backend="torch", max_pixels=96 * 96).predict([pixels])[0]
    assert at_limit.prob_fake == pytest.approx(found.prob_fake, abs=1e-6)
    for item in (pixels, Image.open(photo)):
        assert detector.predict([item])[0].prob_fake == pytest.approx(found.prob_fake, abs=1e-6)
    for small in Detector.load(run, backend="torch", max_pixels=96 * 96 - 1).predict([pixels, photo]):
        assert small.prob_fake is None and "decompression bomb" in small.error  # an array, then the file


@pytest.mark.parametrize(("size", "mode", "topology"), [(16, "resize", "paper"), (64, "resize", "resnet-s"),
                                                        (32, "crop", "resnet-s")])
def test_a_model_of_any_size_trains_loads_predicts_exports_explains_calibrates_and_serves(
        sized_tree, tmp_path, size, mode, topology):
    from fastapi.testclient import TestClient

    from cifake import Detector
    from cifake.data import Preprocess
    from cifake.data.decode import decode_for
    from cifake.data.preprocess import corner_offsets, crop_windows  # by hand, not through prediction_crops
    from cifake.models import load_model
    from cifake.models.export import OnnxRunner
    from cifake.models.inference import predict_logits
    from cifake.serve.app import create_app

    run = tmp_path / "run"
    record = _train(sized_tree, run, "--image-size", size, "--preprocess", mode, "--topology", topology)
    assert record["config"]["image_size"] == size and record["data"]["size"] == size
    config = json.loads((run / "config.json").read_text())
    assert config["input"]["size"] == size and config["input"]["preprocess"] == mode
    model, _ = load_model(run)
    assert model.preprocess == Preprocess(size, mode)

    photo = sized_tree / "test" / "FAKE" / "gen-a" / "img-000.jpg"
    stored, extent, _ = decode_for(photo.read_bytes(), Preprocess(size, mode))
    views = (stored[None] if mode == "resize" else
             crop_windows(np.stack([stored] * 5), np.array(corner_offsets(extent, size)), size))
    expected = 1 - 1 / (1 + np.exp(-predict_logits(model, views).mean()))
    detector = Detector.load(run, backend="torch")
    (found,) = detector.predict([photo])
    assert found.prob_fake == pytest.approx(float(expected), abs=1e-5)  # the model's own size, and 5 crops averaged

    cli("export", run, "--onnx", tmp_path / "model.onnx")
    runner = OnnxRunner(tmp_path / "model.onnx")
    np.testing.assert_allclose(runner(views), predict_logits(model, views), atol=1e-4)

    (explained,) = detector.explanations([photo])
    assert explained.heatmap.shape == (size, size) and explained.pixels.shape == (size, size, 3)

    cli("calibrate", run, "--data", sized_tree)
    calibrated = json.loads((run / "config.json").read_text())
    assert "calibration" in calibrated and calibrated["domain"]["sides"] == [96, 96]  # the files' size, not N
    assert Detector.load(run, backend="torch").predict([photo])[0].in_domain is not None
    large = Image.open(photo).resize((384, 384), Image.NEAREST)  # 4 times the training files' side
    encoded = io.BytesIO()
    large.save(encoded, "PNG")
    found = Detector.load(run, backend="torch").predict([encoded.getvalue(), large, np.asarray(large)])
    assert len({(f.prob_fake, f.domain_score, f.in_domain) for f in found}) == 1  # bytes, Pillow, array alike
    assert found[0].in_domain is False and (mode == "crop" or found[0].domain_score <= 1)  # resized: by size alone
    robust = json.loads(cli("robustness", run, "--data", sized_tree, "--condition", "clean", "--condition",
                            "jpeg q75", "--json", "-q").stdout)
    assert robust["images"] == 24 and robust["rows"][0]["accuracy"] == pytest.approx(
        json.loads((run / "run.json").read_text())["test"]["accuracy"])  # the model's own size, no decode at 32
    if mode == "crop":  # the dataset report: maps at the model's size, rows by source (no CIFAR-10 classes here)
        cli("explain", run, "--data", sized_tree, "--sample", "4", "--out", tmp_path / "explain", "-q")
        summary = json.loads((tmp_path / "explain" / "explain.json").read_text())
        assert summary["image_size"] == size and set(summary["centre_share"]["per_source"]) == {"REAL", "gen-a",
                                                                                               "gen-b"}

    client = TestClient(create_app(Detector.load(run, backend="torch")))
    described = {16: "resized to 16x16 pixels", 64: "resized to 64x64 pixels",
                 32: "5 crops of 32x32 native pixels, their scores averaged"}[size]
    assert client.get("/v1/model").json()["input"] == {"size": size, "preprocess": mode, "described": described}
    response = client.post("/v1/predict", files=[("files", ("x.jpg", photo.read_bytes(), "image/jpeg"))])
    assert response.status_code == 200 and response.json()["results"][0]["prob_fake"] is not None


def test_sources_are_counted_scored_per_source_and_left_out_on_request(sized_tree, tmp_path):
    info = json.loads(cli("data", "info", sized_tree, "--json", "-q").stdout)
    assert info["sources"]["train"]["FAKE"] == {"gen-a": 12, "gen-b": 12}
    assert info["sources"]["test"]["REAL"] == {"REAL": 12}

    record = _train(sized_tree, tmp_path / "all")
    assert set(record["test"]["per_source"]) == {"REAL", "gen-a", "gen-b"}
    assert record["test"]["per_source"]["gen-a"]["n"] == 6 and record["test"]["per_source"]["gen-a"]["label"] == "FAKE"

    without = _train(sized_tree, tmp_path / "without-b", "--exclude-source", "gen-b")
    assert without["split"]["exclude_sources"] == ["gen-b"]
    assert without["split"]["train"] + without["split"]["validation"] == 24 + 12  # gen-b's 12 not trained on
    assert without["test"]["per_source"]["gen-b"]["n"] == 6  # but scored: how the model does on a source unseen
    assert set(without["data"]["sources"]["FAKE"]) == {"gen-a"}

    refused = cli("train", "--data", sized_tree, "--out", tmp_path / "bad", "--exclude-source", "gen-z",
                  check=False)
    assert refused.returncode == 2 and "no source named gen-z" in flat(refused.stdout + refused.stderr)


def test_an_unsplit_source_gets_a_seeded_stratified_test_share_that_evaluate_carves_again(tmp_path):
    root = write_tree(tmp_path / "mine", sized_files(48, {"x": 40}, ("a", "b"), split_dirs=False))
    record = _train(root, tmp_path / "run", "--test-share", "0.25")
    assert record["split"]["test_share"] == 0.25
    assert record["test"]["n"] == 10 + 5 + 5  # a quarter of each label and source: REAL 40, a 20, b 20
    assert record["split"]["train"] + record["split"]["validation"] == 60
    assert {name: row["n"] for name, row in record["test"]["per_source"].items()} == {"REAL": 10, "a": 5, "b": 5}
    again = json.loads(cli("evaluate", tmp_path / "run", "--data", root, "--json").stdout)
    assert again["n"] == record["test"]["n"] and again["accuracy"] == pytest.approx(record["test"]["accuracy"])


def test_the_size_is_read_from_the_model_and_a_mismatch_is_refused(sized_tree, tmp_path):
    from cifake.data import Preprocess, load_dataset
    from cifake.models import load_model
    from cifake.workflows.experiment import evaluate_run

    run = tmp_path / "run"
    _train(sized_tree, run, "--image-size", "16")
    at_32 = load_dataset(sized_tree, preprocess=Preprocess(32), progress=False)
    with pytest.raises(ValueError, match="takes 16 px images"):
        evaluate_run(run, at_32, "test")
    metrics = json.loads(cli("evaluate", run, "--data", sized_tree, "--json").stdout)  # the CLI decodes at 16
    assert metrics["n"] == 24

    config = json.loads((run / "config.json").read_text())
    config["input"]["size"] = 32  # the paper CNN's dense layer then has another width
    (run / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="do not fit"):
        load_model(run)


def test_bad_sizes_and_ensembles_of_mixed_sizes_are_clear_errors(sized_tree, tmp_path):
    small = cli("train", "--data", sized_tree, "--out", tmp_path / "x", "--image-size", "8", check=False)
    assert small.returncode == 2 and "16" in flat(small.stdout + small.stderr)
    for size in (16, 32):
        _train(sized_tree, tmp_path / f"m{size}", "--image-size", size, "--topology", "resnet-s")
    mixed = cli("ensemble", tmp_path / "m16", tmp_path / "m32", "--out", tmp_path / "ens", check=False)
    assert mixed.returncode == 2 and "must share their input" in flat(mixed.stdout + mixed.stderr)


@pytest.mark.parametrize(("width", "height"), [(51, 41), (30, 12), (12, 30), (16, 23), (15, 40)])
def test_a_crop_window_holds_the_centre_of_the_native_pixels_computed_by_hand(width, height):
    """N = 16: the window is 2N = 32 square; an image whose short side is under N is first enlarged, bilinear,
    until that side is N; then the centre square of at most 2N native pixels is kept, the rest of the window 0."""
    from cifake.data.decode import image_to_window

    pixels = np.random.default_rng(width * height).integers(0, 256, (height, width, 3), np.uint8)
    image = Image.fromarray(pixels)
    upscaled = min(width, height) < 16
    if upscaled:
        scale = 16 / min(width, height)
        image = image.resize((max(16, round(width * scale)), max(16, round(height * scale))),
                             Image.Resampling.BILINEAR)
    w, h = image.size
    extent = min(w, h, 32)
    left, top = (w - extent) // 2, (h - extent) // 2
    window, got_extent, got_upscaled = image_to_window(Image.fromarray(pixels), 16)
    assert (got_extent, got_upscaled, window.dtype, window.shape) == (extent, upscaled, np.uint8, (32, 32, 3))
    assert np.array_equal(window[:extent, :extent], np.asarray(image)[top:top + extent, left:left + extent])
    assert not window[extent:].any() and not window[:, extent:].any()


def test_a_crop_models_decoder_keeps_the_pixel_limit_it_is_given():
    from cifake.data.decode import BadImage, decode_window

    data = jpeg_bytes(np.zeros((300, 400, 3), np.uint8))
    with pytest.raises(BadImage, match="decompression bomb"):
        decode_window(data, 16, max_pixels=100_000)
    assert decode_window(data, 16, max_pixels=120_000)[0].shape == (32, 32, 3)


def test_an_image_smaller_than_the_crop_is_enlarged_and_flagged(tmp_path):
    from cifake import Detector
    from cifake.data.decode import BadImage, decode_window

    small = jpeg_bytes(synthetic_image(1, 0, 40)[:10, :20].copy())
    window, extent, upscaled = decode_window(small, 16)
    assert upscaled and extent == 16 and window.shape == (32, 32, 3) and window[16:].max() == 0
    big = jpeg_bytes(synthetic_image(1, 0, 200))
    window, extent, upscaled = decode_window(big, 16)
    assert not upscaled and extent == 32  # a window of 2N native pixels, not the whole image
    with pytest.raises(BadImage, match=r"^empty file \(0 bytes\)$"):  # named as the resize path names it
        decode_window(b"", 16)

    files = sized_files(48, {"train": 12, "test": 6})
    files["test/REAL/tiny.jpg"] = small
    root = write_tree(tmp_path / "d", files)
    cli("train", "--data", root, "--out", tmp_path / "run", "--epochs", "1", "--image-size", "16", "--preprocess",
        "crop", "--topology", "resnet-s", "-q")
    info = json.loads(cli("data", "info", root, "--image-size", "16", "--preprocess", "crop", "--json", "-q").stdout)
    assert info["upscaled"] == 1
    found = Detector.load(tmp_path / "run", backend="torch").predict([root / "test/REAL/tiny.jpg",
                                                                     root / "test/REAL/img-000.jpg"])
    assert [p.upscaled for p in found] == [True, False]
    out = cli("predict", "--model", tmp_path / "run", root / "test/REAL/tiny.jpg").stdout
    assert "enlarged to fit" in out


def test_crop_training_draws_seeded_random_crops_inside_each_window():
    import torch

    from cifake.data.pixels import Pixels
    from cifake.training.augment import HostBatches
    from cifake.training.config import TrainConfig

    rng = np.random.default_rng(1)
    windows = rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    extents = np.array([32, 32, 20, 16, 32, 25], np.int16)
    batches = HostBatches(Pixels(windows, 16, extents), TrainConfig(image_size=16, preprocess="crop", seed=3), "cpu")
    index = torch.arange(6)
    first, again, later = (batches.batch(index, epoch, 0).numpy() for epoch in (1, 1, 2))
    assert np.array_equal(first, again) and not np.array_equal(first, later)  # seeded by (seed, epoch, batch)
    assert first.shape == (6, 16, 16, 3)
    for k in range(6):  # every crop is a crop of the native pixels inside the window's extent
        e = extents[k]
        found = [(r, c) for r in range(e - 15) for c in range(e - 15)
                 if np.array_equal(windows[k, r:r + 16, c:c + 16], first[k])]
        assert found, k
    assert np.array_equal(first[3], windows[3, :16, :16])  # extent 16: the one crop there is
    offsets = {tuple(batches.batch(index, epoch, 0).numpy()[0, 0, 0]) for epoch in range(1, 9)}
    assert len(offsets) > 1  # not the same crop every epoch


def test_pixels_are_read_with_pread_as_the_array_holds_them(tmp_path):
    from cifake.data.pixels import NpyRows, NpyWriter, Pixels
    from cifake.data.preprocess import centre_offsets, crop_windows

    rng = np.random.default_rng(0)
    stored = rng.integers(0, 256, (50, 8, 8, 3), dtype=np.uint8)
    writer = NpyWriter(tmp_path / "a.npy", 60, (8, 8, 3))  # ten spare rows, as a cache with skipped files has
    writer.write(0, stored[:20])
    writer.write(20, stored[20:])
    writer.close()
    rows = NpyRows(tmp_path / "a.npy", 50)
    index = np.array([7, 3, 3, 49, 0, 1, 2, 30])
    np.testing.assert_array_equal(rows.read(index), stored[index])
    with pytest.raises(IndexError):
        rows.read(np.array([50]))
    extents = rng.integers(4, 9, 50).astype(np.int16)
    pixels = Pixels(rows, 4, extents).take(np.arange(10, 40))
    expected = crop_windows(stored[10:40], centre_offsets(extents[10:40], 4), 4)
    np.testing.assert_array_equal(pixels[:], expected)
    np.testing.assert_array_equal(np.asarray(pixels.resident()), expected)
    assert pixels.shape == (30, 4, 4, 3) and not pixels.resident().on_disk


def test_scaled_jpeg_decoding_gives_pillows_pixels():
    from cifake.data.decode import decode_image, image_to_pixels

    for side, size in ((128, 32), (128, 64), (96, 48), (100, 32)):
        data = jpeg_bytes(synthetic_image(0, side, side), quality=90)
        fast, converted = decode_image(data, size)
        slow, _ = image_to_pixels(Image.open(io.BytesIO(data)), size)
        assert converted and np.array_equal(fast, slow), (side, size)


def test_training_read_from_disk_gives_the_weights_of_training_in_memory(sized_tree, tmp_path, monkeypatch):
    from safetensors.numpy import load_file

    import cifake.workflows.experiment as experiment

    _train(sized_tree, tmp_path / "memory", "--image-size", "32")
    monkeypatch.setattr(experiment, "RESIDENT_BYTES", 0)  # every set "too large": read batch by batch from disk
    _train(sized_tree, tmp_path / "disk", "--image-size", "32")
    memory, disk = (load_file(tmp_path / name / "model.safetensors") for name in ("memory", "disk"))
    assert memory.keys() == disk.keys()
    assert all(np.array_equal(memory[k], disk[k]) for k in memory)


def test_the_cnn_and_the_search_follow_the_image_size():
    from cifake.models import Topology, create_model
    from cifake.data import Preprocess
    from cifake.search.grid import SearchSpace
    from cifake.search.cost import estimated_cost

    model = create_model(Topology(8, 2, ()), Preprocess(64))
    assert model.head[-1].in_features == 8 * 14 * 14  # 64 -> 31 -> 14
    with pytest.raises(ValueError, match="shrink a 16 px image"):
        create_model(Topology(8, 3, ()), Preprocess(16))
    assert {t.conv_layers for t in SearchSpace().stage1(16)} == {1, 2}
    assert estimated_cost(Topology(8, 2, ()), image_size=64) > 3 * estimated_cost(Topology(8, 2, ()))


def faces_zip() -> Path:
    folder = Path(os.environ.get("CIFAKE_FACES", REPO.parent / "shared" / "data" / "faces"))
    if not (folder / "faces.zip").is_file():
        pytest.skip(f"the face set is not at {folder} (set CIFAKE_FACES)")
    return folder / "faces.zip"


def test_the_face_study_runs_end_to_end_at_a_reduced_budget(tmp_path, monkeypatch):
    import cifake.workflows.study as study

    faces = faces_zip()
    with zipfile.ZipFile(faces) as archive:
        assert sum(name.startswith("test/FAKE/") for name in archive.namelist()) == 30
    monkeypatch.setitem(study.PROFILE_BUDGETS, "quick", dict(trial_steps=1, final_steps=1, min_epochs=1,
                                                            limit_per_label=None, explain=10, robustness=10))
    out = tmp_path / "study"
    result = json.loads(cli("study", "--data", faces, "--out", out, "--image-size", "32", "-q", "--json").stdout)
    assert result["test"]["n"] == 60 and set(result["test"]["per_source"]) == {"REAL", "pggan", "stylegan",
                                                                                "stylegan2"}
    assert [row["source"] for row in result["leave_one_source_out"]] == ["pggan", "stylegan", "stylegan2"]
    assert all(row["n"] == 10 for row in result["leave_one_source_out"])
    assert len(result["trials"]) == 2 * 3 + 1  # two filter counts x three depths, and resnet-s
    assert (out / "study.html").is_file() and "Leave one source out" in (out / "study.md").read_text()
    assert (out / "explain" / "gradcam_grid.png").is_file()
    rerun = json.loads(cli("study", "--data", faces, "--out", out, "--image-size", "32", "-q", "--json").stdout)
    assert rerun["test"] == result["test"]  # resumed: every finished run reused


def test_study_budgets_are_steps_so_a_small_dataset_trains_as_long_as_a_large_one():
    from cifake.workflows.study import study_profile

    faces = study_profile("quick", 256, "crop", 180)  # 144 after validation: 5 steps of 32 an epoch
    assert faces.budget.train.epochs == 24 and faces.final_epochs == 60
    assert faces.budget.train.image_size == 256 and faces.budget.train.preprocess == "crop"
    assert {t.conv_layers for t in faces.space.stage1(256)} == {3, 4, 5}
    cifake = study_profile("quick", 32, "resize", 100_000)  # 5,000 per label: 250 steps an epoch
    assert cifake.budget.train.epochs == 2 and cifake.final_epochs == 2
    assert {t.conv_layers for t in cifake.space.stage1(32)} == {1, 2, 3}
    with pytest.raises(ValueError, match="unknown study profile"):
        study_profile("huge", 32, "resize", 100)


def test_a_crop_model_refuses_training_images_without_their_windows(sized_tree):
    from cifake.data import Preprocess, load_dataset
    from cifake.models import create_model
    from cifake.training.config import TrainConfig
    from cifake.training.loop import fit

    train = load_dataset(sized_tree, preprocess=Preprocess(32, "crop"), progress=False)["train"]
    config = TrainConfig(image_size=32, preprocess="crop", epochs=1)
    refusal = ("a crop model trains on random crops of each image's stored window: pass the training images as "
               "loaded for it (load_dataset with the model's Preprocess; .resident() keeps the windows, .in_memory() "
               "keeps only the central crops)")
    with pytest.raises(ValueError, match=f"^{re.escape(refusal)}$"):  # in_memory() keeps the central crops only
        fit(create_model("resnet-s", config.input), train.in_memory(), train.in_memory(), config, progress=False)
    assert train.resident(1 << 30).images.crops  # resident() keeps the windows to crop from


def _training_inputs(model) -> list[np.ndarray]:
    """Every image the model is trained on, as uint8 NHWC rows, gathered by a forward hook."""
    seen: list[np.ndarray] = []

    def keep(module, args):
        if module.training:
            seen.extend(args[0].detach().permute(0, 2, 3, 1).round().byte().numpy())
    model.register_forward_pre_hook(keep)
    return seen


def test_fit_reads_crop_windows_and_sets_on_disk_batch_by_batch(sized_tree, monkeypatch):
    """A crop model trains on random crops of its windows, held in RAM or not (not on the central crops alone);
    a set on disk is read one batch at a time, never loaded whole."""
    from cifake.data import Preprocess, load_dataset
    from cifake.data.pixels import NpyRows
    from cifake.models import create_model
    from cifake.training.config import TrainConfig
    from cifake.training.loop import fit

    crops = load_dataset(sized_tree, preprocess=Preprocess(32, "crop"), progress=False)
    held = crops["train"].resident(1 << 30)
    assert held.images.crops and not held.images.on_disk
    central = {row.tobytes() for row in np.asarray(held.images)}
    config = TrainConfig(image_size=32, preprocess="crop", epochs=2, batch_size=16, patience=5)
    model = create_model("paper", config.input)
    seen = _training_inputs(model)
    fit(model, held, crops["test"].in_memory(), config, progress=False)
    assert len(seen) == 2 * len(held) and {row.shape for row in seen} == {(32, 32, 3)}
    assert sum(row.tobytes() not in central for row in seen) > len(held)  # most are off-centre crops

    resized = load_dataset(sized_tree, preprocess=Preprocess(32, "resize"), progress=False)
    train, val = resized["train"], resized["test"]
    assert train.images.on_disk and val.images.on_disk
    reads: list[int] = []
    read = NpyRows.read
    monkeypatch.setattr(NpyRows, "read", lambda self, rows: reads.append(len(rows)) or read(self, rows))
    config = TrainConfig(image_size=32, epochs=1, batch_size=16, eval_batch_size=8)
    fit(create_model("paper", config.input), train, val, config, progress=False)
    assert sum(reads) == len(train) + len(val) and max(reads) <= 16  # training's batches, then validation's
    assert reads.count(8) == len(val) // 8


def test_fit_refuses_targets_that_do_not_match_the_training_images(sized_tree):
    from cifake.data import Preprocess, load_dataset
    from cifake.models import create_model
    from cifake.training.config import TrainConfig
    from cifake.training.loop import fit

    data = load_dataset(sized_tree, preprocess=Preprocess(32, "resize"), progress=False)
    config = TrainConfig(image_size=32, epochs=1)
    count = len(data["train"])
    with pytest.raises(ValueError, match=f"^{count - 1} targets for {count} training images$"):
        fit(create_model("paper", config.input), data["train"], data["test"], config, progress=False,
            targets=np.full(count - 1, 0.5))
