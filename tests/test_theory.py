"""theory/: statements A to E on toy stacks with certified constants (float64, Hypothesis)."""
import math

import pytest
import torch
from hypothesis import example, given
from hypothesis import strategies as st

from spd.masks import topk_mask
from theory import bounds, lipschitz, toy


@st.composite
def instances(draw, max_depth: int = 5):
    """A toy teacher stack, a perturbed or pruned student, an input, and certified constants."""
    depth = draw(st.integers(1, max_depth))
    width, hidden = draw(st.integers(1, 6)), draw(st.integers(1, 8))
    act = draw(st.sampled_from(sorted(lipschitz.ACTIVATIONS)))
    seed = draw(st.integers(0, 2 ** 31 - 1))
    teacher = toy.random_stack(depth, width, hidden, act, seed, scale=draw(st.floats(0.1, 2.0)))
    if draw(st.booleans()):
        student = toy.perturbed(teacher, draw(st.floats(1e-4, 1.0)), seed + 1)
    else:
        student = toy.pruned(teacher, draw(st.floats(0.0, 0.99)), topk_mask)
    tokens = draw(st.integers(1, 4))
    x = torch.randn(tokens, width, generator=torch.Generator().manual_seed(seed + 2),
                    dtype=torch.float64)
    K = [b.lipschitz() for b in teacher]
    Kp = [b.lipschitz() for b in student]
    return teacher, student, x, K, Kp


def _fixed_instance(depth: int = 3):
    teacher = toy.random_stack(depth, 2, 3, "tanh", 7)
    student = toy.perturbed(teacher, 0.3, 1)
    return (teacher, student, torch.ones(2, 2, dtype=torch.float64),
            [b.lipschitz() for b in teacher], [b.lipschitz() for b in student])


def test_gelu_constant_is_the_maximum_of_its_derivative():
    xs = torch.linspace(-10, 10, 200001, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(torch.nn.functional.gelu(xs).sum(), xs)
    assert lipschitz.GELU == pytest.approx(float(grad.abs().max()), abs=1e-9)
    assert lipschitz.GELU == pytest.approx(1.1289, abs=1e-4)


@given(instances())
def test_certified_block_constant_bounds_every_difference_quotient(inst):
    teacher, _, x, K, _ = inst
    y = x + 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0), dtype=x.dtype)
    for block, k in zip(teacher, K):
        assert bounds.norm(block(x) - block(y)) <= k * bounds.norm(x - y) * (1 + 1e-12)


@given(instances())
def test_a_telescoping_identity_holds_to_rounding(inst):
    teacher, student, x, _, _ = inst
    check = bounds.telescoping(teacher, student, x)
    assert check.measured <= 1e-12 * max(1.0, check.bound, bounds.norm(x))


@given(instances())
@example(_fixed_instance(depth=1))  # a single layer
def test_b1_b2_c_and_d_for_a_fixed_set_hold(inst):
    teacher, student, x, K, Kp = inst
    checks = [bounds.student_inputs(teacher, student, x, K),
              bounds.teacher_inputs(teacher, student, x, Kp)]
    checks += [bounds.one_grafted(teacher, student, x, K, l) for l in range(len(teacher))]
    checks += [bounds.fixed_set(teacher, student, x, K, {l for l in range(len(teacher)) if l % 2})]
    for c in checks:
        assert c.holds(), (c, c.slack)
        assert c.slack >= 1 - 1e-9 or c.measured == 0


@given(instances(max_depth=4), st.floats(0, 1))
@example(_fixed_instance(), 0.0)
@example(_fixed_instance(), 1.0)
@example(_fixed_instance(depth=1), 0.5)  # a single layer
def test_d_expectation_exact_polynomial_and_bound(inst, p):
    teacher, student, x, K, _ = inst
    en = bounds.enumerate_sets(teacher, student, x, K)
    L = len(teacher)
    # Brute force: at p = 1/2 every set weighs 2^-L, so E is the plain average over all sets.
    assert en.expected_error(0.5) == pytest.approx(sum(en.errors) / 2 ** L, rel=1e-12, abs=1e-15)
    poly = sum(c * p ** k * (1 - p) ** (L - k) for k, c in enumerate(en.polynomial()))
    assert en.expected_error(p) == pytest.approx(poly, rel=1e-12, abs=1e-15)
    check = en.check(p)
    assert check.holds(), (check, check.slack)
    assert en.bound(p) <= en.linear_bound(p) * (1 + 1e-12) + 1e-15
    # The linear bound is linear in p; at p = 1 the D bound is B1's.
    assert en.linear_bound(p) == pytest.approx(p * en.linear_bound(1.0), rel=1e-12, abs=1e-15)
    assert en.bound(1.0) == pytest.approx(bounds.student_inputs(teacher, student, x, K).bound,
                                          rel=1e-12, abs=1e-15)


