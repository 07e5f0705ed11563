import json
import os
from pathlib import Path

import numpy as np
import pytest

from cifake.data import CIFAR10_CLASSES, decode_image, load_dataset, train_val_split
from conftest import jpeg_bytes, synthetic_image, tree_files, write_tree, write_zip


def test_tree_loads_with_labels_classes_and_names(tiny_tree):
    data = load_dataset(tiny_tree, progress=False)
    assert set(data.splits) == {"train", "test"}
    train = data["train"]
    assert len(train) == 80 and train.images.shape == (80, 32, 32, 3) and train.images.dtype == np.uint8
    # REAL = 1 and FAKE = 0 follow the folder, whatever the order of the names
    for name, label in zip(train.names, train.labels):
        assert label == (1 if "/REAL/" in name else 0)
    assert train.counts()["REAL"] == {"total": 40, **{c: 4 for c in CIFAR10_CLASSES}}
    index = list(train.names).index("train/FAKE/3 (7).jpg")
    assert train.classes[index] == 6 and train.labels[index] == 0
    assert data.skipped == [] and data.converted == 0


def test_pixels_survive_the_cache(tiny_tree):
    data = load_dataset(tiny_tree, progress=False)
    index = list(data["test"].names).index("test/REAL/1 (2).jpg")
    expected, _ = decode_image((tiny_tree / "test/REAL/1 (2).jpg").read_bytes())
    assert np.array_equal(data["test"].images[index], expected)


def test_all_layouts_give_identical_arrays(tmp_path):
    files = tree_files({"train": 5, "test": 3})
    tree = load_dataset(write_tree(tmp_path / "tree", files), progress=False)
    zipped = load_dataset(write_zip(tmp_path / "z.zip", files), progress=False, workers=2)
    splits = tmp_path / "splits"
    for split in ("train", "test"):
        write_zip(splits / f"{split}.zip", {k: v for k, v in files.items() if k.startswith(split)})
    split_zips = load_dataset(splits, progress=False)
    for other in (zipped, split_zips):
        for split in ("train", "test"):
            assert np.array_equal(tree[split].images, other[split].images)
            assert list(tree[split].names) == list(other[split].names)
            assert np.array_equal(tree[split].labels, other[split].labels)


def test_bad_files_are_skipped_and_listed(tmp_path):
    """The acceptance case: a zip with a truncated JPEG, a zero-byte file and a text file named .jpg."""
    files = tree_files({"train": 6})
    files["train/REAL/truncated.jpg"] = jpeg_bytes(synthetic_image(1, 99))[:200]
    files["train/FAKE/empty.jpg"] = b""
    files["train/REAL/notes.jpg"] = b"this is text, not a JPEG"
    data = load_dataset(write_zip(tmp_path / "bad.zip", files), progress=False, workers=2)
    assert len(data["train"]) == 12
    reasons = {s.name.split(":")[-1]: s.reason for s in data.skipped}
    assert set(reasons) == {"train/REAL/truncated.jpg", "train/FAKE/empty.jpg", "train/REAL/notes.jpg"}
    assert reasons["train/REAL/truncated.jpg"].startswith("truncated or corrupt")
    assert reasons["train/FAKE/empty.jpg"].startswith("empty file")
    assert reasons["train/REAL/notes.jpg"].startswith("not an image")
    assert all(s.name.startswith(str(tmp_path / "bad.zip")) for s in data.skipped)  # names say which zip


def test_odd_sizes_are_converted_and_counted(tmp_path):
    from PIL import Image

    files = tree_files({"x": 2}, split_dirs=False)
    root = write_tree(tmp_path / "mine", files)
    Image.fromarray(synthetic_image(1, 5, size=64)).convert("L").save(root / "REAL" / "big grey.png")
    data = load_dataset(root, progress=False)
    assert data.converted == 1 and len(data["all"]) == 5
    assert data["all"].classes[list(data["all"].names).index("REAL/big grey.png")] == -1
    assert data.training_split() is data["all"]


def test_cache_is_reused_and_rebuilt_when_the_source_changes(tiny_tree):
    first = load_dataset(tiny_tree, progress=False)
    manifest = first.cache_dir / "manifest.json"
    written = manifest.stat().st_mtime_ns
    again = load_dataset(tiny_tree, progress=False)
    assert again.cache_dir == first.cache_dir and manifest.stat().st_mtime_ns == written
    assert again["train"].images.on_disk  # warm loads read the cache, they do not decode
    extra = tiny_tree / "train" / "REAL" / "500.jpg"
    extra.write_bytes(jpeg_bytes(synthetic_image(1, 500)))
    changed = load_dataset(tiny_tree, progress=False)
    assert changed.cache_dir != first.cache_dir and len(changed["train"]) == 81
    assert json.loads((changed.cache_dir / "manifest.json").read_text())["splits"]["train"] == 81


