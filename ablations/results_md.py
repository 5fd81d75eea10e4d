"""RESULTS.md from the saved runs alone: the 90%-sparse student of the default recipe against
its teacher, and the budget study it was chosen by.

    python -m ablations.results_md [--results DIR] [--out RESULTS.md]

Pure function of the records (`record.json`) of the `budget` grid's cells (through
`ablations.tables.collect`): no time stamps, so the same records give a byte-identical file.
"""
import argparse
import sys
from pathlib import Path

from ablations import answers
from ablations.registry import GMP_LR, MOVEMENT_LR, RESULTS, build_parser, grid, profile_lr
from ablations.tables import collect, load, mean_ci
from spd import records, rundir
from spd.presets import DEFAULT_PRESET
from spd.tasks import get_task

BUDGET_TASKS = ["mrpc", "stsb", "sst2"]
# The budget method whose recipe is the default preset (a test checks that they agree).
DEFAULT_METHOD = "budget-e10-rest-lr1e-3-aug"
RETENTION_BAR = 0.95
PAIR_CAVEAT = ("all-MiniLM-L6-v2 was contrastively trained on sentence pairs including SNLI, "
               "MultiNLI and QQP, so its pair-task results (MRPC, STS-B) start from a model "
               "that has seen related pairs.")


def _metrics(task: str) -> list[str]:
    """The metrics a task is judged by here: MRPC by F1 and accuracy, the rest by the main one."""
    return ["f1", "accuracy"] if task == "mrpc" else [get_task(task).main_metric]


def headline(cells, finals) -> list[str]:
    lines = ["| task | metric | teacher (dev) | student at 0.9, mean [95% CI] | n | "
             "retention (mean / teacher) | at least 95%? | wall min (mean) | sparsity realised |",
             "|---|---|---|---|---|---|---|---|---|"]
    for task in BUDGET_TASKS:
        runs = finals.get((task, DEFAULT_METHOD), {})
        for metric in _metrics(task):
            if not runs:
                lines.append(f"| {task} | {metric} | | | 0 | | | | |")
                continue
            teacher = next(iter(runs.values()))["teacher"]["dev"][metric]
            values = {s: f["dev"][metric] for s, f in runs.items()}
            mean = sum(values.values()) / len(values)
            wall = sum(f["wall_time_s"] for f in runs.values()) / len(runs) / 60
            sparsity = min(f["sparsity_realised"] for f in runs.values())
            lines.append(f"| {task} | {metric} | {teacher:.4f} | {mean_ci(values)} | "
                         f"{len(values)} | {mean / teacher:.3f} | "
                         f"{'yes' if mean >= RETENTION_BAR * teacher else 'no'} | {wall:.1f} | "
                         f"{sparsity:.4f} |")
    return lines


def budget_table(cells, finals) -> list[str]:
    lines = ["| task | recipe | seeds | dev metric, mean [95% CI] | train-subset metric | "
             "wall min (mean) | steps |", "|---|---|---|---|---|---|---|"]
    for task, label in dict.fromkeys((c.task, c.label) for c in cells):
        runs = finals.get((task, label), {})
        if not runs:
            continue
        m = get_task(task).main_metric
        dev = {s: f["dev"][m] for s, f in runs.items()}
        train = {s: f["train_subset"][m] for s, f in runs.items() if f.get("train_subset")}
        wall = sum(f["wall_time_s"] for f in runs.values()) / len(runs) / 60
        steps = sorted({f["steps"] for f in runs.values()})
        lines.append(f"| {task} | {label} | {', '.join(map(str, sorted(runs)))} | {m} "
                     f"{mean_ci(dev)} | {mean_ci(train)} | {wall:.1f} | "
                     f"{', '.join(map(str, steps))} |")
    return lines


# The bf16 parity check: the same recipe, seed and teacher in bf16 autocast and in fp32.
PARITY = ("budget-e5-rest", "budget-e5-fp32")


def parity(finals) -> list[str]:
    """Per task and seed with both runs: each dev metric in bf16 and fp32, their difference
    (bf16 - fp32) and the wall-time ratio fp32 / bf16."""
    bf16, fp32 = PARITY
    lines = ["| task | seed | metric | bf16 | fp32 | bf16 - fp32 | wall fp32 / bf16 |",
             "|---|---|---|---|---|---|---|"]
    for task in BUDGET_TASKS:
        a, b = finals.get((task, bf16), {}), finals.get((task, fp32), {})
        for seed in sorted(set(a) & set(b)):
            ratio = b[seed]["wall_time_s"] / a[seed]["wall_time_s"]
            for metric in _metrics(task):
                x, y = a[seed]["dev"][metric], b[seed]["dev"][metric]
                lines.append(f"| {task} | {seed} | {metric} | {x:.4f} | {y:.4f} | {x - y:+.4f} | "
                             f"{ratio:.2f} |")
    return lines


