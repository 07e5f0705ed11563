"""Temperature scaling (Guo et al. 2017): one scalar T fitted on validation; P(REAL) = sigmoid(logit / T).

It changes no verdict at threshold 0.5 and no ranking (AUC), only how confident the probabilities are.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

ECE_BINS = 15  # the usual choice in the calibration literature


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The T > 0 that minimises the binary cross-entropy of logits / T on (validation) labels."""
    x = torch.as_tensor(np.asarray(logits, np.float64))
    y = torch.as_tensor(np.asarray(labels, np.float64))
    if len(x) == 0 or len(np.unique(labels)) < 2:
        raise ValueError("temperature scaling needs validation images of both labels")
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)  # T = exp(log_t) stays positive
    optimizer = torch.optim.LBFGS([log_t], lr=0.5, max_iter=200, tolerance_grad=1e-10, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.binary_cross_entropy_with_logits(x / log_t.exp(), y)
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(log_t.detach().exp())


def apply_temperature(logits: np.ndarray, temperature: float) -> np.ndarray:
    return (np.asarray(logits, np.float32) / np.float32(temperature)).astype(np.float32)


def calibration_error(prob_real: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    """Expected calibration error of P(REAL): the bin-weighted mean |observed REAL rate - mean predicted|."""
    # imported here: torchmetrics pulls in scipy.signal and transformers, 2.9 s of `cifake predict`'s start-up
    from cifake.compat import import_torchvision

    import_torchvision()  # before torchmetrics, which imports it (cifake.compat says why)
    from torchmetrics.functional.classification import binary_calibration_error

    return float(binary_calibration_error(torch.as_tensor(np.asarray(prob_real, np.float32)),
                                          torch.as_tensor(np.asarray(labels, np.int64)), n_bins=bins, norm="l1"))


def reliability_bins(prob_real: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> dict:
    """Per equal-width bin of P(REAL): count, mean predicted P(REAL), observed REAL rate (for the diagram)."""
    prob_real, labels = np.asarray(prob_real, np.float64), np.asarray(labels, np.float64)
    index = np.minimum((prob_real * bins).astype(int), bins - 1)
    counts = np.bincount(index, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        predicted = np.bincount(index, prob_real, bins) / counts
        observed = np.bincount(index, labels, bins) / counts
    return {"edges": np.linspace(0, 1, bins + 1).tolist(), "count": counts.tolist(),
            "predicted": np.nan_to_num(predicted, nan=-1).tolist(),
            "observed": np.nan_to_num(observed, nan=-1).tolist()}
