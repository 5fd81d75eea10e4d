"""Shared Hypothesis strategies for masks and schedules."""
import torch
from hypothesis import strategies as st

DTYPES = (torch.float32, torch.float64, torch.bfloat16)

sparsities = st.one_of(st.floats(0.0, 0.999, allow_nan=False),
                       st.sampled_from([0.0, 0.5, 0.9, 0.97, 1 - 1e-9]))


@st.composite
def weights(draw, max_side: int = 12):
    """A weight matrix or vector of any small shape and dtype; values from a seed, with ties."""
    shape = tuple(draw(st.lists(st.integers(1, max_side), min_size=1, max_size=2)))
    dtype = draw(st.sampled_from(DTYPES))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2 ** 31 - 1)))
    w = torch.randn(shape, generator=g, dtype=torch.float64)
    if draw(st.booleans()):  # coarse values make ties common, which tie-breaking must handle
        w = torch.round(w * 2) / 2
    return w.to(dtype)