TEACHER_TASKS = ("mrpc", "stsb", "sst2", "rte", "cola")
# The committed grid tables, by file stem: `python -m ablations.tables OPTIONS` makes each
# (the same lines as `make results`).
GRIDS = {"components": "components --seeds 5",
         "gmp_lr": "gmp_lr --seeds 3 --tasks stsb mrpc",
         "movement_lr": "movement_lr --seeds 3 --tasks stsb mrpc",
         "sparsity": "sparsity --seeds 3", "overfitting": "overfitting --seeds 3"}
EARLIER_GRIDS = {"components-cpu": "components --profile cpu --seeds 3 --tasks mrpc rte",
                 "sparsity-cpu": "sparsity --profile cpu --seeds 3 --tasks mrpc",
                 "overfitting-cpu": "overfitting --profile cpu --seeds 1 --tasks mrpc rte"}
FIGURED = ("sparsity", "overfitting")  # grids with a figure named as the table


def _metrics_text(metrics: dict | None) -> str:
    return ", ".join(f"{k} {v:.4f}" for k, v in (metrics or {}).items() if k != "loss")


def teachers_table(results: Path) -> list[str]:
    """The dense teachers every cell distils from, from their records."""
    lines = ["| task | dev (final) | train subset (final) | constant prediction (dev) | steps | "
             "wall min | command |", "|---|---|---|---|---|---|---|"]
    floors = {}  # the first record of each task that holds the constant prediction's metrics
    for _, r in records.under(results):
        if r.get("majority_dev"):
            floors.setdefault(r["task"], r["majority_dev"])
    for task in TEACHER_TASKS:
        rec = records.read(results / "teachers" / task)
        if rec is None:
            continue
        command = " ".join(rec["command"] or [])
        lines.append(f"| {task} | {_metrics_text(rec['dev'])} | "
                     f"{_metrics_text(rec['train_subset'])} | {_metrics_text(floors.get(task))} "
                     f"| {rec['steps']} | {rec['wall_time_s'] / 60:.1f} | `{command}` |")
    return lines


CLAIM_TASKS = ["mrpc", "stsb"]


def claims(results: Path) -> list[str]:
    """The paper's claims answered from the default recipe's grids (`ablations.answers`)."""
    rows_of, collapsed = {}, set()
    for options in GRIDS.values():
        args = build_parser().parse_args([*options.split(), "--results", str(results)])
        for r in load(args)[2]:
            rows_of[(args.name, r.task, r.quantity, r.label)] = r.values
            if r.at_baseline:
                collapsed.add((args.name, r.task, r.label))
    return answers.to_markdown(answers.answer(answers.questions(CLAIM_TASKS), rows_of,
                                              collapsed))


def grid_tables(tables: Path, grids: dict[str, str]) -> list[str]:
    """The committed ablation tables (each made from records by `ablations.tables`), as they are."""
    out = []
    for stem, options in grids.items():
        path = tables / f"{stem}.md"
        if not path.is_file():
            continue
        figure = (f" Figure: `ablations/figures/{stem}.png`."
                  if options.split()[0] in FIGURED else "")
        out += [f"### {stem}", "", f"`python -m ablations.tables {options}` writes "
                f"`ablations/tables/{stem}.{{md,tex,csv}}` from the records.{figure}", "",
                path.read_text().rstrip(), ""]
    return out


