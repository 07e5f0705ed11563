"""Keeping freed memory: a large block freed and allocated again is not page-faulted in a second time."""

import os
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="tunes glibc's allocator; a no-op elsewhere")

# Run in a fresh process, whose heap is in a known state. The heap grows the first times a 64 MiB block is
# allocated (16,384 faults of 4 KiB each), until freed blocks coalesce into one that fits torch's 64-byte-aligned
# request (after up to six growths in our runs); from then on the block is reused as it is, unless glibc
# returns it to the OS on every free.
PROBE = """
import resource, torch
from cifake.training.memory import keep_freed_memory
applied = keep_freed_memory()
def faults():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = torch.ones(16 * 2**20)  # 64 MiB, written so every page is touched
    del block
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
counts = [faults() for _ in range(20)]
print(applied, sum(counts[-4:]))  # the last four, once the heap has settled
"""


def _probe(setting: str) -> tuple[str, int]:
    run = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True,
                         env=os.environ | {"CIFAKE_KEEP_FREED_MEMORY": setting})
    applied, faults = run.stdout.split()
    return applied, int(faults)


def test_a_freed_large_block_is_reused_without_page_faults():
    applied, faults = _probe("1")
    assert applied == "True" and faults < 1000


def test_the_environment_variable_turns_it_off():
    applied, faults = _probe("0")
    assert applied == "False" and faults > 4 * 10_000  # glibc's default: unmapped when freed, faulted in again
