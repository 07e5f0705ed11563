"""Keeping freed memory: a large block freed and allocated again is not page-faulted in a second time."""

import os
import platform
import resource
import subprocess
import sys

import pytest
import torch

from cifake.training.memory import keep_freed_memory

glibc_only = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="tunes glibc's allocator; a no-op elsewhere")


def _page_faults_of_a_64_mib_block() -> int:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = torch.ones(16 * 2**20)  # 64 MiB, written so every page is touched
    del block
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


@glibc_only
def test_a_freed_large_block_is_reused_without_page_faults():
    assert keep_freed_memory()
    # The heap grows the first times (16,384 faults of 4 KiB each), until freed blocks coalesce into one that
    # fits torch's 64-byte-aligned request; from then on the block is reused as it is.
    for _ in range(3):
        _page_faults_of_a_64_mib_block()
    assert _page_faults_of_a_64_mib_block() < 1000


@glibc_only
def test_the_environment_variable_turns_it_off():
    code = "from cifake.training.memory import keep_freed_memory as k; print(k())"
    run = lambda value: subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                       env=os.environ | {"CIFAKE_KEEP_FREED_MEMORY": value}).stdout.strip()
    assert (run("0"), run("1")) == ("False", "True")