def test_an_interrupted_cache_build_leaves_no_cache_and_the_next_load_decodes_all(tiny_tree):
    from cifake.data import dataset

    saves = []

    def save_then_fail(path, array):
        saves.append(path)
        if len(saves) == 3:  # killed part-way through writing the arrays
            raise KeyboardInterrupt
        np.save(path, array)

    with pytest.MonkeyPatch.context() as patch, pytest.raises(KeyboardInterrupt):
        patch.setattr(dataset.np, "save", save_then_fail)
        load_dataset(tiny_tree, progress=False)
    root = Path(os.environ["CIFAKE_CACHE"])
    assert not [p for p in root.iterdir() if (p / "manifest.json").exists()]  # nothing a later load could trust
    data = load_dataset(tiny_tree, progress=False)
    assert len(data["train"]) == 80 and len(data["test"]) == 40
    assert os.listdir(data.cache_dir.parent) == [data.cache_dir.name]  # the next build clears the partial one
    expected, _ = decode_image((tiny_tree / "test/REAL/1 (2).jpg").read_bytes())
    assert np.array_equal(data["test"].images[list(data["test"].names).index("test/REAL/1 (2).jpg")], expected)


def test_a_rewritten_zip_is_decoded_again(tmp_path):
    path = write_zip(tmp_path / "data.zip", tree_files({"train": 3}))
    first = load_dataset(path, progress=False)
    files = tree_files({"train": 3})
    files["train/REAL/0.jpg"] = jpeg_bytes(synthetic_image(0, 77))  # other pixels, same name
    write_zip(path, files)
    again = load_dataset(path, progress=False)
    index = list(again["train"].names).index("train/REAL/0.jpg")
    assert again.cache_dir != first.cache_dir
    assert np.array_equal(again["train"].images[index], decode_image(files["train/REAL/0.jpg"])[0])


@pytest.mark.parametrize("layout", ["tree", "zip"])
def test_a_touched_source_is_decoded_again_even_at_the_same_size(tmp_path, layout):
    files = tree_files({"train": 3})
    root = write_tree(tmp_path / "tree", files) if layout == "tree" else write_zip(tmp_path / "d.zip", files)
    first = load_dataset(root, progress=False)
    changed = root / "train" / "REAL" / "0.jpg" if layout == "tree" else root
    size = changed.stat().st_size
    os.utime(changed, ns=(changed.stat().st_atime_ns, changed.stat().st_mtime_ns + 10**9))
    again = load_dataset(root, progress=False)
    assert changed.stat().st_size == size and again.cache_dir != first.cache_dir


def test_validation_split_is_seeded_and_stratified(tiny_tree):
    train = load_dataset(tiny_tree, progress=False)["train"]
    a_train, a_val = train_val_split(train, 0.25, seed=1)
    b_train, b_val = train_val_split(train, 0.25, seed=1)
    _, c_val = train_val_split(train, 0.25, seed=2)
    assert list(a_val.names) == list(b_val.names) and list(a_val.names) != list(c_val.names)
    assert len(a_val) == 20 and (a_val.labels == 1).sum() == 10
    assert not set(a_val.names) & set(a_train.names)
    with pytest.raises(ValueError, match="between 0 and 1"):
        train_val_split(train, 1.5)


def test_limit_caps_each_label(tiny_tree):
    train = load_dataset(tiny_tree, progress=False)["train"]
    small = train.limit(7, seed=1)
    assert (small.labels == 1).sum() == 7 and (small.labels == 0).sum() == 7
    assert list(small.names) == list(train.limit(7, seed=1).names)
    assert train.limit(None) is train


