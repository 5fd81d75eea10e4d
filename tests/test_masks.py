"""Mask properties: exact counts, magnitude order, ties, nesting, monotone updates, scopes."""
import math

import torch
from hypothesis import example, given, strategies as st

from spd.masks import global_masks, kept_count, topk_mask, update_mask
from tests.strategies import sparsities, weights


def _mask_ok(mask, w):
    return mask.dtype == torch.bool and mask.shape == w.shape and mask.device == w.device


@given(weights(), sparsities)
@example(torch.tensor([3.0]), 0.0)
@example(torch.tensor([3.0]), 1 - 1e-9)
@example(torch.ones(4, 4), 0.5)
def test_exact_count_and_magnitude_order(w, s):
    mask = topk_mask(w.abs(), s)
    assert _mask_ok(mask, w)
    assert int(mask.sum()) == kept_count(w.numel(), s) == math.floor(w.numel() * (1 - s) + 0.5)
    kept, pruned = w.abs()[mask], w.abs()[~mask]
    if kept.numel() and pruned.numel():
        assert kept.min() >= pruned.max()


@given(weights(), sparsities)
def test_ties_break_towards_the_lower_index(w, s):
    mask = topk_mask(w.abs(), s).flatten()
    a = w.abs().flatten()
    kept_idx, pruned_idx = mask.nonzero().flatten(), (~mask).nonzero().flatten()
    for i in pruned_idx.tolist():
        ties = kept_idx[a[kept_idx] == a[i]]
        assert bool((ties < i).all())


@given(weights(), sparsities, sparsities)
def test_nested_and_idempotent(w, s1, s2):
    lo, hi = sorted((s1, s2))
    m_lo, m_hi = topk_mask(w.abs(), lo), topk_mask(w.abs(), hi)
    assert torch.equal(topk_mask(w.abs(), hi), m_hi)
    assert bool((m_hi <= m_lo).all())


@given(weights(), sparsities, st.floats(1e-3, 1e3))
def test_scale_invariant_and_permutation_equivariant(w, s, c):
    w = w.double()
    assert torch.equal(topk_mask(w.abs() * c, s), topk_mask(w.abs(), s))
    flat = w.abs().flatten()
    # Equivariance holds where there are no ties (ties break by index, which a permutation moves).
    if flat.unique().numel() == flat.numel():
        perm = torch.randperm(flat.numel(), generator=torch.Generator().manual_seed(0))
        assert torch.equal(topk_mask(flat[perm], s), topk_mask(flat, s)[perm])


@given(weights(), st.integers(0, 2 ** 31 - 1), sparsities, sparsities)
def test_update_is_monotone(w, seed, s1, s2):
    s_lo, s_hi = sorted((s1, s2))
    old = topk_mask(w.abs(), s_lo)
    # The weights move (an optimizer step): pruned ones may now be large, yet stay pruned.
    moved = w.double() + torch.randn(w.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    new = update_mask(old, moved.abs(), s_hi)
    assert bool((new <= old).all())  # a pruned weight never comes back
    assert int(new.sum()) == min(kept_count(w.numel(), s_hi), int(old.sum()))


@given(weights(), sparsities)
def test_global_scope_over_one_matrix_equals_per_matrix(w, s):
    assert torch.equal(global_masks({"w": w.abs()}, s)["w"], topk_mask(w.abs(), s))


@given(st.lists(weights(max_side=6), min_size=1, max_size=4), sparsities)
def test_global_scope_keeps_exactly_the_overall_count(ws, s):
    scores = {str(i): w.abs().double() for i, w in enumerate(ws)}
    masks = global_masks(scores, s)
    n = sum(w.numel() for w in ws)
    assert sum(int(m.sum()) for m in masks.values()) == kept_count(n, s)
    kept = torch.cat([scores[k][m] for k, m in masks.items()])
    pruned = torch.cat([scores[k][~m] for k, m in masks.items()])
    if kept.numel() and pruned.numel():
        assert kept.min() >= pruned.max()


# N:M semi-structured masks: n kept in every group of m consecutive weights of a row.
from spd.masks import nm_mask, nm_pruned_per_group, parse_pattern  # noqa: E402


@st.composite
def nm_cases(draw):
    m = draw(st.sampled_from([2, 4, 8]))
    n = draw(st.integers(1, m - 1))
    rows, groups = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    seed = draw(st.integers(0, 2 ** 31 - 1))
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(rows, groups * m, generator=g)
    if draw(st.booleans()):  # ties
        w = w.round()
    return w, n, m


@given(nm_cases())
def test_nm_mask_keeps_exactly_n_top_scores_in_every_group(case):
    w, n, m = case
    mask = nm_mask(w.abs(), n, m)
    assert _mask_ok(mask, w)
    groups, scores = mask.view(-1, m), w.abs().view(-1, m)
    assert (groups.sum(1) == n).all()  # exactly m - n zeros in every group of m
    for g, sc in zip(groups, scores):
        if n < m:
            assert sc[g].min() >= sc[~g].max()
        # ties towards the lower index, as for unstructured masks
        assert torch.equal(g, topk_mask(sc, 1 - n / m))
    assert torch.equal(mask, nm_mask(w.abs(), n, m))  # deterministic


@given(nm_cases(), st.data())
def test_gradual_nm_masks_are_monotone_and_end_at_n_of_m(case, data):
    w, n, m = case
    mask = torch.ones_like(w, dtype=torch.bool)
    steps = sorted(data.draw(st.lists(st.floats(0, 1 - n / m), max_size=5)) + [1 - n / m])
    for s in steps:
        pruned = nm_pruned_per_group(s, n, m)
        new = nm_mask(w.abs(), m - pruned, m, old=mask)
        assert not (new & ~mask).any()  # a pruned weight never comes back
        assert (new.view(-1, m).sum(1) == m - pruned).all()
        mask = new
    assert (mask.view(-1, m).sum(1) == n).all()


def test_nm_pruned_per_group_follows_the_sparsity_in_whole_weights():
    assert [nm_pruned_per_group(s, 2, 4) for s in (0, 0.2, 0.25, 0.3, 0.49, 0.5)] == [0, 0, 1, 1, 1, 2]
    assert nm_pruned_per_group(0.5, 2, 4) == 2 and nm_pruned_per_group(0.75, 1, 4) == 3


def test_patterns_parse_or_are_refused_cleanly():
    assert parse_pattern("unstructured") is None and parse_pattern("2:4") == (2, 4)
    for bad in ("4:2", "0:4", "2:2", "2-4", "a:b", ""):
        try:
            parse_pattern(bad)
        except ValueError as e:
            assert repr(bad) in str(e) and "N:M" in str(e)
        else:
            raise AssertionError(bad)
