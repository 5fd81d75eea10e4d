"""Distillation loss terms against written-out references."""
import math

import pytest
import torch
from hypothesis import given, strategies as st

from spd import losses


def _states(seed, n_layers=3, shape=(2, 5, 4)):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=g, dtype=torch.float64) for _ in range(n_layers)]


@given(st.integers(0, 10 ** 6), st.integers(0, 10 ** 6))
def test_hidden_and_attention_mse_match_the_reference(seed_s, seed_t):
    s, t = _states(seed_s), _states(seed_t)
    ref = sum(((a - b) ** 2).sum() / a.numel() for a, b in zip(s, t))
    # Tolerance: float64 sums over 40 elements per layer.
    torch.testing.assert_close(losses.hidden_mse(s, t), ref, rtol=1e-12, atol=1e-12)
    probs_s = [x.softmax(-1) for x in s]
    probs_t = [x.softmax(-1) for x in t]
    ref = sum(((a - b) ** 2).mean() for a, b in zip(probs_s, probs_t))
    torch.testing.assert_close(losses.attention_mse(probs_s, probs_t), ref, rtol=1e-12, atol=1e-12)
    assert losses.hidden_mse(s, t) >= 0 and losses.hidden_mse(s, s) == 0
    assert losses.attention_mse(probs_s, probs_s) == 0


@given(st.integers(0, 10 ** 6), st.floats(0.25, 8))
def test_soft_cross_entropy_matches_the_formula(seed, tau):
    g = torch.Generator().manual_seed(seed)
    z_s, z_t = torch.randn(4, 3, generator=g, dtype=torch.float64), torch.randn(4, 3, generator=g,
                                                                                 dtype=torch.float64)
    ref = 0.0
    for i in range(4):  # -sum_c p_T(c) log q_S(c), both at temperature tau, averaged over rows
        p = [math.exp(v / tau) for v in z_t[i].tolist()]
        q = [math.exp(v / tau) for v in z_s[i].tolist()]
        ref += -sum(pc / sum(p) * math.log(qc / sum(q)) for pc, qc in zip(p, q)) / 4
    assert losses.soft_cross_entropy(z_s, z_t, tau).item() == pytest.approx(ref, rel=1e-10)


@given(st.integers(0, 10 ** 6), st.floats(0.25, 8))
def test_soft_cross_entropy_is_minimal_at_the_teacher(seed, tau):
    z = torch.randn(4, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    z_s = z.clone().requires_grad_(True)
    value = losses.soft_cross_entropy(z_s, z, tau)
    value.backward()
    # At z_S = z_T the gradient (q_S - p_T) / tau vanishes and the value is the teacher's entropy.
    torch.testing.assert_close(z_s.grad, torch.zeros_like(z), rtol=0, atol=1e-12)
    p = (z / tau).softmax(-1)
    entropy = -(p * p.log()).sum(-1).mean()
    torch.testing.assert_close(value.detach(), entropy, rtol=1e-12, atol=1e-12)
    assert value >= 0


def test_prediction_loss_for_regression_is_mse_on_the_target():
    z_s = torch.tensor([[1.0], [3.0]])
    gold = torch.tensor([2.0, 2.0])
    assert losses.prediction_loss(z_s, z_s, gold, tau=1.0, regression=True).item() == 1.0


def _padded(states, lengths, width, fill):
    """`states` ([B, n_max, ...] per layer, real up to each row's length) padded to `width`
    with `fill` beyond each row's length; the attention mask of the result."""
    out = []
    for x in states:
        y = torch.full((x.shape[0], width, *x.shape[2:]), fill, dtype=x.dtype)
        for i, n in enumerate(lengths):
            y[i, :n] = x[i, :n]
        out.append(y)
    mask = torch.zeros(len(lengths), width, dtype=torch.long)
    for i, n in enumerate(lengths):
        mask[i, :n] = 1
    return out, mask


@given(st.integers(0, 10 ** 6), st.lists(st.integers(1, 5), min_size=2, max_size=2),
       st.integers(0, 3), st.floats(-9, 9))
def test_masked_hidden_mse_is_the_mean_over_real_tokens_whatever_the_padding(seed, lengths, extra,
                                                                           fill):
    s, t = _states(seed, shape=(2, 5, 4)), _states(seed + 1, shape=(2, 5, 4))
    ref = sum(sum(((a[i, :n] - b[i, :n]) ** 2).sum() for i, n in enumerate(lengths))
              / (sum(lengths) * 4) for a, b in zip(s, t))
    width = max(lengths) + extra
    (ps, mask), (pt, _) = _padded(s, lengths, width, fill), _padded(t, lengths, width, -fill)
    torch.testing.assert_close(losses.hidden_mse(ps, pt, mask), ref, rtol=1e-12, atol=1e-12)


@given(st.integers(0, 10 ** 6), st.lists(st.integers(1, 5), min_size=2, max_size=2),
       st.integers(0, 3))
def test_masked_attention_mse_is_the_mean_over_real_query_and_key_pairs(seed, lengths, extra):
    heads = 3
    g = torch.Generator().manual_seed(seed)
    width = max(lengths) + extra

    def probs():  # [B, heads, width, width], each real query row a distribution over real keys
        x = torch.randn(2, heads, width, width, generator=g, dtype=torch.float64)
        for i, n in enumerate(lengths):
            x[i, :, :, n:] = -math.inf
        return [x.softmax(-1)]

    s, t = probs(), probs()
    mask = (torch.arange(width)[None] < torch.tensor(lengths)[:, None]).long()
    ref = sum(((s[0][i, :, :n, :n] - t[0][i, :, :n, :n]) ** 2).sum()
              for i, n in enumerate(lengths)) / (heads * sum(n * n for n in lengths))
    torch.testing.assert_close(losses.attention_mse(s, t, mask), ref, rtol=1e-12, atol=1e-12)


def test_without_a_mask_the_terms_are_the_plain_means():
    s, t = _states(1), _states(2)
    mask = torch.ones(2, 5, dtype=torch.long)
    torch.testing.assert_close(losses.hidden_mse(s, t, mask), losses.hidden_mse(s, t),
                               rtol=1e-12, atol=1e-12)
