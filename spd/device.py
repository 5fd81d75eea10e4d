"""One code path for CPU and GPU: pick the device and the precision the forward passes run in."""
import contextlib
import ctypes
import ctypes.util
import functools

import torch

from spd.errors import bad_value

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def resolve_device(name: str = "auto") -> torch.device:
    """`auto` takes CUDA when present, else the CPU; `cuda` without a GPU is an input error."""
    if name not in DEVICE_CHOICES:
        raise bad_value("--device", name, ", ".join(DEVICE_CHOICES))
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise bad_value("--device", name, "cpu or auto (no CUDA device is visible)")
    return torch.device(name)


# glibc mallopt parameters
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_MAX = -1, -2, -4


@functools.cache
def reuse_freed_memory() -> bool:
    """Make glibc's malloc keep freed memory for reuse instead of handing it back to the OS.

    By default, blocks above a (sliding, at most 32 MiB) threshold are mmapped and unmapped on
    every allocation, and free space at the top of the heap is trimmed; a training step frees
    and reallocates hundreds of MiB of activations (attention probabilities alone are batch x
    heads x length^2 floats per layer), so each step faulted its memory in afresh. That cost an
    SPD step on MiniLM (batch 32, length 128) about 0.5 s of 3.2 s, more than a plain training
    step lost (`spd bench`). Here: no mmap for allocations, trimming only above 2 GiB free, and
    256 MiB of slack when the heap grows. Values are unchanged, only where memory comes from;
    the process keeps its peak memory. Process-wide and left set; a no-op where there is no
    glibc. Returns whether the settings were applied."""
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt if name else None
    except (OSError, AttributeError):
        mallopt = None
    if mallopt is None:
        return False
    settings = ((_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, 2 ** 31 - 1), (_M_TOP_PAD, 256 << 20))
    return all(mallopt(param, value) == 1 for param, value in settings)


_SPEED_DEPTH = 0  # how many process_wide_speed_settings blocks are open (nested loops)


@contextlib.contextmanager
def process_wide_speed_settings(device: torch.device):
    """Process-wide settings for speed while a training loop runs, on the CPU:

    - freed memory is kept for reuse (`reuse_freed_memory`); glibc has no way back, so it stays
      set for the life of the process;
    - denormal floats are flushed to zero (x86 FTZ/DAZ) until the outermost block ends, then
      switched off again. SPD's attention-probability loss drives gradients into the denormal
      range, where x86 arithmetic is many times slower: without the flush an SPD step on MiniLM
      (batch 32, length 128) spent 1.8 s instead of 1.0 s in its matrix products (`spd bench`).
      Values below ~1e-38 (fp32) become 0, in Python's own float arithmetic too while it lasts.
    """
    global _SPEED_DEPTH
    cpu = device.type == "cpu"
    if cpu:
        if _SPEED_DEPTH == 0:
            torch.set_flush_denormal(True)
            reuse_freed_memory()
        _SPEED_DEPTH += 1
    try:
        yield
    finally:
        if cpu:
            _SPEED_DEPTH -= 1
            if _SPEED_DEPTH == 0:
                torch.set_flush_denormal(False)


PRECISIONS = ("auto", "fp32", "bf16")


@functools.cache
def cpu_has_fast_bf16() -> bool:
    """Whether this CPU multiplies bf16 matrices in hardware (AVX512-BF16 or AMX), where oneDNN
    runs a bf16 matrix product 2 to 3 times the fp32 rate; elsewhere bf16 is emulated."""
    try:
        flags = open("/proc/cpuinfo", encoding="utf-8").read()
    except OSError:
        return False
    return any(f in flags.split() for f in ("avx512_bf16", "amx_bf16"))


def autocast_dtype(device: torch.device, precision: str = "auto") -> torch.dtype | None:
    """The dtype forward passes autocast to, or None for full fp32.

    `auto` is bf16 on CUDA and fp32 on the CPU (what every run before the `precision` field
    did); `bf16` autocasts on either device; `fp32` never does. Under autocast the master
    weights, masks and optimizer state stay fp32: only matrix products and the activations
    between them run in bf16.
    """
    if precision not in PRECISIONS:
        raise bad_value("precision", precision, ", ".join(PRECISIONS))
    if precision == "bf16" or (precision == "auto" and device.type == "cuda"):
        return torch.bfloat16
    return None


def autocast(device: torch.device, precision: str = "auto"):
    """The autocast context of `autocast_dtype(device, precision)` (a no-op for fp32)."""
    dtype = autocast_dtype(device, precision)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def describe(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({torch.get_num_threads()} threads)"
