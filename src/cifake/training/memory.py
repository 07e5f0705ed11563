"""Keep freed memory in the process, so large tensors are not page-faulted in afresh on every training step."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

_M_TRIM_THRESHOLD = -1  # mallopt parameters, from glibc's malloc.h
_M_MMAP_MAX = -4
_applied: bool | None = None


def keep_freed_memory() -> bool:
    """Serve large allocations from glibc's heap and keep what is freed there; returns whether that applies.

    glibc maps every allocation above its mmap threshold (32 MiB at most) afresh and unmaps it when it is freed,
    so the bf16 copy and the gradient of a 4096x4096 weight are page-faulted in again, 4 KiB at a time, on every
    step: a third of the step time for the study's largest dense heads (benchmarks/bench_train.py --dense).
    Numerics are unchanged. The price is that a training process keeps its peak memory until it exits. A no-op
    outside glibc (macOS, Windows, musl) and when CIFAKE_KEEP_FREED_MEMORY=0. Training outside the main thread
    needs cifake.cluster.ONE_ARENA in the process's environment as well.
    """
    global _applied
    if _applied is None:
        _applied = False
        if os.environ.get("CIFAKE_KEEP_FREED_MEMORY", "1") != "0" and platform.libc_ver()[0] == "glibc":
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            # mallopt returns 1 on success; the trim threshold is the largest value an int can hold.
            _applied = bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
    return _applied
