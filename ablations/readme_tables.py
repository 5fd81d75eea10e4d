"""Rewrite the README's generated tables from the committed runs.

    python -m ablations.readme_tables

The teacher table (`<!-- teachers:begin/end -->`) and the SPD table (`<!-- spd:begin/end -->`)
are `spd report` over `ablations/results/teachers/*` and `ablations/results/spd/*`; the
ablation block (`<!-- ablations:begin/end -->`) is the committed `ablations/tables/*.md`, which
`python -m ablations.tables NAME ...` regenerates from the results. Tests check that the README
says exactly this.
"""
from pathlib import Path

from spd.report import load_finals, runs_table, spd_table

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "ablations" / "results"
TEACHER_TASKS = ("mrpc", "rte", "stsb", "cola", "sst2")
SPD_TASKS, SPARSITIES = ("mrpc", "stsb", "cola", "rte"), (0.5, 0.8, 0.9)


def teacher_runs() -> list[Path]:
    return [RESULTS / "teachers" / t for t in TEACHER_TASKS]


def spd_runs() -> list[Path]:
    """The SPD table's cells that have finished (a cell still running is left out)."""
    runs = [RESULTS / "spd" / f"{t}-s{s}" for t in SPD_TASKS for s in SPARSITIES]
    return [r for r in runs if (r / "final.json").is_file()]


TABLES = ROOT / "ablations" / "tables"
GRIDS = ("components", "replacing_schedule", "sparsity", "criterion_scope", "overfitting")


def ablation_block() -> str:
    """The committed ablation tables, in grid order, each under its name."""
    parts = [f"`ablations/tables/{name}.md`:\n\n{(TABLES / f'{name}.md').read_text()}"
             for name in GRIDS if (TABLES / f"{name}.md").is_file()]
    return "\n".join(parts)


def replace_block(text: str, name: str, body: str) -> str:
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    head, rest = text.split(begin, 1)
    return head + begin + "\n" + body + end + rest.split(end, 1)[1]


def main() -> None:
    readme = ROOT / "README.md"
    text = readme.read_text(encoding="utf-8")
    text = replace_block(text, "teachers", runs_table(load_finals(teacher_runs())))
    text = replace_block(text, "spd", spd_table(load_finals(spd_runs())))
    text = replace_block(text, "ablations", ablation_block())
    readme.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
