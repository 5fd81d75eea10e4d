"""The CPU training settings of `spd.device.process_wide_speed_settings`."""
import ctypes
import ctypes.util
import platform
import resource

import pytest
import torch

from spd.device import process_wide_speed_settings, reuse_freed_memory

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
    with process_wide_speed_settings(torch.device("cpu")):
        assert reuse_freed_memory()
        faults_of_steps(libc, size, 6, 1)  # the heap grows once
        faults = faults_of_steps(libc, size, 6, 5)
    # glibc's defaults unmap or trim the freed blocks, and each round faults them in again
    # (about 6 x 6,150 pages a round on this machine).
    assert faults < size // resource.getpagesize(), faults


def _flushed() -> bool:
    return (torch.full((4,), 1e-39) * 1.0)[0].item() == 0.0  # a denormal float32, times one


def test_the_denormal_flush_lasts_until_the_outermost_loop_ends():
    cpu = torch.device("cpu")
    assert not _flushed()
    with process_wide_speed_settings(cpu):
        assert _flushed()
        with process_wide_speed_settings(cpu):  # a loop inside a loop (spd run, spd bench)
            assert _flushed()
        assert _flushed()  # the inner one ending does not switch it off under the outer
    assert not _flushed()
