"""The domain check: is an image like the model's training data, or is its verdict a guess?

Two parts, both fitted on the model's own training data by `cifake calibrate`:

- **Features.** The Mahalanobis distance of the image's penultimate features (`model.embed`: unit vectors) to the
  nearer of the two class means (REAL, FAKE) of a seeded sample of training images, under their shared covariance
  (Lee et al., NeurIPS 2018, on the last layer). The threshold is the validation split's `1 - max_flagged`
  quantile, so at most that share of in-domain images is flagged; `domain_score` is the distance over the
  threshold (above 1: outside).
- **Native size.** The sides of the training files (a seeded sample of their headers): an image whose sides lie
  outside that range, by more than `SIZE_TOLERANCE`, was brought to the model's input by a resize no training
  image had (a 12-megapixel photograph for a model of 32 px thumbnails).

Why these, and not the k-th nearest training image, per-layer statistics, colour or confidence: docs/detect.md,
*The domain check*, measured by `tools/domain_methods.py`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from threadpoolctl import ThreadpoolController

TRAIN_SAMPLE = 30_000  # training images whose features fit the means and covariance
SHRINK = 1e-3  # covariance + SHRINK * its mean variance * I: invertible, and the best of 1e-3..1e-1 (measured)
SIZE_TOLERANCE = 1.25  # a side may be this factor beyond the range seen in training
MAX_FEATURES = 1024  # wider features (a CNN's flattened maps at a large size) keep a seeded subset of columns,
# so that the covariance stays small (4 MB) and well estimated from a few thousand images


@dataclass(frozen=True)
class DomainCheck:
    """A fitted check: `distances` and `scores` of features, `size_outside` of native sizes."""

    means: np.ndarray  # (classes, D) float32: the class means of the training features
    precision: np.ndarray  # (D, D) float32: the inverse of their shared, shrunk covariance
    threshold: float  # the distance that `max_flagged` of validation images exceed
    sides: tuple[int, int] | None  # smallest and largest side among the training files; None: not checked
    max_flagged: float = 0.01
    training_images: int = 0  # how many the means and covariance were fitted on
    columns: np.ndarray | None = None  # the feature columns kept when there are over MAX_FEATURES; None: all

    @classmethod
    def fit(cls, train_features: np.ndarray, train_labels: np.ndarray, val_features: np.ndarray,
            sides: tuple[int, int] | None, max_flagged: float = 0.01, shrink: float = SHRINK) -> DomainCheck:
        """Fit the class means and shared covariance on training features, and set the threshold on validation
        features so that at most `max_flagged` of them are outside."""
        if not 0 < max_flagged < 1:
            raise ValueError(f"max_flagged must lie between 0 and 1, got {max_flagged}")
        width = np.shape(train_features)[1]
        columns = np.sort(np.random.default_rng(0).permutation(width)[:MAX_FEATURES]) if width > MAX_FEATURES \
            else None
        features = np.asarray(train_features if columns is None else train_features[:, columns], np.float64)
        if len(features) <= features.shape[1] // 4 or len(val_features) == 0:
            raise ValueError(f"the domain check needs more than {features.shape[1] // 4} training images for "
                             f"{features.shape[1]} features and at least 1 validation image, got {len(features)} "
                             f"and {len(val_features)} (calibrate with --no-domain-check to go without)")
        labels = np.asarray(train_labels)
        classes = [features[labels == label] for label in np.unique(labels)]
        means = np.stack([group.mean(0) for group in classes])
        residuals = np.concatenate([group - mean for group, mean in zip(classes, means)])
        covariance = residuals.T @ residuals / len(residuals)
        covariance += shrink * np.trace(covariance) / len(covariance) * np.eye(len(covariance))
        precision = np.ascontiguousarray(np.linalg.inv(covariance), np.float32)  # float32 as saved: same scores
        unfitted = cls(means.astype(np.float32), precision, 1.0, sides, max_flagged, len(features), columns)
        threshold = float(np.quantile(unfitted.distances(val_features), 1 - max_flagged, method="higher"))
        return cls(unfitted.means, precision, max(threshold, 1e-6), sides, max_flagged, len(features), columns)

    def distances(self, features: np.ndarray) -> np.ndarray:
        """Squared Mahalanobis distance to the nearer class mean, per row of (N, D) features.

        On one BLAS thread: a batch's product is small (a few ms), and BLAS threads woken beside onnxruntime's
        spinning ones slowed scoring to 68 % of its files/s; on one thread scoring keeps 95 % of them
        (benchmarks/bench_predict.py)."""
        x = np.asarray(features if self.columns is None else features[:, self.columns], np.float32)
        with _blas().limit(limits=1, user_api="blas"):
            projected = x @ self.precision  # (x - m)' P (x - m) = x'Px - 2 m'Px + m'Pm: one product for all means
            to_means = projected @ self.means.T
            at_means = np.einsum("cd,cd->c", self.means @ self.precision, self.means)
        quadratic = np.einsum("nd,nd->n", projected, x)
        return np.maximum(quadratic[:, None] - 2 * to_means + at_means[None, :], 0).min(1)

    def scores(self, features: np.ndarray) -> np.ndarray:
        """domain_score per image: distance over the threshold; above 1 the image is outside the domain."""
        return self.distances(features) / self.threshold

    def size_outside(self, width: int, height: int) -> bool:
        """Whether an image of this native size is bigger or smaller than every training file, beyond tolerance."""
        if self.sides is None:
            return False
        low, high = self.sides
        return min(width, height) * SIZE_TOLERANCE < low or max(width, height) > high * SIZE_TOLERANCE

    def describe_size(self) -> str:
        """The training files' sides as `predict` names them: "32 px", "512-1024 px", or "not checked"."""
        if self.sides is None:
            return "not checked"
        low, high = self.sides
        return f"{low} px" if low == high else f"{low}-{high} px"

    def to_config(self) -> dict:
        """What config.json records (the means and precision go to domain.safetensors)."""
        return {"method": "mahalanobis-penultimate", "threshold": self.threshold,
                "features": int(self.precision.shape[0]), "training_images": self.training_images,
                "max_flagged": self.max_flagged,
                "sides": list(self.sides) if self.sides else None, "size_tolerance": SIZE_TOLERANCE}

    def tensors(self) -> dict[str, np.ndarray]:
        # contiguous copies: safetensors writes an array's buffer as it lies, whatever its strides
        kept = {} if self.columns is None else {"columns": np.ascontiguousarray(self.columns, np.int64)}
        return {"means": np.ascontiguousarray(self.means), "precision": np.ascontiguousarray(self.precision), **kept}

    @classmethod
    def from_saved(cls, config: dict, tensors: dict[str, np.ndarray]) -> DomainCheck:
        try:
            sides = tuple(int(side) for side in config["sides"]) if config.get("sides") else None
            return cls(np.asarray(tensors["means"], np.float32), np.asarray(tensors["precision"], np.float32),
                       float(config["threshold"]), sides, float(config["max_flagged"]),
                       int(config.get("training_images", 0)), tensors.get("columns"))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"an invalid domain check ({exc!r})") from None


@functools.cache
def _blas() -> ThreadpoolController:
    """The process's thread pools, listed once: listing them inspects every loaded library, limiting a listed
    one is cheap."""
    return ThreadpoolController()