@given(instances(max_depth=4))
def test_enumeration_equals_every_set_computed_on_its_own(inst):
    """The enumeration shares prefixes between sets; each set's figures must still be exactly
    what running that hybrid alone gives."""
    teacher, student, x, K, _ = inst
    en = bounds.enumerate_sets(teacher, student, x, K)
    t_out = bounds.states(teacher, x)[-1]
    L = len(teacher)
    assert sorted(map(sorted, en.sets)) == sorted(
        sorted(R) for R in ({l for l in range(L) if bits >> l & 1} for bits in range(2 ** L)))
    for R, error, modules in zip(en.sets, en.errors, en.module_errors, strict=True):
        h = bounds.hybrid_states(teacher, student, set(R), x)
        assert error == bounds.norm(h[-1] - t_out)
        assert list(modules) == [bounds.module_error(teacher[l], student[l], h[l])
                                 for l in range(L)]


def test_d_monte_carlo_interval_contains_the_exact_value_at_12_layers():
    teacher = toy.random_stack(12, 3, 4, "gelu", 3)
    student = toy.perturbed(teacher, 0.2, 4)
    x = torch.randn(2, 3, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    en = bounds.enumerate_sets(teacher, student, x, [b.lipschitz() for b in teacher])
    assert len(en.sets) == 4096
    for p in (0.2, 0.5, 0.9):
        mc = bounds.monte_carlo(teacher, student, x, p, samples=400, seed=int(p * 10))
        assert mc.low <= en.expected_error(p) <= mc.high, (mc, en.expected_error(p))
    with pytest.raises(ValueError, match="at most 12"):
        bounds.enumerate_sets(teacher * 2, student * 2, x, [1.0] * 24)


@given(st.lists(st.floats(0.1, 3.0), min_size=1, max_size=6), st.data())
def test_b1_and_c_are_tight_on_aligned_scalar_chains(a, data):
    """T_l = a_l x, S_l = b_l x with b_l >= a_l > 0 and x > 0: every inequality in the proofs of
    B1 and C is an equality, so a bug that inflates the bound cannot hide."""
    b = [ai + data.draw(st.floats(0.0, 2.0)) for ai in a]
    teacher, student = [toy.Scale(v) for v in a], [toy.Scale(v) for v in b]
    K = [abs(v) for v in a]
    x = torch.tensor([[1.5]], dtype=torch.float64)
    b1 = bounds.student_inputs(teacher, student, x, K)
    assert b1.measured == pytest.approx(b1.bound, rel=1e-12)
    for l in range(len(a)):
        c = bounds.one_grafted(teacher, student, x, K, l)
        assert c.measured == pytest.approx(c.bound, rel=1e-12)


@given(st.integers(0, 2 ** 31 - 1), st.integers(1, 6), st.integers(1, 6), st.integers(1, 4),
       st.floats(0, 0.99))
def test_e_pruning_error_bounds_hold(seed, rows, cols, tokens, s):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(rows, cols, generator=g, dtype=torch.float64)
    x = torch.randn(cols, tokens, generator=g, dtype=torch.float64)
    spectral, frobenius = bounds.pruning_error(w, topk_mask(w.abs(), s).double(), x)
    assert spectral.holds() and frobenius.holds()


@given(st.integers(0, 2 ** 31 - 1), st.integers(1, 8), st.booleans(), st.floats(0, 1))
@example(0, 1, False, 1.0)  # one element, kept
@example(0, 1, False, 0.0)  # one element, pruned
def test_e_magnitude_top_k_is_the_best_mask_of_its_count(seed, n, ties, frac):
    w = torch.randn(n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    if ties:
        w = torch.round(w * 2) / 2
    kept = round(frac * n)
    mask = topk_mask(w.abs(), 1 - kept / n)
    assert int(mask.sum()) == kept
    assert bounds.norm(w - mask * w) == pytest.approx(bounds.best_mask_error(w, kept),
                                                      rel=1e-12, abs=1e-15)


def test_checks_report_slack_not_only_a_boolean():
    c = bounds.Check("B1", 2.0, 3.0)
    assert c.slack == 1.5 and c.holds()
    assert bounds.Check("B1", 0.0, 1.0).slack == math.inf
    assert not bounds.Check("B1", 1.0, 0.5).holds()
