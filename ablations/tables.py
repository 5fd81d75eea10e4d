"""Ablation tables from the saved records alone: Markdown, LaTeX and CSV, byte-reproducible.

    python -m ablations.tables NAME [--tasks T ...] [--seeds N] [--profile cpu] [--results DIR]
                                    [--out DIR]

For each task, method and quantity (the dev main metric; for `sparsity`, `overfitting` and the lr
grids `gmp_lr` and `movement_lr` also the train-subset metric and the train - dev gap, all of the
final student): the mean and
sample standard deviation over the finished seeds, n, a 95% Student-t confidence interval (mean +-
t_{0.975, n-1} sd / sqrt(n)) and a two-sided paired t-test (scipy.stats.ttest_rel, paired by seed,
over the seeds both rows have; empty below two of them or when the difference between the rows is
the same on every seed, to rounding, where it is undefined) against the row's reference (full SPD
unless the grid says otherwise), with its Holm-corrected p across the table's comparisons and the
smallest difference the seeds could detect (`ablations.stats`); a mark (†) on dev metrics at or
within noise of the constant prediction. The best mean per task and quantity is marked (higher is
better for every GLUE metric; for the gap, the smallest). Each row names the device each of its
seeds ran on (a lent GPU's cells sit beside the CPU's). Unfinished cells are left out (n says how
many seeds made it); a row with no finished seed is left empty. The values come from the runs'
records (`record.json`, spd.records) alone: a changed preset adds rows and never empties old ones.
No time stamps: the same records give byte-identical files.
Figures (seaborn, PNG and PDF; `ablations/figures.py`) go to `ablations/figures/` for
`sparsity` and `overfitting`.
"""
import csv
import io
import sys
from dataclasses import dataclass, replace
from pathlib import Path

from ablations import stats as paired
from ablations.figures import (budget_figure, constant_metric, overfitting_figure,
                               sparsity_figure)
from ablations.registry import DEFAULT_PROFILES, Cell, build_parser, grid
from spd import records, rundir
from spd.arguments import EXIT_BAD_INPUT
from spd.errors import SpdError, output_folder
from spd.tasks import get_task

TABLES, FIGURES = Path("ablations/tables"), Path("ablations/figures")
QUANTITIES = {name: ("dev", "train", "gap") for name in ("sparsity", "overfitting", "gmp_lr",
                                                         "movement_lr")}
CLOSEST_TO_ZERO = {"gap"}  # the best train - dev gap is the smallest in size, not the most negative


@dataclass(frozen=True)
class Row:
    task: str
    label: str
    quantity: str
    metric: str
    values: dict  # seed -> value
    reference: str | None
    p_value: float | None
    detectable: float | None = None  # the smallest paired difference the seeds could see
    p_holm: float | None = None  # p, Holm-corrected across the table's comparisons
    at_baseline: bool = False  # the dev metric at or within noise of the constant prediction
    devices: str = ""  # which seeds ran on which device (`devices_text`)

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float | None:
        return sum(self.values.values()) / self.n if self.n else None

    @property
    def sd(self) -> float | None:
        return paired.sd(list(self.values.values()))

    @property
    def ci(self) -> tuple[float, float] | None:
        return paired.ci95(list(self.values.values()))


def mean_ci(values: dict) -> str:
    """"mean [95% CI]" of {seed: value} to 4 places ("" without values, no CI below 2)."""
    row = Row("", "", "", "", values, None, None)
    if row.n == 0:
        return ""
    ci = row.ci
    return f"{row.mean:.4f}" + ("" if ci is None else f" [{ci[0]:.4f}, {ci[1]:.4f}]")


def quantity(final: dict, name: str) -> float | None:
    m = final["main_metric"]
    dev, train = final["dev"][m], (final.get("train_subset") or {}).get(m)
    if name == "dev":
        return dev
    if train is None:
        return None
    return train if name == "train" else train - dev


