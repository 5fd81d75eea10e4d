"""The official GLUE dev metrics, as pure functions of predictions and labels (numpy arrays).

Conventions: a correlation that is undefined because one side is constant (a model that
predicts a single class or value) is reported as 0.0, as scikit-learn does for Matthews'
correlation; F1 is for the positive class 1 and is 0.0 when there are no true positives.
"""
import numpy as np

from spd.tasks import Task


def accuracy(preds: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(np.asarray(preds) == np.asarray(labels)))


def _confusion(preds, labels) -> tuple[int, int, int, int]:
    preds, labels = np.asarray(preds) == 1, np.asarray(labels) == 1
    tp = int(np.sum(preds & labels))
    tn = int(np.sum(~preds & ~labels))
    fp = int(np.sum(preds & ~labels))
    fn = int(np.sum(~preds & labels))
    return tp, tn, fp, fn


def f1(preds: np.ndarray, labels: np.ndarray) -> float:
    """F1 of the positive class (label 1), as GLUE reports it for MRPC and QQP."""
    tp, _, fp, fn = _confusion(preds, labels)
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def matthews(preds: np.ndarray, labels: np.ndarray) -> float:
    """Matthews correlation coefficient of binary predictions (CoLA)."""
    tp, tn, fp, fn = _confusion(preds, labels)
    denom = float(tp + fp) * (tp + fn) * (tn + fp) * (tn + fn)
    return float((tp * tn - fp * fn) / np.sqrt(denom)) if denom else 0.0


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    # Constant input: test by equality, since centring a constant leaves round-off, not zeros.
    if np.all(x == x[0]) or np.all(y == y[0]):
        return 0.0
    dx, dy = x - x.mean(), y - y.mean()
    return float(np.sum(dx * dy) / np.sqrt(np.sum(dx * dx) * np.sum(dy * dy)))


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n, ties given the mean of the ranks they span."""
    x = np.asarray(x, dtype=np.float64)
    order = np.argsort(x, kind="stable")
    sorted_x = x[order]
    # Start index of each run of equal values, and each element's run.
    starts = np.flatnonzero(np.r_[True, sorted_x[1:] != sorted_x[:-1]])
    run = np.cumsum(np.r_[True, sorted_x[1:] != sorted_x[:-1]]) - 1
    ends = np.r_[starts[1:], len(x)]
    mean_rank = (starts + ends - 1) / 2 + 1
    ranks = np.empty(len(x))
    ranks[order] = mean_rank[run]
    return ranks


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    return pearson(_average_ranks(x), _average_ranks(y))


_METRICS = {"accuracy": accuracy, "f1": f1, "matthews": matthews,
            "pearson": pearson, "spearman": spearman}


def compute_metrics(task: Task, preds: np.ndarray, labels: np.ndarray, suffix: str = "") -> dict:
    """All of a task's GLUE metrics on one dev split, named `<metric><suffix>`.

    Args:
        task: the task, which names its metrics.
        preds: class ids (classification) or scores (regression).
        labels: gold labels of the same length.
        suffix: appended to each name, e.g. "_m" for MNLI matched.
    """
    if len(preds) != len(labels):
        raise ValueError(f"{len(preds)} predictions for {len(labels)} labels")
    return {f"{name}{suffix}": _METRICS[name](preds, labels) for name in task.metrics}


def majority_baseline(task: Task, train_labels, dev_labels, suffix: str = "") -> dict:
    """Dev metrics of always predicting the most frequent train label (the train mean for
    regression, whose correlations are then 0 by the convention above)."""
    train_labels, dev_labels = np.asarray(train_labels), np.asarray(dev_labels)
    if task.is_regression:
        constant = float(train_labels.mean())
    else:
        values, counts = np.unique(train_labels, return_counts=True)
        constant = values[np.argmax(counts)]  # ties: the lower label
    return compute_metrics(task, np.full(len(dev_labels), constant), dev_labels, suffix)
