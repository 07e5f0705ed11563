"""The user-facing detector: load a model (the bundled one by default), score images, explain verdicts.

    from cifake import Detector
    detector = Detector.load()                    # or Detector.load("runs/paper")
    for result in detector.predict(["a.jpg", pil_image, array]):
        print(result.source, result.verdict, result.prob_fake)   # REAL, FAKE, UNSURE or OUT_OF_DOMAIN

Inputs may be paths, raw bytes, Pillow images or uint8 arrays (H x W x 3 or H x W), any size and mode;
everything is brought to the model's input exactly as its training data was: resized to N x N, or, for a `crop`
model, five N x N crops of native pixels whose logits are averaged (cifake.data.preprocess). A bad input gives
a result with `error` set; it never stops the others.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from cifake.calibration import OUT_OF_DOMAIN, Decision, apply_temperature
from cifake.calibration.domain import DomainCheck
from cifake.choices import BACKENDS
from cifake.data.dataset import available_cores
from cifake.data.decode import MAX_PIXELS, BadImage, decode_for, image_to_pixels, image_to_window
from cifake.data.preprocess import PREDICT_CROPS, prediction_crops
from cifake.data.sources import LABEL_NAMES
from cifake.devices import resolve_device
from cifake.models import load_model
from cifake.models.export import OnnxRunner, weights_digest
from cifake.models.inference import predict_embeddings, predict_logits, sigmoid
from cifake.models.io import bundled_model_dir
from cifake.predict.backend import onnx_runner
from cifake.predict.domain import input_size, judge, load_domain_check

Item = str | os.PathLike | bytes | Image.Image | np.ndarray


@dataclass(frozen=True)
class Prediction:
    source: str  # the path, or "<input N>" for images passed in memory
    prob_fake: float | None  # P(FAKE) = 1 - sigmoid(logit / T), T from calibration; None for an unreadable input
    verdict: str | None  # FAKE when prob_fake >= threshold, REAL when prob_fake < real_below, else UNSURE;
    # OUT_OF_DOMAIN, whatever prob_fake, when the domain check finds the image unlike the training data
    threshold: float
    real_below: float  # equal to threshold when there is no unsure band
    model_id: str
    error: str | None = None
    upscaled: bool = False  # a crop model's input smaller than its crop, enlarged to fit (the one such rule)
    domain_score: float | None = None  # distance from the training images over the threshold: above 1, outside
    in_domain: bool | None = None  # False: verdict OUT_OF_DOMAIN; None: the model has no domain check

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Explanation:
    prediction: Prediction
    pixels: np.ndarray | None  # the N x N x 3 image the model saw (a crop model's central crop); None if unreadable
    heatmap: np.ndarray | None  # its N x N Grad-CAM map
    map_for: str | None  # the label the map explains: REAL or FAKE


class Detector:
    """A trained model with its calibration, scoring any image input: `Detector.load()` for the bundled model or a
    run folder, then `predict` (verdicts), `iter_predict` (bounded memory), `explain` and `overlay_png` (Grad-CAM)."""

    def __init__(self, model, config: dict, model_id: str, max_pixels: int = MAX_PIXELS, batch_size: int = 64,
                 onnx: OnnxRunner | None = None, domain: DomainCheck | None = None):
        self.model = model.eval()  # Grad-CAM always runs on the torch model, on its device
        self.onnx = onnx  # scores run on onnxruntime when given (faster than torch: benchmarks/bench_onnx.py)
        self.backend = "onnx" if onnx else "torch"
        self.device = "cpu" if onnx else str(next(model.parameters()).device)  # where scores are computed
        self.config = config
        self.preprocess = model.preprocess  # the input the model was trained on: size, resize or crop
        calibration = config.get("calibration") or {}  # written by `cifake calibrate`
        self.temperature = float(calibration.get("temperature", 1.0))
        self.decision = Decision(**calibration["decision"]) if "decision" in calibration else Decision.single(0.5)
        self.domain = domain  # None: no OUT_OF_DOMAIN verdicts (a model calibrated before the check existed)
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
        runner = onnx_runner(folder, digest, threads, required=backend == "onnx") if wants_onnx else None
        return cls(model, config, f"{name}-{model.topology.name}-{digest[:12]}", onnx=runner,
                   domain=load_domain_check(folder, config), **options)

    def input_summary(self) -> dict:
        """The model's input as the service shows it: size, preprocessing, and in words."""
        size, mode = self.preprocess.size, self.preprocess.mode
        described = (f"shrunk to {size}x{size} pixels, as in the CIFAKE study" if mode == "resize" and size == 32
                     else f"resized to {size}x{size} pixels" if mode == "resize"
                     else f"{PREDICT_CROPS} crops of {size}x{size} native pixels, their scores averaged")
        return self.preprocess.to_dict() | {"described": described}

    def pixels(self, item: Item) -> np.ndarray:
        """One input as the N x N x 3 uint8 image the model sees (a crop model: the central crop); raises BadImage
        with the reason."""
        return self.views(item)[0][0]

    def views(self, item: Item) -> tuple[np.ndarray, bool]:
        """(the (k, N, N, 3) views of one input the model scores, whether it was enlarged): one resized image, or
        a crop model's centre and corner crops, whose logits are averaged."""
        views, upscaled, _ = self._views(item)
        return views, upscaled

    def _views(self, item: Item) -> tuple[np.ndarray, bool, tuple[int, int] | None]:
        """views() and the input's native (width, height) when the domain check compares sizes."""
        stored, extent, converted, size = self._decode(item)
        if not self.preprocess.crops:
            return stored[None], False, size
        return prediction_crops(stored[None], [extent], self.preprocess.size)[:, 0], converted, size

    def _decode(self, item: Item) -> tuple[np.ndarray, int, bool, tuple[int, int] | None]:
        data = None
        if isinstance(item, (str, os.PathLike)):
            try:
                data = Path(item).read_bytes()
            except OSError as exc:
                raise BadImage(f"unreadable file ({exc.strerror or exc})") from None
        elif isinstance(item, bytes):
            data = item
        elif isinstance(item, np.ndarray):
            item = self._array_image(item)
        elif not isinstance(item, Image.Image):
            raise BadImage(f"cannot read a {type(item).__name__}: pass a path, bytes, a PIL image or a uint8 array")
        decoded = decode_for(data, self.preprocess, self.max_pixels) if data is not None else self._image(item)
        sizes_matter = self.domain is not None and self.domain.sides is not None
        return *decoded, input_size(item, data) if sizes_matter else None

    def _image(self, image: Image.Image) -> tuple[np.ndarray, int, bool]:
        if self.preprocess.crops:
            return image_to_window(image, self.preprocess.size, self.max_pixels)
        pixels, converted = image_to_pixels(image, self.preprocess.size, self.max_pixels)
        return pixels, self.preprocess.size, converted

    @staticmethod
    def _array_image(array: np.ndarray) -> Image.Image:
        if array.dtype != np.uint8 or array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (1, 3, 4)):
            raise BadImage(f"an array must be uint8 H x W, H x W x 3 or H x W x 4, not {array.dtype} {array.shape}")
        if array.ndim == 3 and array.shape[2] == 1:
            array = array[..., 0]
        return Image.fromarray(array)

    def logits(self, pixels: np.ndarray) -> np.ndarray:
        """Uncalibrated logits (evidence for REAL) of (M, N, N, 3) uint8 views."""
        if self.onnx:
            return self.onnx(pixels, self.batch_size)
        return predict_logits(self.model, pixels, self.batch_size)

    def prob_fake(self, pixels: np.ndarray) -> np.ndarray:
        """Calibrated P(FAKE) of (M, N, N, 3) uint8 images, one per view."""
        return self._calibrated(self.logits(pixels))

    def _calibrated(self, logits: np.ndarray) -> np.ndarray:
        return 1.0 - sigmoid(apply_temperature(logits, self.temperature))

    def predict(self, items: Iterable[Item], threshold: float | None = None) -> list[Prediction]:
        return list(self.iter_predict(items, threshold))

    def iter_predict(self, items: Iterable[Item], threshold: float | None = None, chunk: int = 256
                     ) -> Iterator[Prediction]:
        """Predictions in input order, read and scored `chunk` at a time (bounded memory for any count).

        With no threshold the model's calibrated decision applies (REAL / UNSURE / FAKE); a threshold gives a
        plain two-way verdict, FAKE when P(FAKE) >= threshold. Either way a model with a domain check says
        OUT_OF_DOMAIN for an image unlike its training data (cifake.calibration.domain)."""
        decision = self.decision if threshold is None else Decision.single(threshold)
        batch: list[tuple[str, np.ndarray | None, str | None, bool, tuple[int, int] | None]] = []
        for n, item in enumerate(items):
            batch.append(self._read(n, item))
            if len(batch) == chunk:
                yield from self._score(batch, decision)
                batch = []
        yield from self._score(batch, decision)

    def _read(self, n: int, item: Item) -> tuple[str, np.ndarray | None, str | None, bool, tuple[int, int] | None]:
        """(source name, views or None, error or None, enlarged, native size) of the n-th input."""
        source = str(item) if isinstance(item, (str, os.PathLike)) else f"<input {n}>"
        try:
            views, upscaled, size = self._views(item)
            return source, views, None, upscaled, size
        except BadImage as exc:
            return source, None, str(exc), False, None

    def _score(self, batch, decision: Decision) -> Iterator[Prediction]:
        good = [(views, size) for _, views, _, _, size in batch if views is not None]
        logits, features = self._logits_and_features(np.concatenate([v for v, _ in good]) if good else None)
        # a crop model's views of one image: their mean logit is the image's (one view per image otherwise)
        counts = np.array([len(views) for views, _ in good], np.int64)
        firsts = np.cumsum(counts) - counts
        if len(logits) > len(good):
            logits = np.add.reduceat(logits, firsts) / counts
        probs = self._calibrated(np.asarray(logits, np.float32))
        scores, inside = judge(self.domain, features[firsts], [size for _, size in good]) if self.domain and good \
            else (None, None)
        k = 0
        for source, views, error, upscaled, _ in batch:
            if views is None:
                yield Prediction(source, None, None, decision.fake_at, decision.real_at, self.model_id, error)
                continue
            p = float(probs[k])
            verdict = decision.verdict(p) if inside is None or inside[k] else OUT_OF_DOMAIN
            domain = {} if scores is None else {"domain_score": float(scores[k]), "in_domain": bool(inside[k])}
            yield Prediction(source, p, verdict, decision.fake_at, decision.real_at, self.model_id, error, upscaled,
                             **domain)
            k += 1

    def _logits_and_features(self, views: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
        """Logits of the views and, for a model with a domain check, their features, from one pass."""
        if views is None:
            return np.empty(0, np.float32), None
        if self.domain is None:
            return self.logits(views), None
        if self.onnx:
            return self.onnx.embed(views, self.batch_size)
        return predict_embeddings(self.model, views, self.batch_size)

    def explain(self, items: Iterable[Item], target: str = "predicted", layer: str | None = None
                ) -> list[tuple[Prediction, np.ndarray | None]]:
        """(prediction, N x N Grad-CAM map or None) per input; maps explain the verdict by default."""
        return [(found.prediction, found.heatmap) for found in self.explanations(items, target, layer)]

    def explanations(self, items: Iterable[Item], target: str = "predicted", layer: str | None = None,
                     threshold: float | None = None, method: str = "gradcam") -> list[Explanation]:
        """An Explanation per input (prediction, pixels, map of `method`, the label it explains); each input is
        decoded once. The verdicts follow the calibrated decision, or `threshold` as in iter_predict."""
        from cifake.explain.methods import make_method  # captum, matplotlib: 1.6 s that scoring never needs

        explainer = make_method(method, self.model, layer)  # before any work: a method that does not apply

        read = [self._read(n, item) for n, item in enumerate(items)]
        predictions = list(self._score(read, self.decision if threshold is None else Decision.single(threshold)))
        good = [i for i, (_, views, *_) in enumerate(read) if views is not None]
        maps: list[np.ndarray | None] = [None] * len(read)
        labels: list[str | None] = [None] * len(read)
        if good:
            heatmaps, targets = explainer(np.stack([read[i][1][0] for i in good]), target)
            for i, heatmap, label in zip(good, heatmaps, targets):
                maps[i], labels[i] = heatmap, LABEL_NAMES[int(label)]
        return [Explanation(prediction, None if views is None else views[0], heatmap, label)
                for prediction, (_, views, *_), heatmap, label in zip(predictions, read, maps, labels)]

    def overlay_png(self, item: Item, target: str = "predicted") -> bytes:
        """The Grad-CAM overlay figure of one input as PNG bytes (raises BadImage for a bad input)."""
        from cifake.explain.figures import overlay_figure  # matplotlib: only for a figure

        (found,) = self.explanations([item], target)
        if found.prediction.error:
            raise BadImage(found.prediction.error)
        guess = " (a guess)" if found.prediction.in_domain is False else ""
        title = f"{found.prediction.verdict}: P(FAKE) = {found.prediction.prob_fake:.3f}{guess}"
        buffer = io.BytesIO()
        overlay_figure(found.pixels, found.heatmap, title, buffer)
        return buffer.getvalue()