def test_data_build_puts_the_rounded_share_of_every_class_in_test(tmp_path):
    """Per label and CIFAR-10 class, round(count x share) images go to test and the rest to train, every image
    once, when the share does not divide the class evenly: 5, 4 and 7 images at 1/3 give 2, 1 and 2."""
    from cifake.data.build import build_dataset
    from cifake.data.sources import cifake_file_name, cifar_class

    counts = {0: 5, 1: 4, 2: 7}  # airplane, automobile, bird
    image = jpeg_bytes(synthetic_image(1, 0))
    real = write_tree(tmp_path / "real", {f"REAL/{cifake_file_name(i, k)}": image
                                          for k, n in counts.items() for i in range(n)})
    fake = write_tree(tmp_path / "fake", {f"FAKE/{cifake_file_name(i, k)}": image
                                          for k, n in counts.items() for i in range(n)})
    totals = build_dataset(real, fake, tmp_path / "built", test_fraction=1 / 3, seed=3)
    expected_test = {0: 2, 1: 1, 2: 2}
    for label in ("REAL", "FAKE"):
        for k, n in counts.items():
            test = [p for p in (tmp_path / "built" / "test" / label).iterdir() if cifar_class(p.name) == k]
            train = [p for p in (tmp_path / "built" / "train" / label).iterdir() if cifar_class(p.name) == k]
            assert (len(test), len(train)) == (expected_test[k], n - expected_test[k]), (label, k)
    assert totals == {"test/FAKE": 5, "test/REAL": 5, "train/FAKE": 11, "train/REAL": 11}
    origins = json.loads((tmp_path / "built" / "build.json").read_text())["files"]
    assert len(set(origins.values())) == 2 * sum(counts.values())  # every source image exactly once


def test_subset_is_a_seeded_sample_of_each_split_and_label_with_the_files_own_bytes(tmp_path):
    """`data subset`: N of each split and label drawn by the seed (not the first N), all of a smaller group, the
    original names and bytes, from a folder as from a zip; an existing output is refused, not overwritten."""
    import zipfile

    from cifake.data.build import subset_zip

    files = tree_files({"train": 12, "test": 3})
    source = write_tree(tmp_path / "tree", files)

    def sample(seed: int, name: str) -> dict[str, bytes]:
        counts = subset_zip(source, tmp_path / name, {"train": 5, "test": 4}, seed)
        assert counts == {"train/REAL": 5, "train/FAKE": 5, "test/REAL": 3, "test/FAKE": 3}
        with zipfile.ZipFile(tmp_path / name) as archive:
            return {member: archive.read(member) for member in archive.namelist()}

    first, again, other = sample(1, "a.zip"), sample(1, "b.zip"), sample(2, "c.zip")
    assert first == again and set(first) != set(other)
    assert all(files[name] == data for name, data in first.items())  # every file's own name and bytes
    assert {n for n in files if n.startswith("test/")} <= set(first)  # a group smaller than asked: all of it
    picked = sorted(n for n in first if n.startswith("train/REAL/"))
    assert picked != sorted(n for n in files if n.startswith("train/REAL/"))[:5]  # drawn, not the first five
    before = (tmp_path / "a.zip").read_bytes()
    with pytest.raises(FileExistsError, match="a.zip exists"):
        subset_zip(source, tmp_path / "a.zip", {"train": 1, "test": 1})
    assert (tmp_path / "a.zip").read_bytes() == before
    with pytest.raises(ValueError, match="no validation/REAL images"):
        subset_zip(source, tmp_path / "d.zip", {"validation": 1})


_DROPPED_SESSION_THEN_DECODE = """
import gc, os, sys, time
import numpy as np
from cifake.data import load_dataset
from cifake.models.export import OnnxRunner
from cifake.predict import bundled_model_dir

runner = OnnxRunner(bundled_model_dir() / "model.onnx", threads=2)
runner(np.zeros((4, 32, 32, 3), np.uint8))
gc.disable()  # dropped, in a cycle, not yet collected: as a Detector a caller let go
cycle = [runner]
cycle.append(cycle)
del runner, cycle
time.sleep(1)  # its pool's thread now waits on its lock
os.register_at_fork(after_in_child=gc.collect)  # a worker collects garbage at once, as a busy one may at any time
load_dataset(sys.argv[1], workers=2, progress=False)
"""


@pytest.mark.skipif(not hasattr(os, "register_at_fork"), reason="no fork here: decoding workers are spawned")
def test_decoding_workers_never_free_what_they_inherit(tmp_path):
    """A forked decoding worker that collects garbage must leave the caller's objects alone: freeing an onnxruntime
    session there (one the caller dropped) waits forever on a lock held by a thread the worker does not have."""
    import signal
    import subprocess
    import sys

    root = write_tree(tmp_path / "data", tree_files({"train": 40, "test": 8}))
    env = os.environ | {"CIFAKE_CACHE": str(tmp_path / "cache")}
    process = subprocess.Popen([sys.executable, "-c", _DROPPED_SESSION_THEN_DECODE, str(root)], env=env,
                               start_new_session=True)
    try:
        assert process.wait(timeout=60) == 0
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # the stuck workers too
        pytest.fail("decoding hung: a worker freed an inherited onnxruntime session")
    assert len(load_dataset(root, progress=False)["train"]) == 80  # it finished the cache
