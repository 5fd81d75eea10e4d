"""The paper's claims answered yes, no or unclear from the grids' rows (RESULTS.md).

Each question compares two rows of one grid on one task, paired by seed: the mean paired
difference, the two-sided paired t-test, its Holm correction across every question asked (the
family is the claims' distinct comparisons: one asked twice on the same runs counts once), and
the smallest difference the seeds could detect at 80% power.
"yes": the difference goes the way the claim says and the Holm-corrected p is below 0.05; "no":
it goes the other way, as significantly; "unclear": neither, and the detectable difference says
what the seeds could have seen; "not run yet": no seed has both rows.
"""
from dataclasses import dataclass

from ablations import stats
from ablations.tables import mean_ci

ALPHA = 0.05


@dataclass(frozen=True)
class Question:
    text: str  # the claim, e.g. "SPD beats GMP at 0.9"
    grid: str
    task: str
    quantity: str  # dev, train or gap (ablations.tables)
    row: str  # the label the claim is about
    other: str  # the label it is compared with
    direction: int  # +1: the claim says row > other; -1: row < other


def questions(tasks: list[str]) -> list[Question]:
    """The claims of the paper, per task: (1) SPD beats each competitor at 0.9; (2) without
    distillation the train - dev gap grows with sparsity; (3) SPD shrinks it; (4) with a
    better dev metric."""
    out = []
    for task in tasks:
        out += [Question(f"SPD beats {name} at 0.9", "components", task, "dev", "SPD", label, +1)
                for name, label in (("GMP", "no distillation (GMP, hard labels)"),
                                    ("magnitude + distillation without replacing",
                                     "no progressive replacing (p = 1)"),
                                    ("movement + logit distillation",
                                     "movement + logit distillation"))]
        out += [Question("without distillation the train - dev gap grows from 0.5 to 0.9",
                         "overfitting", task, "gap", "GMP s0.9", "GMP s0.5", +1),
                Question("SPD's train - dev gap at 0.9 is smaller than GMP's", "overfitting",
                         task, "gap", "SPD s0.9", "GMP s0.9", -1),
                Question("SPD's dev metric at 0.9 is better than GMP's", "overfitting", task,
                         "dev", "SPD s0.9", "GMP s0.9", +1)]
    return out


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs)


def answer(qs: list[Question], rows_of: dict, collapsed=frozenset()) -> list[dict]:
    """rows_of: {(grid, task, quantity, label): {seed: value}}; collapsed: the (grid, task,
    label) whose dev metric is at the constant prediction (the tables' †). One answer per
    question: the verdict and the figures it rests on, Holm-corrected across `qs`."""
    found = []
    for q in qs:
        a = rows_of.get((q.grid, q.task, q.quantity, q.row), {})
        b = rows_of.get((q.grid, q.task, q.quantity, q.other), {})
        seeds = sorted(set(a) & set(b))
        diff = _mean([a[s] - b[s] for s in seeds]) if seeds else None
        found.append({"question": q, "n": len(seeds), "diff": diff, "p": stats.paired_p(a, b),
                      "detectable": stats.detectable_difference(stats.paired_sd(a, b),
                                                                len(seeds)),
                      "row": a, "other": b,
                      "collapsed": {k for k in ("row", "other")
                                    if (q.grid, q.task, getattr(q, k)) in collapsed}})
    # The family is the distinct comparisons: a claim asked twice on the same runs (SPD against
    # GMP at 0.9 in components and in overfitting, which share their cells) is one test.
    keys = [(f["question"].task, f["question"].quantity, tuple(sorted(f["row"].items())),
             tuple(sorted(f["other"].items()))) for f in found]
    distinct = {k: f["p"] for k, f in zip(keys, found) if f["p"] is not None}
    adjusted = dict(zip(distinct, stats.holm(list(distinct.values()))))
    for f, key in zip(found, keys):
        f["p_holm"] = holm = adjusted.get(key)
        q = f["question"]
        if holm is not None and holm < ALPHA:
            f["verdict"] = "yes" if f["diff"] * q.direction > 0 else "no"
        else:
            f["verdict"] = "unclear" if f["n"] else "not run yet"
    return found


def _ci(values: dict) -> str:
    return f"{mean_ci(values)} (n {len(values)})" if values else "no run"


def _mark(found: dict, which: str) -> str:
    return " †" if which in found["collapsed"] else ""


def _g(x: float | None, fmt: str) -> str:
    return "-" if x is None else format(x, fmt)


def to_markdown(found: list[dict]) -> list[str]:
    lines = ["| task | claim | answer | row: mean [95% CI] | compared with | mean paired "
             "difference | p | p (Holm, all claims) | detectable difference (80% power) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for f in found:
        q = f["question"]
        lines.append(f"| {q.task} | {q.text} ({q.quantity}; {q.grid}) | **{f['verdict']}** | "
                     f"{q.row}: {_ci(f['row'])}{_mark(f, 'row')} | "
                     f"{q.other}: {_ci(f['other'])}{_mark(f, 'other')} | "
                     f"{_g(f['diff'], '+.4f')} (n {f['n']}) | {_g(f['p'], '.3g')} | "
                     f"{_g(f['p_holm'], '.3g')} | {_g(f['detectable'], '.4f')} |")
    return lines
