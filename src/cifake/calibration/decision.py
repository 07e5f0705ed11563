"""From P(FAKE) to a verdict: FAKE, REAL, or UNSURE when neither can be said within the chosen error rates.

Two error rates matter and they are not symmetric: calling a real photo AI-made (a false accusation, the study's
false negative with REAL positive) and letting an AI image pass as real. A Decision holds two thresholds chosen
on validation images: FAKE when P(FAKE) >= fake_at (at most `max_real_flagged` of REAL images get there), REAL
when P(FAKE) < real_at (at most `max_fake_passed` of FAKE images get there), UNSURE in between.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

UNSURE = "UNSURE"
OUT_OF_DOMAIN = "OUT_OF_DOMAIN"  # the domain check's verdict (cifake.calibration.domain): P(FAKE) would be a guess


@dataclass(frozen=True)
class Decision:
    fake_at: float = 0.5  # FAKE when P(FAKE) >= this
    real_at: float = 0.5  # REAL when P(FAKE) < this; in between: UNSURE (no band when the two are equal)

    def __post_init__(self) -> None:
        if not 0 <= self.real_at <= self.fake_at <= 1:
            raise ValueError(f"thresholds must satisfy 0 <= real_at <= fake_at <= 1, got {self}")

    @classmethod
    def single(cls, threshold: float) -> Decision:
        """FAKE when P(FAKE) >= threshold, else REAL (no unsure band)."""
        if not 0 <= threshold <= 1:
            raise ValueError(f"threshold must lie in [0, 1], got {threshold}")
        return cls(threshold, threshold)

    def verdict(self, prob_fake: float) -> str:
        if prob_fake >= self.fake_at:
            return "FAKE"
        return "REAL" if prob_fake < self.real_at else UNSURE

    def verdicts(self, prob_fake: np.ndarray) -> np.ndarray:
        prob_fake = np.asarray(prob_fake, np.float64)  # compare in float64: NumPy would round the thresholds to float32
        out = np.full(prob_fake.shape, UNSURE, dtype=object)
        out[prob_fake >= self.fake_at] = "FAKE"
        out[prob_fake < self.real_at] = "REAL"
        return out

    def to_dict(self) -> dict:
        return asdict(self)


def choose_decision(prob_fake: np.ndarray, labels: np.ndarray, max_real_flagged: float = 0.01,
                    max_fake_passed: float = 0.02) -> Decision:
    """Thresholds from validation P(FAKE) and labels (1 = REAL) that keep both error rates within their targets."""
    for name, rate in (("max_real_flagged", max_real_flagged), ("max_fake_passed", max_fake_passed)):
        if not 0 < rate < 1:
            raise ValueError(f"{name} must lie in (0, 1), got {rate}")
    prob_fake, labels = np.asarray(prob_fake, np.float64), np.asarray(labels)
    real, fake = np.sort(prob_fake[labels == 1]), np.sort(prob_fake[labels == 0])
    if len(real) == 0 or len(fake) == 0:
        raise ValueError("choosing thresholds needs validation images of both labels")
    fake_at = _lowest_threshold_flagging_at_most(real, max_real_flagged)
    real_at = _highest_threshold_passing_at_most(fake, max_fake_passed)
    if real_at >= fake_at:  # the two targets overlap: one threshold meets both, no unsure band needed
        return Decision.single(float(np.clip((real_at + fake_at) / 2, 0, 1)))
    return Decision(fake_at=float(fake_at), real_at=float(real_at))


def _lowest_threshold_flagging_at_most(real_sorted: np.ndarray, rate: float) -> float:
    """Smallest t with mean(real >= t) <= rate: just above the k-th largest REAL score, k = floor(rate * n)."""
    allowed = int(np.floor(rate * len(real_sorted)))
    # The next float32 up: probabilities are float32, so the threshold must be one too or rounding could tie it.
    return min(1.0, float(np.nextafter(np.float32(real_sorted[len(real_sorted) - allowed - 1]), np.float32(2))))


def _highest_threshold_passing_at_most(fake_sorted: np.ndarray, rate: float) -> float:
    """Largest t with mean(fake < t) <= rate: the (k+1)-th smallest FAKE score, k = floor(rate * n)."""
    allowed = int(np.floor(rate * len(fake_sorted)))
    return float(fake_sorted[min(allowed, len(fake_sorted) - 1)])


def decision_outcomes(prob_fake: np.ndarray, labels: np.ndarray, decision: Decision) -> dict:
    """How a decision fares: unsure share, real photos flagged FAKE, FAKE passed as REAL, accuracy of the rest."""
    verdicts = decision.verdicts(prob_fake)
    real, fake, decided = labels == 1, labels == 0, verdicts != UNSURE
    right = ((verdicts == "REAL") & real) | ((verdicts == "FAKE") & fake)
    return {
        "images": int(len(labels)),
        "unsure": float(np.mean(~decided)),
        "real_flagged_fake": float(np.mean(verdicts[real] == "FAKE")) if real.any() else None,
        "fake_passed_real": float(np.mean(verdicts[fake] == "REAL")) if fake.any() else None,
        "accuracy_when_decided": float(right[decided].mean()) if decided.any() else None,
    }
