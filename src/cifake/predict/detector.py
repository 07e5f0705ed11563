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

import hashlib
import io
import os
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image

from cifake.calibration import Decision, apply_temperature
from cifake.data.decode import MAX_PIXELS, BadImage, decode_image, image_to_pixels
from cifake.models import load_model
from cifake.models.inference import predict_logits, sigmoid

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


def bundled_model_dir() -> Path:
    """The folder of the model shipped inside the package (safetensors + config + model card)."""
    return Path(str(resources.files("cifake.models") / "bundled"))


class Detector:
    def __init__(self, model, config: dict, model_id: str, max_pixels: int = MAX_PIXELS, batch_size: int = 64):
        self.model = model.eval()
        self.config = config
        calibration = config.get("calibration") or {}  # written by `cifake calibrate`
        self.temperature = float(calibration.get("temperature", 1.0))
        self.decision = Decision(**calibration["decision"]) if "decision" in calibration else Decision.single(0.5)
        self.model_id = model_id
        self.max_pixels = max_pixels
        self.batch_size = batch_size

    @classmethod
    def load(cls, run_dir: str | os.PathLike | None = None, **options) -> Detector:
        """The bundled model, or the model of a run folder (model.safetensors + config.json)."""
        folder = Path(run_dir) if run_dir else bundled_model_dir()
        model, config = load_model(folder)
        digest = hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()[:12]
        name = "bundled" if run_dir is None else folder.name
        return cls(model, config, f"{name}-{model.topology.name}-{digest}", **options)

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
        return 1.0 - sigmoid(apply_temperature(predict_logits(self.model, pixels, self.batch_size), self.temperature))

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
        return [(prediction, heatmap) for prediction, _, heatmap in self._explain(items, target, layer)]

    def _explain(self, items: Iterable[Item], target: str, layer: str | None):
        """(prediction, pixels, map) per input; each input is read and decoded once."""
        from cifake.explain.gradcam import GradCam

        read = [self._read(n, item) for n, item in enumerate(items)]
        predictions = list(self._score(read, self.decision))
        good = [i for i, (_, pixels, _) in enumerate(read) if pixels is not None]
        maps: list[np.ndarray | None] = [None] * len(read)
        if good:
            heatmaps, _ = GradCam(self.model, layer)(np.stack([read[i][1] for i in good]), target)
            for i, heatmap in zip(good, heatmaps):
                maps[i] = heatmap
        return [(prediction, pixels, heatmap) for prediction, (_, pixels, _), heatmap in zip(predictions, read, maps)]

    def overlay_png(self, item: Item, target: str = "predicted") -> bytes:
        """The Grad-CAM overlay figure of one input as PNG bytes (raises BadImage for a bad input)."""
        from cifake.explain.figures import overlay_figure

        ((prediction, pixels, heatmap),) = self._explain([item], target, None)
        if prediction.error:
            raise BadImage(prediction.error)
        title = f"{prediction.verdict}: P(FAKE) = {prediction.prob_fake:.3f}"
        buffer = io.BytesIO()
        overlay_figure(pixels, heatmap, title, buffer)
        return buffer.getvalue()
