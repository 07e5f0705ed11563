"""The onnxruntime session a Detector scores with: the folder's graph when it matches the weights, else a fresh
export into the cache; torch when onnxruntime is missing."""

from __future__ import annotations

import logging
from pathlib import Path

from cifake.data.dataset import default_cache_root
from cifake.models.export import OnnxRunner, export_onnx
from cifake.runfolder import RunFolder

log = logging.getLogger(__name__)


def onnx_runner(folder: Path, digest: str, threads: int, required: bool) -> OnnxRunner | None:
    """An onnxruntime session for these weights: the folder's model.onnx if it was exported from them, else a
    fresh export in the cache. None (torch is used) when onnxruntime is missing or export fails, unless required."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        if required:
            raise ValueError("backend 'onnx' needs onnxruntime: pip install 'cifake[onnx]'") from None
        return None
    try:
        for path in (RunFolder(folder).onnx, _cache_dir() / f"{digest}.onnx"):
            runner = _try_runner(path, threads)
            # else stale: other weights, or a graph from before the features output
            if runner and runner.has_features and runner.metadata.get("cifake_weights_sha256") == digest:
                return runner
        path = _cache_dir() / f"{digest}.onnx"
        export_onnx(folder, path)
        return OnnxRunner(path, threads=threads)
    except Exception as exc:  # any export or runtime failure: torch still gives the same scores
        if required:
            raise ValueError(f"{folder}: could not run the model on onnxruntime ({exc})") from None
        log.warning("%s: onnxruntime unavailable (%s); scoring with torch", folder, exc)
        return None


def _try_runner(path: Path, threads: int) -> OnnxRunner | None:
    if not path.is_file():
        return None
    try:
        return OnnxRunner(path, threads=threads)
    except ValueError as exc:
        log.warning("%s", exc)
        return None


def _cache_dir() -> Path:
    return default_cache_root() / "onnx"
