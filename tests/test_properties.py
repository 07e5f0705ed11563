"""Invariants checked over many generated cases (hypothesis), where a rule is clearer than a few examples."""

import io

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from cifake.calibration import Decision, choose_decision
from cifake.calibration.decision import decision_outcomes
from cifake.data import decode_image
from cifake.data.sources import CIFAR10_CLASSES, cifake_file_name, cifar_class
from cifake.generate.plan import cifar_index, job_file_name

QUICK = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --- CIFAKE file names and CIFAR-10 classes --------------------------------------------------------------------

@QUICK
@given(index=st.integers(0, 10**7), k=st.integers(0, 9))
def test_a_cifake_name_reads_back_as_its_class(index, k):
    name = cifake_file_name(index, k)
    assert cifar_class(name) == k and cifar_class(f"train/FAKE/{name}") == k


@QUICK
@given(name=st.text(min_size=1, max_size=20).filter(lambda s: any(c.isalnum() and c.isascii() for c in s)),
       index=st.integers(0, 10**6))
def test_a_generated_file_reads_back_as_its_class_or_unknown(name, index):
    file_name = job_file_name(name, index)
    assert "/" not in file_name and file_name.endswith(".jpg")
    assert cifar_class(file_name) == cifar_index(name)  # a CIFAR-10 class keeps its number; any other is -1


@QUICK
@given(k=st.integers(0, 9), index=st.integers(0, 10**6), upper=st.booleans())
def test_cifar_class_names_in_any_case_keep_their_number(k, index, upper):
    name = CIFAR10_CLASSES[k].upper() if upper else CIFAR10_CLASSES[k]
    assert cifar_class(job_file_name(name, index)) == k


# --- decoding: any mode and size gives 32 x 32 RGB -------------------------------------------------------------

MODES = ["1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "I;16", "I", "F", "YCbCr"]


def _image(mode: str, width: int, height: int, seed: int) -> Image.Image:
    rgb = Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))
    if mode in ("I;16", "I", "F"):
        return Image.fromarray(np.asarray(rgb.convert("L"), np.uint16) * 257).convert(mode)
    return rgb.convert(mode)


@QUICK
@given(mode=st.sampled_from(MODES), width=st.integers(1, 90), height=st.integers(1, 90), seed=st.integers(0, 99),
       fmt=st.sampled_from(["PNG", "TIFF", "JPEG", "BMP", "GIF", "WEBP"]))
def test_any_mode_and_size_decodes_to_32x32_rgb(mode, width, height, seed, fmt):
    image = _image(mode, width, height, seed)
    buffer = io.BytesIO()
    try:
        image.save(buffer, fmt)
    except (OSError, ValueError, KeyError):  # this format cannot hold this mode: nothing to decode
        return
    pixels, converted = decode_image(buffer.getvalue())
    assert pixels.shape == (32, 32, 3) and pixels.dtype == np.uint8
    assert converted == ((width, height) != (32, 32) or Image.open(io.BytesIO(buffer.getvalue())).mode != "RGB")


@QUICK
@given(colour=st.tuples(*[st.integers(0, 255)] * 3), width=st.integers(1, 120), height=st.integers(1, 120))
def test_a_flat_colour_stays_that_colour_at_any_size(colour, width, height):
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, "PNG")
    pixels, _ = decode_image(buffer.getvalue())
    assert (pixels == np.array(colour, np.uint8)).all()


# --- threshold decisions ---------------------------------------------------------------------------------------

probabilities = st.floats(0, 1, allow_nan=False)


@QUICK
@given(p=probabilities, threshold=probabilities)
def test_a_single_threshold_calls_fake_at_or_above_it(p, threshold):
    decision = Decision.single(threshold)
    assert decision.verdict(p) == ("FAKE" if p >= threshold else "REAL")
    assert decision.verdicts(np.array([p]))[0] == decision.verdict(p)


@QUICK
@given(p=probabilities, a=probabilities, b=probabilities)
def test_a_band_says_unsure_exactly_between_its_thresholds(p, a, b):
    decision = Decision(fake_at=max(a, b), real_at=min(a, b))
    expected = "FAKE" if p >= decision.fake_at else "REAL" if p < decision.real_at else "UNSURE"
    assert decision.verdict(p) == expected == decision.verdicts(np.array([p]))[0]


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10**6), n=st.integers(10, 400), flagged=st.floats(0.001, 0.5),
       passed=st.floats(0.001, 0.5), overlap=st.floats(0, 3))
def test_chosen_thresholds_meet_both_targets_on_their_own_images(seed, n, flagged, passed, overlap):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    labels[:2] = (0, 1)  # both labels present
    scores = 1 / (1 + np.exp(-(rng.normal(0, 1, n) * overlap + (1 - 2 * labels) * 2)))  # P(FAKE), noisy
    prob_fake = scores.astype(np.float32)
    decision = choose_decision(prob_fake, labels, flagged, passed)
    outcome = decision_outcomes(prob_fake, labels, decision)
    assert outcome["real_flagged_fake"] <= flagged + 1e-12 and outcome["fake_passed_real"] <= passed + 1e-12


@pytest.mark.parametrize("bad", [-0.1, 1.1, float("nan")])
def test_thresholds_outside_zero_one_are_refused(bad):
    with pytest.raises(ValueError):
        Decision.single(bad)