def collect(name: str, cells: list[Cell], results: Path) -> tuple[list[Cell], dict]:
    """The records (`record.json`) under `results/cells/<profile>/` that fill a row of grid
    `name` for the tasks and seeds of `cells` (the grid as the registry lists it today, which
    gives the rows their order and an empty row where nothing finished): the cells, those of
    the registry first and then any row that only the records hold, and
    {(task, label): {seed: record}}. A run whose teacher was replaced since (its recorded
    teacher dev metrics are not those of the teacher folder it names) is not counted. Nothing
    here compares a run with today's presets, so a changed recipe never empties a row."""
    if not cells:
        return cells, {}
    profile = cells[0].profile
    tasks, seeds = {c.task for c in cells}, {c.seed for c in cells}
    known = {(c.task, c.label, c.seed) for c in cells}
    found, finals = [], {(c.task, c.label): {} for c in cells}
    for _, rec in records.under(results / "cells" / profile):
        if rec["task"] not in tasks or rec["seed"] not in seeds or \
                not records.teacher_is_current(rec):
            continue
        for row in rec["rows"]:
            if row["grid"] != name:
                continue
            cell = Cell(rec["task"], row["method"], rec["sparsity"], rec["seed"], profile,
                        row["label"], row["reference"])
            if (cell.task, cell.label, cell.seed) not in known:
                found.append(cell)
            finals.setdefault((cell.task, cell.label), {})[cell.seed] = rec
    return cells + found, finals


def _seed_ranges(seeds: list[int]) -> str:
    """[0, 1, 2, 4] -> "0-2, 4"."""
    runs = []
    for s in sorted(seeds):
        if runs and s == runs[-1][1] + 1:
            runs[-1][1] = s
        else:
            runs.append([s, s])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


def segments(rec: dict) -> tuple[dict, ...]:
    """The environment of a run's first segment and of every resumed one (a run may resume
    elsewhere)."""
    env = rec.get("environment", {})
    return (env, *env.get("resumed", []))


def devices_text(runs: dict) -> str:
    """{seed: record} -> "NVIDIA H200: 3-4; cpu: 0-2": the device of each run's every segment
    (a run resumed elsewhere counts under both), the CPU's thread count left out."""
    seeds_on = {}
    for seed, rec in runs.items():
        for segment in segments(rec):
            if "device" in segment:
                device = segment["device"].split(" (")[0] if segment["device"].startswith(
                    "cpu") else segment["device"]
                seeds_on.setdefault(device, set()).add(seed)
    return "; ".join(f"{d}: {_seed_ranges(list(s))}" for d, s in sorted(seeds_on.items()))


def build_rows(cells: list[Cell], finals: dict, quantities=("dev",)) -> list[Row]:
    refs = {(c.task, c.label): c.reference for c in cells}
    keys = list(dict.fromkeys((c.task, c.label) for c in cells))  # grid order
    rows = []
    for q in quantities:
        values = {}
        for key in keys:
            per_seed = {s: quantity(f, q) for s, f in finals.get(key, {}).items()}
            values[key] = {s: v for s, v in per_seed.items() if v is not None}
        for task, label in keys:
            ref, mine = refs[(task, label)], values[(task, label)]
            metric = get_task(task).main_metric
            theirs = values[(task, ref)] if ref else {}
            pairs = len(set(mine) & set(theirs))
            floor = constant_metric(finals, task, metric) if q == "dev" else None
            rows.append(Row(task, label, q, metric, mine, ref, paired.paired_p(mine, theirs),
                            paired.detectable_difference(paired.paired_sd(mine, theirs), pairs),
                            at_baseline=paired.at_baseline(mine, floor),
                            devices=devices_text(finals.get((task, label), {}))))
    holm = paired.holm([r.p_value for r in rows])
    rows = [replace(r, p_holm=h) for r, h in zip(rows, holm)]
    return sorted(rows, key=lambda r: (r.task, quantities.index(r.quantity)))


def best(rows: list[Row]) -> set[int]:
    """Indices of the best mean per task and quantity: the highest, or for the gap the one
    closest to zero."""
    out = set()
    for key in dict.fromkeys((r.task, r.quantity) for r in rows):
        group = [(i, r) for i, r in enumerate(rows) if (r.task, r.quantity) == key and r.n]
        if group:
            score = (lambda m: -abs(m)) if key[1] in CLOSEST_TO_ZERO else (lambda m: m)
            top = max(score(r.mean) for _, r in group)
            out |= {i for i, r in group if score(r.mean) == top}
    return out


