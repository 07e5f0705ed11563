"""Test data the tests make themselves: tiny CIFAKE-like JPEG sets in every supported layout."""

from __future__ import annotations

import collections
import functools
import io
import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


def pytest_configure(config):
    """Each pytest-xdist worker computes on one thread, and so do the processes its tests start: two workers with
    torch's default of a thread per core ask two cores for four busy threads."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch

        os.environ["OMP_NUM_THREADS"] = "1"
        torch.set_num_threads(1)


def pytest_collection_modifyitems(config, items):
    """Under mutmut a mutant's tests arrive in a set's arbitrary order, and the run stops at the first failure.
    Test files go quickest first (by mutmut's recorded durations), each file's tests together, so that a module's
    fixture (a trained model, say) is set up once per mutant rather than again at each switch of file, and a mutant
    killed by a quick test is not first made to train."""
    if "MUTANT_UNDER_TEST" not in os.environ:
        return
    durations = _mutmut_durations()
    per_file: collections.Counter = collections.Counter()
    for item in items:
        per_file[item.path] += durations.get(item.nodeid, 0.0)
    items.sort(key=lambda item: (per_file[item.path], str(item.path), durations.get(item.nodeid, 0.0)))


@functools.cache
def _mutmut_durations() -> dict[str, float]:
    """{test id: seconds} from the statistics mutmut keeps beside the mutated copy it runs the tests in."""
    try:
        return json.loads(Path("mutmut-stats.json").read_text())["duration_by_test"]
    except (OSError, ValueError, KeyError):
        return {}


def synthetic_image(label: int, index: int, size: int = 32) -> np.ndarray:
    """REAL (1): smooth colour gradients; FAKE (0): the same plus fine stripes that survive JPEG. Easy to learn."""
    rng = np.random.default_rng(index * 2 + label)
    y, x = np.mgrid[0:size, 0:size] / size
    base = np.stack([rng.uniform(40, 200) + rng.uniform(-40, 40) * (x if c % 2 else y) for c in range(3)], -1)
    if label == 0:
        base += 60 * ((np.arange(size) // 2 % 2)[None, :, None] - 0.5)
    base += rng.normal(0, 3, base.shape)
    return np.clip(base, 0, 255).astype(np.uint8)


def jpeg_bytes(pixels: np.ndarray, quality: int = 75) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def cifake_name(index: int) -> str:
    """CIFAKE naming: class 0 is 'N.jpg', class k-1 is 'N (k).jpg'."""
    number, cls = divmod(index, 10)
    return f"{number}.jpg" if cls == 0 else f"{number} ({cls + 1}).jpg"


def tree_files(per_label: dict[str, int], split_dirs: bool = True) -> dict[str, bytes]:
    """{relative path: JPEG bytes} of a CIFAKE tree; per_label maps split -> images per label."""
    files = {}
    for split, count in per_label.items():
        for label, label_dir in ((1, "REAL"), (0, "FAKE")):
            for i in range(count):
                prefix = f"{split}/{label_dir}" if split_dirs else label_dir
                files[f"{prefix}/{cifake_name(i)}"] = jpeg_bytes(synthetic_image(label, i + 1000 * (split == "test")))
    return files


def write_tree(root: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def write_zip(path: Path, files: dict[str, bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in sorted(files.items()):
            archive.writestr(name, data)
    return path


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """Every test decodes into its own cache, never the user's ~/.cache/cifake."""
    monkeypatch.setenv("CIFAKE_CACHE", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture
def tiny_tree(tmp_path) -> Path:
    """A Kaggle-layout tree: train 40 + 40, test 20 + 20."""
    return write_tree(tmp_path / "cifake", tree_files({"train": 40, "test": 20}))


@pytest.fixture(scope="session")
def learnable_zip(tmp_path_factory) -> Path:
    """A zip of the Kaggle tree big enough to learn from: train 300 + 300, test 100 + 100."""
    return write_zip(tmp_path_factory.mktemp("learn") / "cifake.zip", tree_files({"train": 300, "test": 100}))


@pytest.fixture(scope="session")
def cifake_data() -> Path:
    """The real CIFAKE zips (CIFAKE_DATA, default ../shared/data/cifake); CI must have them."""
    path = Path(os.environ.get("CIFAKE_DATA", REPO.parent / "shared" / "data" / "cifake"))
    if not (path / "train.zip").is_file():
        if os.environ.get("CI"):
            pytest.fail(f"CIFAKE data not found at {path}: CI must provide the shared zips")
        pytest.skip(f"CIFAKE data not found at {path} (set CIFAKE_DATA)")
    return path


@pytest.fixture(scope="session")
def real_data(cifake_data, tmp_path_factory):
    """The real CIFAKE, decoded once per test session into a cache of its own."""
    from cifake.data import load_dataset

    return load_dataset(cifake_data, cache_root=tmp_path_factory.mktemp("real-cache"), progress=False)


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str


def cli(*args, check: bool = True) -> CliResult:
    """`cifake ARGS` run in this process through typer's CliRunner: the same parsing, library calls and output as
    `python -m cifake`, without a new interpreter importing torch (3-4 s a call). An uncaught exception is raised
    here, so a command that would print a traceback fails the test."""
    from typer.testing import CliRunner

    from cifake.cli import app

    result = CliRunner().invoke(app, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    if check and result.exit_code != 0:
        raise AssertionError(f"cifake {' '.join(map(str, args))} failed ({result.exit_code}):\n{result.stdout}\n"
                             f"{result.stderr}")
    return CliResult(result.exit_code, result.stdout, result.stderr)


def flat(text: str) -> str:
    """Text as words on one line, without the frame of typer's error box (it wraps messages at 80 columns)."""
    return " ".join(text.replace("│", " ").split())
