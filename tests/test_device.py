"""The CPU training settings of `spd.device.fast_math`."""
import ctypes
import ctypes.util
import platform
import resource

import pytest
import torch

from spd.device import fast_math, reuse_freed_memory

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"


def faults_of_steps(libc, nbytes: int, blocks: int, steps: int) -> int:
    """Minor page faults over `steps` rounds of malloc'ing `blocks` blocks of `nbytes`, writing
    them and freeing them all: a training step's activations, as glibc sees them."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(steps):
        blocks_ = [libc.malloc(nbytes) for _ in range(blocks)]
        for b in blocks_:
            ctypes.memset(b, 1, nbytes)
        for b in blocks_:
            libc.free(b)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


@pytest.mark.skipif(not GLIBC, reason="glibc's malloc only")
def test_freed_activation_sized_blocks_are_reused_not_faulted_in_again():
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.malloc.restype, libc.free.argtypes = ctypes.c_void_p, [ctypes.c_void_p]
    size = 32 * 12 * 128 * 128 * 4  # MiniLM's attention probabilities, batch 32, length 128
    with fast_math(torch.device("cpu")):
        assert reuse_freed_memory()
        faults_of_steps(libc, size, 6, 1)  # the heap grows once
        faults = faults_of_steps(libc, size, 6, 5)
    # glibc's defaults unmap or trim the freed blocks, and each round faults them in again
    # (about 6 x 6,150 pages a round on this machine).
    assert faults < size // resource.getpagesize(), faults
