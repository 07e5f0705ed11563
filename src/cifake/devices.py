"""The device a command computes on: `auto`, `cpu`, `cuda`, `cuda:N` or `mps`, resolved once and recorded.

`auto` takes a CUDA GPU when torch sees one, then an Apple GPU (MPS), else the CPU. A device that is not there
is a DeviceUnavailable error (a ValueError: the CLI prints it and exits with 2). Choosing a CUDA device also
makes CUDA deterministic (see `_deterministic_cuda`), so the same command and seed give the same metrics on
the same GPU type.
"""

from __future__ import annotations

import os
import platform
import re
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from cifake.choices import DEVICE_PATTERN


class DeviceUnavailable(ValueError):
    """The device asked for is not on this machine (or this torch build cannot use it)."""


def resolve_device(spec: str | torch.device = "auto") -> torch.device:
    """The torch device for a spec; raises DeviceUnavailable when it is not there."""
    text = str(spec)
    if not re.fullmatch(DEVICE_PATTERN, text):
        raise ValueError(f"device must be auto, cpu, cuda, cuda:N or mps, not {text!r}")
    if text == "auto":
        text = "cuda" if torch.cuda.is_available() else "mps" if _mps_available() else "cpu"
    device = torch.device(text)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceUnavailable(f"device {text}: torch {torch.__version__} sees no CUDA GPU on this machine "
                                    "(a CPU-only build, no driver, or CUDA_VISIBLE_DEVICES hides them); use "
                                    "--device cpu or auto")
        count = torch.cuda.device_count()
        if (device.index or 0) >= count:
            raise DeviceUnavailable(f"device {text}: this machine has {count} CUDA GPU(s), cuda:0 to cuda:{count - 1}")
        device = torch.device("cuda", device.index or 0)
        _deterministic_cuda()
    if device.type == "mps" and not _mps_available():
        raise DeviceUnavailable(f"device {text}: no Apple GPU (MPS) is available to torch {torch.__version__} here")
    return device


def device_name(device: torch.device) -> str:
    """What the device is, for logs and records: e.g. "NVIDIA H200" or "x86_64 CPU, 2 threads"."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "mps":
        return "Apple GPU (MPS)"
    threads = torch.get_num_threads()
    kernels = torch.backends.cpu.get_cpu_capability()  # the widest vector kernels torch uses here, e.g. AVX2
    return f"{platform.machine()} CPU ({kernels}), {threads} thread{'' if threads == 1 else 's'}"


@contextmanager
def cpu_threads(count: int) -> Iterator[None]:
    """Run the block with `count` torch CPU threads (0: leave the count as it is), then restore the count.
    The count is part of a CPU run's arithmetic: it decides how a convolution's gradient is split into partial
    sums, so the same seed gives the same weights only with the same count."""
    before = torch.get_num_threads()
    if count:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def describe(device: torch.device) -> dict:
    """The device as recorded in every artefact a command writes."""
    return {"device": str(device), "device_name": device_name(device)}


def mixed_precision(device: torch.device, enabled: bool) -> torch.dtype | None:
    """The autocast dtype of training on a device, or None for fp32.

    bf16 on CPUs with bf16 kernels (`cpu_runs_bf16`) and on GPUs that support it; fp16, which needs a gradient
    scaler, on older CUDA GPUs; fp32 on other CPUs and on MPS, where cifake has not been measured with autocast."""
    if not enabled or device.type == "mps":
        return None
    if device.type == "cpu" and not cpu_runs_bf16():
        return None
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16


def precision_name(dtype: torch.dtype | None) -> str:
    """A training precision as records and checkpoints name it."""
    return {torch.bfloat16: "bf16 autocast", torch.float16: "fp16 autocast + gradient scaling"}.get(dtype, "fp32")


def cpu_runs_bf16() -> bool:
    """Whether oneDNN has bf16 kernels for this CPU (AVX-512 or AMX on x86, the BF16 extension on Arm).

    Without them autocast falls back to reference kernels: on an AVX2-only AMD EPYC, `python
    benchmarks/bench_train.py --batch-sizes 64 --precisions fp32,bf16 --formats channels_last --force-bf16`
    trained the study's CNN at 472 images/s in bf16 and 5,170 in fp32, and resnet4 at 69 against 780
    (docs/devices.md). The check is torch's own (private) one; a torch without it keeps bf16, as before."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return True


def supports_float64(device: torch.device) -> bool:
    return device.type != "mps"  # MPS has no float64


def _deterministic_cuda() -> None:
    """Same inputs, same results on the same GPU type: deterministic cuBLAS and cuDNN kernels.

    cuBLAS needs a fixed workspace before its first call (CUBLAS_WORKSPACE_CONFIG); cuDNN must not benchmark and
    pick algorithms per run. Every op of cifake's models has a deterministic CUDA kernel (conv, max-pool 2d,
    linear, batch norm, mean/amax pooling, fused Adam), so strict mode raises rather than drifts if one ever
    does not."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(True)


def _mps_available() -> bool:
    return hasattr(torch.backends, "mps") and torch.backends.mps.is_available()
