"""The tables' statistics against independent references: a simulated paired t-test for the
detectable difference, a hand-worked Holm example, and Holm's defining properties."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps

from ablations import stats


@pytest.mark.parametrize("n", [3, 5, 10])
def test_the_detectable_difference_is_rejected_80_percent_of_the_time_in_simulation(n):
    sd = 0.02
    delta = stats.detectable_difference(sd, n)
    rng = np.random.default_rng(n)
    diffs = rng.normal(delta, sd, size=(40_000, n))
    p = sps.ttest_1samp(diffs, 0.0, axis=1).pvalue
    assert np.mean(p < 0.05) == pytest.approx(0.80, abs=0.01)


def test_the_detectable_difference_matches_the_textbook_power_figure():
    # A paired t-test with 10 pairs has power 0.803 at effect size d = 1 (Cohen 1988, table
    # 2.3.5; G*Power gives 0.8031): the detectable d at 80% is a little under 1.
    assert 0.98 < stats.detectable_difference(1.0, 10) < 1.0
    # it scales with the sd, and shrinks as seeds are added
    assert stats.detectable_difference(0.5, 10) == pytest.approx(
        0.5 * stats.detectable_difference(1.0, 10))
    assert stats.detectable_difference(1.0, 5) > stats.detectable_difference(1.0, 10)


def test_the_detectable_difference_is_undefined_below_two_pairs_or_without_spread():
    assert stats.detectable_difference(0.01, 1) is None
    assert stats.detectable_difference(None, 3) is None
    assert stats.detectable_difference(0.0, 3) is None  # the same difference on every seed


def test_holm_matches_a_hand_worked_example():
    # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> max(0.06, 0.04)
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert stats.holm([0.5, None, 0.01]) == pytest.approx([0.5, None, 0.02])  # family of 2
    assert stats.holm([0.3, 0.8]) == [0.6, 0.8]  # monotone: 0.8 * 1 stays above 0.3 * 2
    assert stats.holm([0.9, 0.8]) == [1.0, 1.0]  # capped at 1
    assert stats.holm([]) == []


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.none(), st.floats(0, 1)), max_size=12))
def test_holm_is_at_least_raw_at_most_one_and_keeps_the_order(ps):
    adj = stats.holm(ps)
    assert [a is None for a in adj] == [p is None for p in ps]
    pairs = [(p, a) for p, a in zip(ps, adj) if p is not None]
    for p, a in pairs:
        assert p <= a <= 1.0
        assert a <= min(1.0, p * len(pairs)) + 1e-12  # never beyond Bonferroni
    for p, a in pairs:
        for q, b in pairs:
            if p < q:
                assert a <= b


def test_paired_p_and_sd_use_the_seeds_both_rows_have():
    assert stats.paired_p({0: 0.3}, {0: 0.1}) is None
    a, b = {0: 0.3, 1: 0.2, 2: 0.5}, {0: 0.1, 1: 0.15, 2: 0.2, 3: 0.9}
    assert stats.paired_p(a, b) == pytest.approx(
        sps.ttest_rel([0.3, 0.2, 0.5], [0.1, 0.15, 0.2]).pvalue)
    assert stats.paired_sd(a, b) == pytest.approx(np.std([0.2, 0.05, 0.3], ddof=1))
    assert stats.paired_sd({0: 1.0}, {0: 0.0}) is None


@pytest.mark.parametrize("values, baseline, expect", [
    ({0: 0.81, 1: 0.812, 2: 0.815}, 0.812, True),   # the baseline inside the 95% CI
    ({0: 0.70, 1: 0.71}, 0.812, True),              # below the baseline
    ({0: 0.84, 1: 0.845, 2: 0.842}, 0.812, False),  # clearly above
    ({0: 0.84}, 0.812, False),                      # one seed, above: no interval to judge
    ({0: 0.80}, 0.812, True),                       # one seed, at or below
    ({0: 0.84, 1: 0.845}, None, False),             # no baseline known
])
def test_a_cell_is_marked_at_the_baseline_when_at_or_below_it_or_within_its_interval(
        values, baseline, expect):
    assert stats.at_baseline(values, baseline) is expect
