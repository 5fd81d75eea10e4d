"""Ablation figures (seaborn; PNG and PDF in `ablations/figures/`), from saved records only.

`sparsity`: the dev metric and the train - dev gap against target sparsity per method, with
95% intervals over seeds.
`overfitting`: train-subset and dev metric over training per method (seed 0), and the final
train - dev gap against sparsity (dense fine-tuning at 0). `budget`: each recipe's dev metric
against its wall time. Every panel of a dev metric draws the dense teacher's and the constant
prediction's (majority class / train mean) beside the curves, so that a student at the
constant prediction never reads as a recovery. `ablations.tables` draws them.
"""
from pathlib import Path

from ablations.registry import Cell
from spd.tasks import get_task


def _save(fig, out: Path, name: str) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.png", out / f"{name}.pdf"]
    fig.savefig(paths[0], dpi=110, bbox_inches="tight")
    fig.savefig(paths[1], bbox_inches="tight", metadata={"CreationDate": None})
    return paths


def _setup():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="paper")
    return plt, sns


def teacher_metric(finals: dict) -> dict[str, float]:
    """Per task, the dev main metric of the teacher its cells started from, as they recorded
    it (finals: ablations.tables.collect's {(task, label): {seed: record}})."""
    return {task: f["teacher"]["dev"][f["main_metric"]]
            for (task, _), runs in sorted(finals.items()) for f in runs.values()
            if f.get("teacher")}


def constant_metric(finals: dict, task: str, metric: str) -> float | None:
    """The constant prediction's dev metric on `task` (majority class / train mean), from the
    first record of the task that holds it (runs before spd recorded it have none)."""
    return next((f["majority_dev"][metric] for (t, _), runs in sorted(finals.items())
                 if t == task for f in runs.values()
                 if (f.get("majority_dev") or {}).get(metric) is not None), None)


def _references(ax, finals: dict, task: str, metric: str, bar: bool = False) -> None:
    """The teacher's dev metric (and with `bar`, 95% of it) and the constant prediction's."""
    teacher = teacher_metric(finals).get(task)
    if teacher is not None:
        ax.axhline(teacher, color="grey", linestyle="--", label="teacher (dense)")
        if bar:
            ax.axhline(0.95 * teacher, color="grey", linestyle=":", label="95% of the teacher")
    floor = constant_metric(finals, task, metric)
    if floor is not None:
        ax.axhline(floor, color="firebrick", linestyle="-.",
                   label="constant prediction (majority class / train mean)")


def series(cell: Cell) -> str:
    """The curve a row belongs to: its label without the sparsity suffix ("GMP s0.9": "GMP"),
    so that a method key such as gmp_lr3e-4 never names a curve."""
    suffix = f" s{cell.sparsity:g}" if cell.sparsity is not None else None
    return cell.label.removesuffix(suffix) if suffix else cell.label


def sparsity_figure(cells: list[Cell], rows, finals: dict, out: Path,
                    name: str = "sparsity") -> list[Path]:
    """rows: ablations.tables.Row of the `sparsity` grid; the dev metric (top, beside the
    teacher's and the constant prediction's) and the train - dev gap (bottom) against
    sparsity, per method, with 95% intervals over seeds."""
    plt, _ = _setup()
    s_of = {(c.task, c.label): c.sparsity for c in cells}
    series_of = {(c.task, c.label): series(c) for c in cells}
    tasks = sorted({r.task for r in rows})
    quantities = [q for q in ("dev", "gap") if any(r.quantity == q for r in rows)]
    fig, axes = plt.subplots(len(quantities), len(tasks), squeeze=False, layout="constrained",
                             figsize=(5 * len(tasks), 3.5 * len(quantities)))
    for ax, (q, task) in zip(axes.flat, [(q, t) for q in quantities for t in tasks]):
        mine = [r for r in rows if r.task == task and r.quantity == q and r.n]
        for curve in sorted({series_of[(task, r.label)] for r in mine}):
            pts = sorted((s_of[(task, r.label)], r) for r in mine
                         if series_of[(task, r.label)] == curve)
            xs, ms = [s for s, _ in pts], [r.mean for _, r in pts]
            lo = [m - (r.ci[0] if r.ci else m) for m, (_, r) in zip(ms, pts)]
            hi = [(r.ci[1] if r.ci else m) - m for m, (_, r) in zip(ms, pts)]
            ax.errorbar(xs, ms, yerr=[lo, hi], marker="o", capsize=3, label=curve)
        metric = next((r.metric for r in rows if r.task == task), "")
        if q == "dev":
            _references(ax, finals, task, metric)
        ax.set(xlabel="target sparsity", title=task,
               ylabel=f"dev {metric}" if q == "dev" else f"train - dev {metric}")
        ax.legend(fontsize="small")
    paths = _save(fig, out, name)
    plt.close(fig)
    return paths


