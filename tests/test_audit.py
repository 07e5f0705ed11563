import io
import json

import numpy as np
from PIL import Image

from cifake.data import load_dataset
from cifake.data.audit import audit, find_duplicates, leaked_mask, write_audit
from conftest import tree_files, write_tree


def _png_of(jpeg: bytes) -> bytes:
    buffer = io.BytesIO()
    Image.open(io.BytesIO(jpeg)).save(buffer, "PNG")  # same decoded pixels, different bytes
    return buffer.getvalue()


def _leaky_source(tmp_path):
    files = tree_files({"train": 10, "test": 5})
    files["test/FAKE/copy.jpg"] = files["train/FAKE/0 (4).jpg"]  # byte-identical leak
    files["test/FAKE/recoded.png"] = _png_of(files["train/FAKE/0 (2).jpg"])  # pixel-identical leak only
    files["train/FAKE/twin.jpg"] = files["train/FAKE/0 (8).jpg"]  # duplicate within train
    return load_dataset(write_tree(tmp_path / "leaky", files), progress=False)


def test_byte_and_pixel_duplicates_within_and_across_splits(tmp_path):
    data = _leaky_source(tmp_path)
    by_bytes = {tuple(name for _, _, name in g.members) for g in find_duplicates(data, "bytes")}
    assert by_bytes == {("test/FAKE/copy.jpg", "train/FAKE/0 (4).jpg"), ("train/FAKE/0 (8).jpg", "train/FAKE/twin.jpg")}
    by_pixels = {tuple(name for _, _, name in g.members) for g in find_duplicates(data, "pixels")}
    assert by_pixels == by_bytes | {("test/FAKE/recoded.png", "train/FAKE/0 (2).jpg")}


def test_leaked_mask_marks_test_items_found_in_train(tmp_path):
    data = _leaky_source(tmp_path)
    names = data["test"].names
    assert set(names[leaked_mask(data, "test", "bytes")]) == {"test/FAKE/copy.jpg"}
    assert set(names[leaked_mask(data, "test", "pixels")]) == {"test/FAKE/copy.jpg", "test/FAKE/recoded.png"}


def test_audit_report_counts_pairs_and_writes_files(tmp_path):
    report = audit(_leaky_source(tmp_path))
    assert report["bytes"]["pairs"] == {"train/FAKE ~ test/FAKE": 1, "train/FAKE ~ train/FAKE": 1}
    assert report["pixels"]["pairs"]["train/FAKE ~ test/FAKE"] == 2
    assert len(report["leaked_test_pixels"]) == 2
    json_path, md_path = write_audit(report, tmp_path / "audit")
    assert json.loads(json_path.read_text())["leaked_test_bytes"] == ["test/FAKE/copy.jpg"]
    assert "| train/FAKE ~ test/FAKE | 2 |" in md_path.read_text()


def test_clean_source_has_no_duplicates(tiny_tree):
    data = load_dataset(tiny_tree, progress=False)
    assert find_duplicates(data, "pixels") == []
    assert not leaked_mask(data).any()
    assert np.array_equal(leaked_mask(data), np.zeros(len(data["test"]), bool))
