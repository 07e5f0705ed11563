"""On the real CIFAKE zips (CIFAKE_DATA): the whole dataset loads and audits as documented; the study's model learns."""

import hashlib
import zipfile

import numpy as np
import pytest

from cifake.data import CIFAR10_CLASSES, decode_image
from cifake.data.audit import audit
from cifake.models import resolve_topology
from cifake.training.config import TrainConfig
from cifake.training.split import Split
from cifake.workflows.experiment import evaluate_run, train_run
from cifake.workflows.explain_report import explain_dataset

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("real_data")]  # one worker decodes the zips


@pytest.fixture(scope="module")
def real(real_data):
    return real_data


def test_all_120000_images_load_with_labels_and_classes(real):
    assert real.skipped == [] and real.converted == 0
    for split, per_class in (("train", 5000), ("test", 1000)):
        counts = real[split].counts()
        for label in ("REAL", "FAKE"):
            assert counts[label] == {"total": per_class * 10, **{c: per_class for c in CIFAR10_CLASSES}}


def test_cache_holds_the_original_bytes_hash_and_pixels(real, cifake_data):
    test = real["test"]
    with zipfile.ZipFile(cifake_data / "test.zip") as archive:
        for index in (0, 4321, 19999):
            data = archive.read(str(test.names[index]))
            assert bytes(test.sha256[index]) == hashlib.sha256(data).digest()
            assert np.array_equal(test.images[index], decode_image(data)[0])
            assert test.labels[index] == (1 if "/REAL/" in test.names[index] else 0)


def test_audit_finds_the_documented_duplicates(real, cifake_data):
    report = audit(real)
    assert report["bytes"]["pairs"] == {"test/FAKE ~ test/FAKE": 38, "train/FAKE ~ test/FAKE": 378,
                                        "train/FAKE ~ train/FAKE": 920}
    assert len(report["leaked_test_bytes"]) == 378 == len(report["leaked_test_pixels"])
    documented = set()
    for line in (cifake_data / "DUPLICATES.txt").read_text().splitlines():
        if not line.startswith("#"):
            names = line.split("\t")[1:]
            if any(n.startswith("train/") for n in names):
                documented |= {n for n in names if n.startswith("test/")}
    assert set(report["leaked_test_bytes"]) == documented


def test_paper_model_learns_real_cifake(real, cifake_data, tmp_path):
    config = TrainConfig(epochs=3)
    result = train_run(real, tmp_path, resolve_topology("paper"), config, Split(limit_per_label=3000), progress=False)
    assert result["test"]["n"] == 6000
    assert result["test"]["accuracy"] > 0.8
    no_leaks = evaluate_run(tmp_path, real, "test", exclude_leaked=True)
    assert no_leaks["excluded_leaked"] == 378 and no_leaks["n"] == 20000 - 378

    summary = explain_dataset(tmp_path, real, tmp_path / "explain", sample_per_label=100)
    assert summary["per_label"] == {"REAL": 100, "FAKE": 100} and summary["centre_share"]["empty_maps"] < 200
    assert 0 < summary["centre_share"]["all"] < 1 and (tmp_path / "explain" / "explain.html").is_file()
