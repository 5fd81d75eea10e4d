"""The faster training paths: length-grouped batches and bf16 autocast, and what they keep."""
import pytest
import torch
from hypothesis import given, strategies as st

from spd import data
from spd.device import autocast, autocast_dtype


def _examples(lengths):
    return [{"input_ids": [1] * n, "token_type_ids": [0] * n, "label": 0} for n in lengths]


@given(st.lists(st.integers(1, 128), min_size=1, max_size=400), st.integers(1, 40),
       st.integers(0, 2 ** 31))
def test_length_grouped_batches_cover_every_example_once_per_epoch(lengths, batch_size, seed):
    sampler = data.LengthGroupedBatches(lengths, batch_size, torch.Generator().manual_seed(seed))
    for _ in range(2):  # two epochs, each a permutation
        batches = list(sampler)
        assert len(batches) == len(sampler)
        assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
        assert sum(len(b) < batch_size for b in batches) <= -(-len(lengths) // (
            batch_size * data.GROUP_BATCHES))  # at most one short batch per group


def test_length_grouped_batches_are_seeded_and_reshuffled_each_epoch():
    lengths = [(7 * i) % 97 + 3 for i in range(2000)]

    def epochs(seed):
        s = data.LengthGroupedBatches(lengths, 32, torch.Generator().manual_seed(seed))
        return [list(s), list(s)]

    a, b = epochs(5), epochs(5)
    assert a == b  # the same seed, the same batches
    assert a[0] != a[1]  # a new order each epoch
    assert epochs(6)[0] != a[0]


def test_length_grouping_cuts_padding():
    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(10, 120, (3000,), generator=g).tolist()
    ex = _examples(lengths)
    plain = list(data.make_loader(ex, 32, 0, shuffle=True, seed=1).batch_sampler)
    grouped = list(data.make_loader(ex, 32, 0, shuffle=True, seed=1,
                                    group_by_length=True).batch_sampler)
    before, after = data.padding_fraction(ex, plain), data.padding_fraction(ex, grouped)
    assert after < before / 4, (before, after)


def test_grouping_is_only_for_shuffled_training_batches():
    ex = _examples([5, 50, 7, 90])
    batches = list(data.make_loader(ex, 2, 0, shuffle=False, group_by_length=True).batch_sampler)
    assert batches == [[0, 1], [2, 3]]  # evaluation order is kept


@pytest.mark.parametrize("device_type, precision, dtype", [
    ("cpu", "auto", None), ("cpu", "fp32", None), ("cpu", "bf16", torch.bfloat16),
    ("cuda", "auto", torch.bfloat16), ("cuda", "fp32", None), ("cuda", "bf16", torch.bfloat16)])
def test_precision_picks_the_autocast_dtype(device_type, precision, dtype):
    assert autocast_dtype(torch.device(device_type), precision) == dtype


def test_bf16_autocast_on_the_cpu_keeps_fp32_master_weights_and_gradients():
    torch.manual_seed(0)
    lin = torch.nn.Linear(16, 8)
    x = torch.randn(4, 16)
    with autocast(torch.device("cpu"), "bf16"):
        y = lin(x)
    assert y.dtype == torch.bfloat16
    y.float().sum().backward()
    assert lin.weight.dtype == torch.float32 and lin.weight.grad.dtype == torch.float32
