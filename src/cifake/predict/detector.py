"""The user-facing detector: load a model (the bundled one by default), score images, explain verdicts.

    from cifake import Detector
    detector = Detector.load()                    # or Detector.load("runs/paper")
    for result in detector.predict(["a.jpg", pil_image, array]):
        print(result.source, result.verdict, result.prob_fake)   # verdict: REAL, FAKE or UNSURE

Inputs may be paths, raw bytes, Pillow images or uint8 arrays (H x W x 3 or H x W), any size and mode;
everything is brought to 32 x 32 RGB exactly as the training data was. A bad input gives a result with
`error` set; it never stops the others.
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from cifake.calibration import Decision, apply_temperature
from cifake.choices import BACKENDS
from cifake.data.dataset import available_cores, default_cache_root
from cifake.data.decode import MAX_PIXELS, BadImage, decode_image, image_to_pixels
from cifake.data.sources import LABEL_NAMES
from cifake.devices import resolve_device
from cifake.models import load_model
from cifake.models.export import OnnxRunner, export_onnx, weights_digest
from cifake.models.inference import predict_logits, sigmoid
from cifake.models.io import bundled_model_dir
from cifake.runfolder import RunFolder

log = logging.getLogger(__name__)

Item = str | os.PathLike | bytes | Image.Image | np.ndarray


@dataclass(frozen=True)
class Prediction:
    source: str  # the path, or "<input N>" for images passed in memory
    prob_fake: float | None  # P(FAKE) = 1 - sigmoid(logit / T), T from calibration; None for an unreadable input
    verdict: str | None  # FAKE when prob_fake >= threshold, REAL when prob_fake < real_below, else UNSURE
    threshold: float
    real_below: float  # equal to threshold when there is no unsure band
    model_id: str
    error: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Explanation:
    prediction: Prediction
    pixels: np.ndarray | None  # the 32 x 32 x 3 image the model saw; None for an unreadable input
    heatmap: np.ndarray | None  # its 32 x 32 Grad-CAM map
    map_for: str | None  # the label the map explains: REAL or FAKE


class Detector:
    """A trained model with its calibration, scoring any image input: `Detector.load()` for the bundled model or a
    run folder, then `predict` (verdicts), `iter_predict` (bounded memory), `explain` and `overlay_png` (Grad-CAM)."""

    def __init__(self, model, config: dict, model_id: str, max_pixels: int = MAX_PIXELS, batch_size: int = 64,
                 onnx: OnnxRunner | None = None):
        self.model = model.eval()  # Grad-CAM always runs on the torch model, on its device
        self.onnx = onnx  # scores run on onnxruntime when given (faster than torch: benchmarks/bench_onnx.py)
        self.backend = "onnx" if onnx else "torch"
        self.device = "cpu" if onnx else str(next(model.parameters()).device)  # where scores are computed
        self.config = config
        calibration = config.get("calibration") or {}  # written by `cifake calibrate`
        self.temperature = float(calibration.get("temperature", 1.0))
        self.decision = Decision(**calibration["decision"]) if "decision" in calibration else Decision.single(0.5)
        self.model_id = model_id
        self.max_pixels = max_pixels
        self.batch_size = batch_size

    @classmethod
    def load(cls, run_dir: str | os.PathLike | None = None, backend: str = "auto", device: str = "auto",
             threads: int | None = None, **options) -> Detector:
        """The bundled model, or the model of a run folder (model.safetensors + config.json).

        backend: "onnx" scores with onnxruntime on the CPU (the folder's model.onnx when it matches the weights,
        else a fresh export into the cache), "torch" with torch on `device`, "auto" with onnxruntime when it is
        installed and the device is the CPU, else torch. device: auto, cpu, cuda, cuda:N or mps. threads: CPU
        threads for scoring (default: every core), e.g. cores / workers when several processes serve."""
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
        chosen = resolve_device("cpu" if backend == "onnx" and device == "auto" else device)
        if backend == "onnx" and chosen.type != "cpu":
            raise ValueError(f"backend 'onnx' scores on the CPU; use --backend torch to score on {chosen}")
        folder = Path(run_dir) if run_dir else bundled_model_dir()
        model, config = load_model(folder, chosen)
        digest = weights_digest(folder)
        name = "bundled" if run_dir is None else folder.name
        wants_onnx = backend == "onnx" or (backend == "auto" and chosen.type == "cpu")
        threads = threads or available_cores()
        runner = _onnx_runner(folder, digest, threads, required=backend == "onnx") if wants_onnx else None
        return cls(model, config, f"{name}-{model.topology.name}-{digest[:12]}", onnx=runner, **options)

    def pixels(self, item: Item) -> np.ndarray:
        """One input as 32 x 32 x 3 uint8 pixels; raises BadImage with the reason."""
        if isinstance(item, (str, os.PathLike)):
            try:
                data = Path(item).read_bytes()
            except OSError as exc:
                raise BadImage(f"unreadable file ({exc.strerror or exc})") from None
            return decode_image(data, max_pixels=self.max_pixels)[0]
        if isinstance(item, bytes):
            return decode_image(item, max_pixels=self.max_pixels)[0]
        if isinstance(item, Image.Image):
            return image_to_pixels(item, max_pixels=self.max_pixels)[0]
        if isinstance(item, np.ndarray):
            return self._array_pixels(item)
        raise BadImage(f"cannot read a {type(item).__name__}: pass a path, bytes, a PIL image or a uint8 array")

    def _array_pixels(self, array: np.ndarray) -> np.ndarray:
        if array.dtype != np.uint8 or array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (1, 3, 4)):
            raise BadImage(f"an array must be uint8 H x W, H x W x 3 or H x W x 4, not {array.dtype} {array.shape}")
        if array.ndim == 3 and array.shape[2] == 1:
            array = array[..., 0]
        return image_to_pixels(Image.fromarray(array), max_pixels=self.max_pixels)[0]

    def prob_fake(self, pixels: np.ndarray) -> np.ndarray:
        """Calibrated P(FAKE) of (N, 32, 32, 3) uint8 images."""
        if self.onnx:
            logits = self.onnx(pixels, self.batch_size)
        else:
            logits = predict_logits(self.model, pixels, self.batch_size)
        return 1.0 - sigmoid(apply_temperature(logits, self.temperature))

    def predict(self, items: Iterable[Item], threshold: float | None = None) -> list[Prediction]:
        return list(self.iter_predict(items, threshold))

    def iter_predict(self, items: Iterable[Item], threshold: float | None = None, chunk: int = 256
                     ) -> Iterator[Prediction]:
        """Predictions in input order, read and scored `chunk` at a time (bounded memory for any count).

        With no threshold the model's calibrated decision applies (REAL / UNSURE / FAKE); a threshold gives a
        plain two-way verdict, FAKE when P(FAKE) >= threshold."""
        decision = self.decision if threshold is None else Decision.single(threshold)
        batch: list[tuple[str, np.ndarray | None, str | None]] = []
        for n, item in enumerate(items):
            batch.append(self._read(n, item))
            if len(batch) == chunk:
                yield from self._score(batch, decision)
                batch = []
        yield from self._score(batch, decision)

    def _read(self, n: int, item: Item) -> tuple[str, np.ndarray | None, str | None]:
        """(source name, pixels or None, error or None) of the n-th input."""
        source = str(item) if isinstance(item, (str, os.PathLike)) else f"<input {n}>"
        try:
            return source, self.pixels(item), None
        except BadImage as exc:
            return source, None, str(exc)

    def _score(self, batch, decision: Decision) -> Iterator[Prediction]:
        good = [pixels for _, pixels, _ in batch if pixels is not None]
        probs = iter(self.prob_fake(np.stack(good)).tolist()) if good else iter(())
        for source, pixels, error in batch:
            p = None if pixels is None else next(probs)
            verdict = None if p is None else decision.verdict(p)
            yield Prediction(source, p, verdict, decision.fake_at, decision.real_at, self.model_id, error)

    def explain(self, items: Iterable[Item], target: str = "predicted", layer: str | None = None
                ) -> list[tuple[Prediction, np.ndarray | None]]:
        """(prediction, 32 x 32 Grad-CAM map or None) per input; maps explain the verdict by default."""
        return [(found.prediction, found.heatmap) for found in self.explanations(items, target, layer)]

    def explanations(self, items: Iterable[Item], target: str = "predicted", layer: str | None = None,
                     threshold: float | None = None) -> list[Explanation]:
        """An Explanation per input (prediction, pixels, map, the label it explains); each input is decoded once.
        The verdicts follow the calibrated decision, or `threshold` as in iter_predict."""
        from cifake.explain.gradcam import GradCam  # captum, matplotlib: 1.6 s that scoring never needs

        read = [self._read(n, item) for n, item in enumerate(items)]
        predictions = list(self._score(read, self.decision if threshold is None else Decision.single(threshold)))
        good = [i for i, (_, pixels, _) in enumerate(read) if pixels is not None]
        maps: list[np.ndarray | None] = [None] * len(read)
        labels: list[str | None] = [None] * len(read)
        if good:
            heatmaps, targets = GradCam(self.model, layer)(np.stack([read[i][1] for i in good]), target)
            for i, heatmap, label in zip(good, heatmaps, targets):
                maps[i], labels[i] = heatmap, LABEL_NAMES[int(label)]
        return [Explanation(prediction, pixels, heatmap, label)
                for prediction, (_, pixels, _), heatmap, label in zip(predictions, read, maps, labels)]

    def overlay_png(self, item: Item, target: str = "predicted") -> bytes:
        """The Grad-CAM overlay figure of one input as PNG bytes (raises BadImage for a bad input)."""
        from cifake.explain.figures import overlay_figure  # matplotlib: only for a figure

        (found,) = self.explanations([item], target)
        if found.prediction.error:
            raise BadImage(found.prediction.error)
        title = f"{found.prediction.verdict}: P(FAKE) = {found.prediction.prob_fake:.3f}"
        buffer = io.BytesIO()
        overlay_figure(found.pixels, found.heatmap, title, buffer)
        return buffer.getvalue()


def _onnx_runner(folder: Path, digest: str, threads: int, required: bool) -> OnnxRunner | None:
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
            if runner and runner.metadata.get("cifake_weights_sha256") == digest:  # else stale: other weights
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