def _f(x: float | None, digits: int = 4) -> str:
    return "" if x is None else f"{x:.{digits}f}"


def _p(p: float | None) -> str:
    return "" if p is None else f"{p:.3g}"


def cells_text(r: Row) -> list[str]:
    ci = r.ci
    mean = _f(r.mean) + (" †" if r.at_baseline else "")
    return [r.task, r.label, r.quantity, r.metric, str(r.n), mean, _f(r.sd),
            "" if ci is None else f"[{ci[0]:.4f}, {ci[1]:.4f}]", r.reference or "",
            _p(r.p_value), _p(r.p_holm), _f(r.detectable), r.devices]


HEADER = ["task", "method", "quantity", "metric", "n", "mean", "sd", "95% CI", "vs",
          "paired t-test p", "p (Holm)", "detectable difference", "device: seeds"]


def footer(argv: list[str], cells: list[Cell], finals: dict, results: Path) -> list[str]:
    envs = [e for runs in finals.values() for f in runs.values() for e in segments(f)]
    commits = ", ".join(sorted({(e.get("git_commit") or "unknown")[:12] for e in envs}))
    devices = "; ".join(sorted({e["device"] for e in envs}))
    seeds = ", ".join(map(str, sorted({c.seed for c in cells})))
    return [f"Generated by `python -m ablations.tables {' '.join(argv)}` from the records "
            f"(`record.json`) under `{results}/cells/{cells[0].profile}/` alone. "
            f"Profile {cells[0].profile}; seeds {seeds}; "
            f"runs at commit {commits or '-'}; hardware: {devices or '-'}.",
            "mean and sd (n - 1) over the finished seeds; 95% CI: Student t; p: two-sided paired "
            "t-test (scipy.stats.ttest_rel) against the `vs` row, paired by seed (empty p: fewer "
            "than two shared seeds, or the same difference between the rows on every seed, "
            "where the test is undefined); p (Holm): Holm-Bonferroni across the table's "
            "comparisons; detectable difference: the smallest paired mean difference against "
            "the `vs` row that this test would find with 80% power at two-sided 0.05, from the "
            "observed sd of the paired differences and their number (noncentral t). "
            "†: the dev metric is at or below the constant prediction's (majority class, or the "
            "train mean for STS-B), or its 95% CI reaches it (no mark where no record of the task "
            "holds that metric: runs before spd recorded it). Bold (CSV: best = 1): the best "
            "mean per task and quantity (for the gap, the smallest in size). Dev metrics are of "
            "the final student, not the best during training."]


def to_markdown(rows: list[Row], foot: list[str]) -> str:
    marked = best(rows)
    lines = ["| " + " | ".join(HEADER) + " |", "|---" * len(HEADER) + "|"]
    for i, r in enumerate(rows):
        cells = cells_text(r)
        if i in marked:
            cells[5] = f"**{cells[5]}**"
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join([*lines, "", *foot]) + "\n"


_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "_": r"\_", "#": r"\#", "$": r"\$",
        "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "†": r"\dag{}"}


def _tex(s: str) -> str:
    return "".join(_TEX.get(ch, ch) for ch in s)


def to_latex(rows: list[Row], foot: list[str]) -> str:
    marked = best(rows)
    lines = [r"% needs \usepackage{booktabs} (\toprule, \midrule, \bottomrule)",
             r"\begin{tabular}{" + "l" * 4 + "r" * 3 + "llllll}", r"\toprule",
             " & ".join(_tex(h) for h in HEADER) + r" \\", r"\midrule"]
    for i, r in enumerate(rows):
        cells = [_tex(c) for c in cells_text(r)]
        if i in marked:
            cells[5] = rf"\textbf{{{cells[5]}}}"
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", *[f"% {_tex(line)}" for line in foot]]
    return "\n".join(lines) + "\n"


