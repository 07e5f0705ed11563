"""ONNX export of a saved model, and an onnxruntime runner with the same interface as predict_logits.

The exported graph takes what the data layer holds, (N, S, S, 3) uint8 pixels, and returns (N,) logits and the
(N, D) penultimate unit features the domain check reads, so the uint8 -> float conversion and the NHWC -> NCHW
view run inside onnxruntime rather than in NumPy.
"""

from __future__ import annotations

import hashlib
import logging
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from cifake.files import atomic_write
from cifake.models.io import load_model
from cifake.runfolder import RunFolder
OPSET = 18


class _PixelsToLogits(nn.Module):
    """uint8 NHWC pixels -> (logits, penultimate unit features): one pass gives the verdict and the domain check."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model.embed(pixels.permute(0, 3, 1, 2).float())


def weights_digest(run_dir: str | os.PathLike) -> str:
    """SHA-256 of model.safetensors: ties an exported graph to the weights it came from."""
    return hashlib.sha256(RunFolder(run_dir).weights.read_bytes()).hexdigest()


def export_onnx(run_dir: str | os.PathLike, out: str | os.PathLike | None = None) -> Path:
    """Write the run's model as ONNX (dynamic batch); default path RUN_DIR/model.onnx."""
    try:
        import onnx
        import onnxscript  # noqa: F401  (torch's exporter needs it)
    except ImportError as exc:
        raise ImportError(f"export needs onnx and onnxscript ({exc}): pip install 'cifake[onnx]'") from None

    logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # silence notes on torchvision ops we do not use
    model, _ = load_model(run_dir)
    path = Path(out) if out else RunFolder(run_dir).onnx
    path.parent.mkdir(parents=True, exist_ok=True)
    size = model.preprocess.size  # the graph's input has the model's size; the batch is dynamic
    example = torch.zeros(2, size, size, 3, dtype=torch.uint8)
    batch = torch.export.Dim("batch", min=1)
    with warnings.catch_warnings():  # the exporter's own deprecation notices are not the user's concern
        warnings.simplefilter("ignore", FutureWarning)
        program = torch.onnx.export(_PixelsToLogits(model.float()).eval(), (example,), dynamo=True, opset_version=OPSET,
                                    input_names=["pixels"], output_names=["logits", "features"],
                                    dynamic_shapes={"pixels": {0: batch}}, optimize=True, verbose=False)
    proto = program.model_proto
    onnx.helper.set_model_props(proto, {"cifake_weights_sha256": weights_digest(run_dir),
                                        "cifake_output": "logit; sigmoid(logit) = P(REAL)",
                                        "cifake_input": f"{size} px, {model.preprocess.mode}"})
    onnx.checker.check_model(proto)
    atomic_write(path, lambda tmp: onnx.save(proto, tmp))
    return path


class OnnxRunner:
    """predict_logits on onnxruntime's CPU provider."""

    def __init__(self, path: str | os.PathLike, threads: int | None = None):
        import onnxruntime as ort  # the onnx extra: scoring falls back to torch without it

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.path = Path(path)
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types for unreadable or invalid graphs
            raise ValueError(f"{path}: not a loadable ONNX model ({exc})") from None
        self.metadata = self.session.get_modelmeta().custom_metadata_map

        self.has_features = "features" in [output.name for output in self.session.get_outputs()]

    def __call__(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
        logits = [batch.reshape(-1) for (batch,) in self._run(images, batch_size, ["logits"])]
        return np.concatenate(logits) if logits else np.empty(0, np.float32)

    def embed(self, images: np.ndarray, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
        """(logits, penultimate unit features), as cifake.models.inference.predict_embeddings gives them."""
        logits, features = zip(*self._run(images, batch_size, ["logits", "features"]))
        return np.concatenate(logits).reshape(-1), np.concatenate(features)

    def _run(self, images: np.ndarray, batch_size: int, outputs: list[str]):
        """The named outputs of each batch of uint8 images."""
        for start in range(0, len(images), batch_size):
            batch = np.ascontiguousarray(images[start : start + batch_size], dtype=np.uint8)
            yield self.session.run(outputs, {"pixels": batch})
