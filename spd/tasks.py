"""The nine GLUE tasks as small declarative entries (fields, labels, splits, metrics)."""
from dataclasses import dataclass

from spd.errors import bad_value


@dataclass(frozen=True)
class Task:
    """One GLUE task.

    Attributes:
        name: the GLUE config name (`nyu-mll/glue` on the hub, the folder name locally).
        text_fields: one field (single sentence) or two (sentence pair, with token type ids).
        label_names: class names in label order; empty for regression (STS-B).
        metrics: dev metric names, in the order GLUE reports them.
        main_metric: the metric that picks the best-during-training evaluation.
        dev_splits: dev split name -> suffix added to metric names (MNLI has two dev sets).
        sizes: official row count of each split (train and dev).
        symmetric: a pair task whose label does not depend on the order of its two sentences
            (paraphrase, similarity, duplicate questions).
    """

    name: str
    text_fields: tuple[str, ...]
    label_names: tuple[str, ...]
    metrics: tuple[str, ...]
    main_metric: str
    dev_splits: dict
    sizes: dict
    symmetric: bool = False

    @property
    def is_regression(self) -> bool:
        return not self.label_names

    @property
    def num_labels(self) -> int:
        """Outputs of the classifier head: the number of classes, or 1 for regression."""
        return len(self.label_names) or 1

    @property
    def is_pair(self) -> bool:
        return len(self.text_fields) == 2


# STS-B, the one regression task, scores similarity from 0 to 5.
REGRESSION_RANGE = (0.0, 5.0)

_DEV = {"validation": ""}
_ACC = ("accuracy",)

TASKS: dict[str, Task] = {
    t.name: t
    for t in [
        Task("cola", ("sentence",), ("unacceptable", "acceptable"), ("matthews",), "matthews",
             _DEV, {"train": 8551, "validation": 1043}),
        Task("sst2", ("sentence",), ("negative", "positive"), _ACC, "accuracy",
             _DEV, {"train": 67349, "validation": 872}),
        Task("mrpc", ("sentence1", "sentence2"), ("not_equivalent", "equivalent"),
             ("accuracy", "f1"), "f1", _DEV, {"train": 3668, "validation": 408}, symmetric=True),
        Task("stsb", ("sentence1", "sentence2"), (), ("pearson", "spearman"), "pearson",
             _DEV, {"train": 5749, "validation": 1500}, symmetric=True),
        Task("qqp", ("question1", "question2"), ("not_duplicate", "duplicate"),
             ("accuracy", "f1"), "f1", _DEV, {"train": 363846, "validation": 40430},
             symmetric=True),
        Task("mnli", ("premise", "hypothesis"), ("entailment", "neutral", "contradiction"),
             _ACC, "accuracy_m",
             {"validation_matched": "_m", "validation_mismatched": "_mm"},
             {"train": 392702, "validation_matched": 9815, "validation_mismatched": 9832}),
        Task("qnli", ("question", "sentence"), ("entailment", "not_entailment"), _ACC, "accuracy",
             _DEV, {"train": 104743, "validation": 5463}),
        Task("rte", ("sentence1", "sentence2"), ("entailment", "not_entailment"), _ACC, "accuracy",
             _DEV, {"train": 2490, "validation": 277}),
        Task("wnli", ("sentence1", "sentence2"), ("not_entailment", "entailment"), _ACC, "accuracy",
             _DEV, {"train": 635, "validation": 71}),
    ]
}


def get_task(name: str) -> Task:
    """Look a task up by name, with spd's one-line error for an unknown one."""
    try:
        return TASKS[name]
    except KeyError:
        raise bad_value("unknown task", name, ", ".join(TASKS)) from None