def to_csv(rows: list[Row], foot: list[str]) -> str:
    """Header and rows only, so that a plain `pandas.read_csv` reads it; the provenance lines
    go to NAME.meta.json beside it (`meta_json`)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([*HEADER[:7], "ci_low", "ci_high", "vs", "p", "p_holm", "detectable", "best",
                "at_baseline", "seeds", "devices"])
    marked = best(rows)
    for i, r in enumerate(rows):
        ci = r.ci or (None, None)
        w.writerow([r.task, r.label, r.quantity, r.metric, r.n, _f(r.mean, 6), _f(r.sd, 6),
                    _f(ci[0], 6), _f(ci[1], 6), r.reference or "", _p(r.p_value),
                    _p(r.p_holm), _f(r.detectable, 6), int(i in marked), int(r.at_baseline),
                    " ".join(map(str, sorted(r.values))), r.devices])
    return buf.getvalue()


def meta_json(rows: list[Row], foot: list[str]) -> str:
    """The provenance of NAME.csv: the command that made it and the notes of the .md footer."""
    import json

    return json.dumps({"generated_by": foot[0], "notes": foot[1:]}, indent=2) + "\n"


def load(args) -> tuple[list[Cell], dict, list[Row]]:
    """The grid `args` describes (the runner's options), its finished runs and its rows."""
    cells, finals = collect(args.name, grid(args), Path(args.results))
    return cells, finals, build_rows(cells, finals, QUANTITIES.get(args.name, ("dev",)))


def rows_for(argv: list[str]) -> tuple[list[Cell], list[Row]]:
    """For notebooks: the cells and table rows of `python -m ablations.tables ARGV`."""
    cells, _, rows = load(build_parser().parse_args(argv))
    return cells, rows


def stem(args) -> str:
    """A grid's file name: NAME at its own profile, NAME-PROFILE at another (after `grid`)."""
    return args.name if args.profile == DEFAULT_PROFILES[args.name] else \
        f"{args.name}-{args.profile}"


def write_tables(args, argv: list[str], out: Path = TABLES) -> list[Path]:
    """STEM.{md,tex,csv,meta.json} in `out` for the grid `args` describes (the runner's
    options), STEM being `stem(args)`."""
    cells, finals, rows = load(args)
    foot = footer(argv, cells, finals, Path(args.results))
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for ext, render in (("md", to_markdown), ("tex", to_latex), ("csv", to_csv),
                        ("meta.json", meta_json)):
        path = out / f"{stem(args)}.{ext}"
        rundir.write_text(path, render(rows, foot))
        paths.append(path)
    figures = out.parent / "figures"  # ablations/figures beside ablations/tables
    return paths + draw_figures(args, cells, finals, rows, figures)


def draw_figures(args, cells: list[Cell], finals: dict, rows: list[Row], out: Path) -> list[Path]:
    """The grid's figures (PNG, PDF) in `out`, named `stem(args)`: `sparsity`, `overfitting`
    and `budget` have one each."""
    draw = {"sparsity": lambda: sparsity_figure(cells, rows, finals, out, stem(args)),
            "overfitting": lambda: overfitting_figure(cells, rows, finals, out, stem(args)),
            "budget": lambda: budget_figure(cells, finals, out, stem(args))}
    return draw[args.name]() if args.name in draw else []


def figures_for(argv: list[str], out: Path) -> list[Path]:
    """For notebooks: the figures `python -m ablations.tables ARGV` draws, drawn into `out`."""
    args = build_parser().parse_args(argv)
    return draw_figures(args, *load(args), Path(out))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser("python -m ablations.tables", __doc__)
    parser.add_argument("--out", default=str(TABLES), help=f"tables folder (default: {TABLES})")
    args = parser.parse_args(argv)
    try:
        output_folder("--out", args.out)
        shown = [a for i, a in enumerate(argv)  # the command, less where the files went
                 if a != "--out" and (i == 0 or argv[i - 1] != "--out")]
        paths = write_tables(args, shown, Path(args.out))
    except SpdError as e:
        print(f"ablations: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print("\n".join(map(str, paths)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