def overfitting_figure(cells: list[Cell], rows, finals: dict, out: Path,
                       name: str = "overfitting") -> list[Path]:
    """Curves of the first seed's runs (the evaluations their records hold), and the final gap
    (rows of quantity gap) against sparsity."""
    import pandas as pd

    plt, sns = _setup()
    tasks = sorted({c.task for c in cells})
    # One colour per row label and per series in every panel, whichever rows have results.
    labels = list(dict.fromkeys(c.label for c in cells))
    curves = list(dict.fromkeys(series(c) for c in cells))
    label_colour = dict(zip(labels, sns.color_palette(n_colors=len(labels))))
    curve_colour = {s: label_colour[next(c.label for c in cells if series(c) == s)]
                    for s in curves}
    fig, axes = plt.subplots(len(tasks), 2, figsize=(12, 3.8 * len(tasks)), squeeze=False,
                             layout="constrained")
    for (ax_curve, ax_gap), task in zip(axes, tasks):
        curve = []
        for c in cells:
            if c.task == task and c.seed == min(x.seed for x in cells):
                m = get_task(task).main_metric
                run = finals.get((task, c.label), {}).get(c.seed) or {}
                for r in (e for e in run.get("evals", []) if e.get("train_subset")):
                    curve += [{"epoch": r["epoch"], "method": c.label, "split": split,
                               "metric": r[key][m]}
                              for split, key in (("train", "train_subset"), ("dev", "dev"))]
        if curve:
            sns.lineplot(pd.DataFrame(curve), x="epoch", y="metric", hue="method", style="split",
                         hue_order=labels, palette=label_colour, marker="o", ax=ax_curve)
            _references(ax_curve, finals, task, get_task(task).main_metric)
            sns.move_legend(ax_curve, "upper left", bbox_to_anchor=(1.01, 1), fontsize="small")
        ax_curve.set_title(f"{task}: train subset and dev during training (seed 0)")
        s_of = {c.label: (c.sparsity or 0.0, series(c)) for c in cells if c.task == task}
        gaps = [{"sparsity": s_of[r.label][0], "method": s_of[r.label][1], "gap": r.mean}
                for r in rows if r.task == task and r.quantity == "gap" and r.n]
        if gaps:
            sns.lineplot(pd.DataFrame(gaps), x="sparsity", y="gap", hue="method", marker="o",
                         hue_order=curves, palette=curve_colour, ax=ax_gap)
        ax_gap.set(title=f"{task}: final train - dev gap (dense at sparsity 0)",
                   xlim=(-0.05, 1.0))
    paths = _save(fig, out, name)
    plt.close(fig)
    return paths


def budget_figure(cells: list[Cell], finals: dict, out: Path, name: str = "budget") -> list[Path]:
    """The budget study: each recipe's final dev metric against its wall time in minutes (one
    point per seed, labelled by recipe), per task, beside the teacher's dev metric and 95% of
    it (the quality bar a 90%-sparse student must keep)."""
    plt, sns = _setup()
    tasks = sorted({c.task for c in cells})
    labels = list(dict.fromkeys(c.label for c in cells))
    colour = dict(zip(labels, sns.color_palette("tab10", n_colors=len(labels))))
    fig, axes = plt.subplots(1, len(tasks), figsize=(6 * len(tasks), 4.2), squeeze=False,
                             layout="constrained")
    for ax, task in zip(axes.flat, tasks):
        metric = get_task(task).main_metric
        for label in labels:
            runs = finals.get((task, label), {})
            if runs:
                xs = [f["wall_time_s"] / 60 for f in runs.values()]
                ys = [f["dev"][metric] for f in runs.values()]
                ax.scatter(xs, ys, color=colour[label], label=label, s=30)
        _references(ax, finals, task, metric, bar=True)
        ax.set(xlabel="wall time of the SPD run (minutes, 2-core CPU)",
               ylabel=f"final dev {metric}", title=f"{task}: budget study at sparsity 0.9")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2)
        else:  # no run of this task yet: say so rather than draw an empty frame silently
            ax.text(0.5, 0.5, "no finished run yet", ha="center", va="center",
                    transform=ax.transAxes)
    paths = _save(fig, out, name)
    plt.close(fig)
    return paths
