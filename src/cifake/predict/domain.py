"""The domain check as the detector applies it: OUT_OF_DOMAIN for an input unlike the model's training data, by
its features or by its native size (cifake.calibration.domain fits both)."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

from cifake.calibration.domain import DomainCheck
from cifake.data.sizes import native_size
from cifake.runfolder import RunFolder


def load_domain_check(folder: str | os.PathLike, config: dict) -> DomainCheck | None:
    """The model's domain check, or None when `cifake calibrate` did not fit one (the model behaves as before)."""
    if "domain" not in config:
        return None
    run = RunFolder(folder)
    if not run.domain.is_file():
        raise FileNotFoundError(f"{run.domain}: missing; config.json has a domain check, whose features live there")
    try:
        return DomainCheck.from_saved(config["domain"], run.read_domain())
    except ValueError as exc:
        raise ValueError(f"{run.domain}: {exc}") from None


def input_size(item, data: bytes | None) -> tuple[int, int] | None:
    """(width, height) of an input as it came, before any resize: read from the header of file bytes."""
    if data is not None:
        return native_size(data)
    if isinstance(item, Image.Image):
        return item.size
    if isinstance(item, np.ndarray):
        return item.shape[1], item.shape[0]
    return None


def judge(check: DomainCheck, features: np.ndarray, sizes: list[tuple[int, int] | None]
          ) -> tuple[np.ndarray, np.ndarray]:
    """(domain_score, inside) per image: outside when the features are further than the threshold from the
    training images (score > 1) or the native size is beyond the training files' range."""
    scores = check.scores(features)
    size_outside = np.array([size is not None and check.size_outside(*size) for size in sizes], bool)
    return scores, (scores <= 1) & ~size_outside
