"""What a search trial costs and which extractor wins: the study's rule and the cost model that orders trials
(longest first) and prices search-status's time left. Plain arithmetic on topologies; no training here."""

from __future__ import annotations

from pathlib import Path

from cifake.devices import mixed_precision, resolve_device
from cifake.models.cnn import Topology, feature_size
from cifake.runfolder import RunFolder


def trial_folder(out: Path, topology: Topology) -> RunFolder:
    """A trial's run folder in a search's folder; its record's presence means the trial finished."""
    return RunFolder(out / "trials" / topology.name)


def choose_extractor(stage1: list[dict]) -> dict:
    """The study's rule: dense heads go on the feature extractor of lowest validation loss."""
    return min(stage1, key=lambda r: r["validation"]["loss"])


# On a CPU that trains in fp32 (no bf16 kernels, cifake.devices.cpu_runs_bf16) the multiply-adds are most of a
# step. Its weight was fitted to the epoch times of a finished stage 1 (docs/search.md names the retired
# script): on an AVX2-only EPYC, 0.019 for `make reproduce`'s 12 extractors (each then predicted within 22 %), 0.022 for
# the paper profile's (within 16 %), 0.017 before ReLU ran after pooling. With it, search-status's estimate of
# that paper-profile stage 1 was 15 % off (median), against +112 % for the bf16 cost (docs/search.md, "How good
# the time-left estimate is").
FP32_COST_PER_MULTIPLY_ADD = 0.02


def training_work(topology: Topology, image_size: int = 32) -> tuple[float, float, float]:
    """Per image of `image_size` px: the convolutions' output elements (before pooling), their multiply-adds, and
    the dense weights (flattened features to the output)."""
    elements = multiply_adds = 0.0
    channels = 3
    for layer in range(topology.conv_layers):
        outputs = (feature_size(image_size, layer) - 2) ** 2 * topology.filters  # 3x3 valid convolution
        elements += outputs
        multiply_adds += outputs * channels * 9
        channels = topology.filters
    widths = [channels * feature_size(image_size, topology.conv_layers) ** 2, *topology.dense, 1]
    return elements, multiply_adds, float(sum(a * b for a, b in zip(widths, widths[1:])))


def estimated_cost(topology: Topology, matrix_units: bool = True, image_size: int = 32) -> float:
    """Rough training time per image, to schedule long trials first and to estimate a search's time left.

    With bf16 matrix units (`matrix_units`: a CPU with AMX or AVX-512 bf16, a GPU), fitted to the time per step
    of the 12 extractors and 15 dense heads on f64-c2 (bf16, one thread, the trainer's step as
    benchmarks/bench_step.py times it): the convolutions' multiply-adds hardly count, while every element of a
    convolution's output (before pooling) is streamed through memory by ReLU and pooling, forward and backward, and
    a dense weight pays for its bf16 copy, gradient and Adam's moments at each step of 64 images. (The fit also
    charged the flattened features for flattening's NCHW gradient; cifake.models.cnn.Flatten has since removed that
    cost, and the term with it. ReLU now runs after pooling while training, CifakeCNN._features, so the activation
    term overstates their cost a little.) In fp32 every multiply-add counts, the dense weights' as the
    convolutions' (FP32_COST_PER_MULTIPLY_ADD)."""
    elements, multiply_adds, dense = training_work(topology, image_size)
    if matrix_units:
        return elements + dense / 72
    return elements + FP32_COST_PER_MULTIPLY_ADD * (multiply_adds + dense)


def trains_on_matrix_units(device: str) -> bool:
    """Whether trials on `device` train in a reduced precision (bf16 or fp16 autocast), which the cost follows."""
    return mixed_precision(resolve_device(device), True) is not None