def render(cells, finals, results: Path, tables: Path = Path("ablations/tables")) -> str:
    envs = sorted({f["environment"]["device"] for runs in finals.values() for f in runs.values()})
    return "\n".join([
        "# Results", "",
        "Generated by `python -m ablations.results_md` (or `make results`) from the records "
        f"(`record.json`) under `{results}/cells/` alone; every number below comes from a committed run. "
        "Dev metrics are of the final student, not the best during training. 95% intervals: "
        "Student t over seeds. Hardware of these runs: " + ("; ".join(envs) or "-") + ".", "",
        f"Caveat, stated once: {PAIR_CAVEAT}", "",
        "## A 90%-sparse student that keeps its teacher (default recipe)", "",
        f"`spd run --task T --sparsity 0.9` (preset `{DEFAULT_PRESET}`, the budget study's "
        f"`{DEFAULT_METHOD}`), 90% of every encoder matrix pruned. The bar: the student's mean keeps at least "
        f"{RETENTION_BAR:.0%} of its teacher's dev metric. Regenerate the runs with "
        f"`python -m ablations.run budget --tasks mrpc --seeds 3 --methods {DEFAULT_METHOD}` "
        "(and the same for stsb and sst2).", "",
        *headline(cells, finals), "",
        "## The budget study (sparsity 0.9)", "",
        "`python -m ablations.run budget --seeds N [--tasks T ...] [--methods M ...]`; recipes "
        "in `ablations/registry.py` (`BUDGET_VARIANTS`, built by `spd.presets.distil_recipe`). "
        "Figure: `ablations/figures/budget.png` (`python -m ablations.tables budget --seeds 3`).",
        "", *budget_table(cells, finals), "",
        "## bf16 autocast against fp32 (dev-metric parity)", "",
        f"The recipe `{PARITY[0]}` (bf16 autocast) and `{PARITY[1]}` (the same in fp32), same "
        "seed and teacher; masks, master weights and optimizer state are fp32 in both. Compare "
        "the differences with the spread over seeds of the default recipe above. Regenerate with "
        f"`python -m ablations.run budget --tasks mrpc --seeds 1 --methods {' '.join(PARITY)}`.",
        "", *parity(finals), "",
        "## Teachers", "",
        "Dense all-MiniLM-L6-v2 teachers, fine-tuned in fp32 on a 2-core CPU, one seed (42) "
        "each; every cell of a task distils from its teacher. Constant prediction: the most "
        "frequent train label, or the train mean for STS-B (from any record of the task that holds it; "
        "runs before that field have none).", "",
        *teachers_table(results), "",
        "## The paper's questions at the default recipe (`cpu3`)", "",
        "`make ablations` runs the cells (the four main components rows on 5 seeds, GMP's "
        "learning rate chosen on STS-B dev with seed 0 as SPD's was (`gmp_lr`), every other "
        "row on 3; MRPC and STS-B; a cell identical to a committed run, such as SPD at 0.9, "
        "reuses it) and remakes these tables. Empty rows are cells not run yet. Every GMP "
        f"row runs at the lr `gmp_lr` chose for GMP, {GMP_LR[DEFAULT_PRESET]} (SPD's: "
        f"{profile_lr(DEFAULT_PRESET):g}); GMP at SPD's lr is in the "
        "`gmp_lr` table. The movement row runs at "
        f"{MOVEMENT_LR[DEFAULT_PRESET]}: at every lr of `movement_lr` movement ended at the "
        "constant prediction, so dev could not choose and the tie went to GMP's lr "
        "(`ablations/registry.py`).", "",
        "### The paper's claims, answered", "",
        "Each claim compares two rows on one task, paired by seed. **yes**: the difference "
        "goes the claimed way with a Holm-corrected p below 0.05 (Holm across every distinct "
        "comparison in this table: a claim asked twice on the same runs counts once); **no**: "
        "it goes the other way as significantly; **unclear**: neither, "
        "and the detectable difference (80% power, two-sided 0.05, from the observed sd of "
        "the paired differences) says what the seeds could have seen. Gap: train subset - dev "
        "of the final student. †: the row's dev metric is at or within noise of the constant "
        "prediction (as in the tables): a yes against it says only that SPD beats a run that "
        "predicts a constant. `ablations/answers.py` states the claims.", "",
        *claims(results), "",
        *grid_tables(tables, GRIDS),
        "## Ablation grids of the earlier `cpu` recipe (3 epochs; students at 0.8 and above end "
        "at the majority class)", "",
        *grid_tables(tables, EARLIER_GRIDS)]) + "\n"


HEADLINE = ("<!-- headline:begin -->\n", "<!-- headline:end -->")


def update_readme(path: Path, lines: list[str]) -> None:
    """Replace the README's headline block (between the HEADLINE markers) with `lines`."""
    text = path.read_text()
    head, rest = text.split(HEADLINE[0], 1)
    rundir.write_text(path, head + HEADLINE[0] + "\n".join(lines) + "\n" + HEADLINE[1] +
                      rest.split(HEADLINE[1], 1)[1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ablations.results_md",
                                description=__doc__.split("\n")[0])
    p.add_argument("--results", default=str(RESULTS), help=f"results folder (default {RESULTS})")
    p.add_argument("--out", default="RESULTS.md", help="file to write (default RESULTS.md)")
    p.add_argument("--readme", default="README.md",
                   help="README whose headline block to update (default README.md; '' for none)")
    args = p.parse_args(argv)
    results = Path(args.results)
    cells = grid(build_parser().parse_args(["budget", "--seeds", "5", "--results", str(results),
                                            "--tasks", *BUDGET_TASKS]))
    cells, finals = collect("budget", cells, results)
    rundir.write_text(Path(args.out), render(cells, finals, results))
    print(f"results_md: wrote {args.out}")
    if args.readme:
        update_readme(Path(args.readme), headline(cells, finals))
        print(f"results_md: updated the headline table in {args.readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
