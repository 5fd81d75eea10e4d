"""GLUE metrics against independent references (scipy) and hand-computed cases."""
import numpy as np
import pytest
from hypothesis import given, strategies as st
from scipy import stats

from spd import metrics
from spd.tasks import TASKS

binary = st.lists(st.integers(0, 1), min_size=2, max_size=200)
scores = st.lists(st.floats(-5, 5, allow_nan=False, width=32), min_size=3, max_size=200)


@st.composite
def binary_pairs(draw):
    n = draw(st.integers(2, 200))
    return (np.array(draw(st.lists(st.integers(0, 1), min_size=n, max_size=n))),
            np.array(draw(st.lists(st.integers(0, 1), min_size=n, max_size=n))))


@st.composite
def score_pairs(draw):
    n = draw(st.integers(3, 200))
    # Few distinct values so that ties (which Spearman must average) are common.
    vals = st.one_of(st.integers(0, 5).map(float), st.floats(0, 5, allow_nan=False))
    return (np.array(draw(st.lists(vals, min_size=n, max_size=n))),
            np.array(draw(st.lists(vals, min_size=n, max_size=n))))


def test_hand_computed_binary_case():
    # tp=2, tn=1, fp=1, fn=1 (worked by hand): acc 3/5, F1 4/6, MCC (2-1)/sqrt(3*3*2*2) = 1/6.
    preds = np.array([1, 1, 1, 0, 0])
    labels = np.array([1, 1, 0, 1, 0])
    assert metrics.accuracy(preds, labels) == pytest.approx(0.6)
    assert metrics.f1(preds, labels) == pytest.approx(4 / 6)
    assert metrics.matthews(preds, labels) == pytest.approx(1 / 6)


def test_hand_computed_correlations():
    assert metrics.pearson([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)
    assert metrics.pearson([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    # Monotone but not linear: Spearman 1, Pearson below 1.
    assert metrics.spearman([1, 2, 3, 4], [1, 4, 9, 100]) == pytest.approx(1.0)
    assert metrics.pearson([1, 2, 3, 4], [1, 4, 9, 100]) < 0.99


def test_degenerate_inputs_follow_the_stated_conventions():
    constant = np.ones(6, dtype=int)
    labels = np.array([0, 1, 0, 1, 1, 0])
    assert metrics.matthews(constant, labels) == 0.0
    assert metrics.f1(np.zeros(6, dtype=int), labels) == 0.0
    assert metrics.pearson(np.full(6, 2.5), labels) == 0.0
    assert metrics.spearman(np.full(6, 2.5), labels) == 0.0
    # STS-B's train mean predicted for all 1500 dev pairs: centring such a constant leaves
    # round-off (a correlation of -5e-17 before the fix), still no correlation.
    assert metrics.pearson(np.full(1500, 2.7009990253653497), np.linspace(0, 5, 1500)) == 0.0


@given(binary_pairs())
def test_binary_metrics_match_scipy(pair):
    preds, labels = pair
    # Tolerance: float64 round-off of a few operations on at most 200 counts.
    assert metrics.accuracy(preds, labels) == pytest.approx(np.mean(preds == labels), abs=1e-12)
    tp = np.sum((preds == 1) & (labels == 1))
    if tp:
        precision, recall = tp / np.sum(preds == 1), tp / np.sum(labels == 1)
        assert metrics.f1(preds, labels) == pytest.approx(stats.hmean([precision, recall]), abs=1e-12)
    if preds.std() > 0 and labels.std() > 0:
        # For binary variables Matthews' coefficient is the phi coefficient: Pearson's r.
        ref = stats.pearsonr(preds, labels).statistic
        assert metrics.matthews(preds, labels) == pytest.approx(ref, abs=1e-9)


@given(score_pairs())
def test_correlations_match_scipy(pair):
    x, y = pair
    if np.ptp(x) > 1e-6 and np.ptp(y) > 1e-6:
        # Tolerance: both are float64; scipy centres and normalises in a different order.
        assert metrics.pearson(x, y) == pytest.approx(stats.pearsonr(x, y).statistic, abs=1e-9)
        assert metrics.spearman(x, y) == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-9)


@given(score_pairs())
def test_average_ranks_match_scipy(pair):
    x, _ = pair
    np.testing.assert_array_equal(metrics._average_ranks(x), stats.rankdata(x))


@pytest.mark.parametrize("name", sorted(TASKS))
def test_compute_metrics_names_every_task_metric(name):
    task = TASKS[name]
    rng = np.random.default_rng(0)
    labels = rng.random(50) * 5 if task.is_regression else rng.integers(0, task.num_labels, 50)
    for suffix in task.dev_splits.values():
        out = metrics.compute_metrics(task, labels, labels, suffix)
        assert set(out) == {m + suffix for m in task.metrics}
        # Perfect predictions score 1 on every GLUE metric.
        assert all(v == pytest.approx(1.0) for v in out.values())
    assert task.main_metric in {m + s for m in task.metrics for s in task.dev_splits.values()}


def test_majority_baseline_predicts_the_most_frequent_train_label():
    task = TASKS["mrpc"]
    out = metrics.majority_baseline(task, [1, 1, 0], [1, 0, 1, 1])
    assert out == {"accuracy": 0.75, "f1": pytest.approx(2 * 3 / (2 * 3 + 1))}
    assert metrics.majority_baseline(TASKS["stsb"], [1.0, 3.0], [0.5, 4.0]) == {
        "pearson": 0.0, "spearman": 0.0}
