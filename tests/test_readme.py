"""The README documents what the code does: every config key, every command, the Quickstart."""
from pathlib import Path

from spd.cli import build_parser
from spd.config import FinetuneConfig, _leaf_keys
from tests.conftest import table_csv_rows

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_every_config_key_is_documented():
    missing = [k for k in _leaf_keys(FinetuneConfig) if f"`{k}`" not in README]
    assert not missing, f"README lacks config keys {missing}"


def test_every_command_is_documented():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    missing = [c for c in sub.choices if f"spd {c}" not in README]
    assert not missing, f"README lacks commands {missing}"


def test_quickstart_is_two_commands():
    quick = README.split("## Quickstart", 1)[1].split("##", 1)[0]
    block = quick.split("```", 2)[1].splitlines()
    assert [line.strip() for line in block if line.strip()] == ["make run", "make test"]


def test_teacher_table_is_generated_from_the_committed_runs():
    from spd.report import load_finals, runs_table

    teachers = Path(__file__).resolve().parents[1] / "ablations" / "results" / "teachers"
    runs = [teachers / t for t in ("mrpc", "rte", "stsb", "cola", "sst2")]
    block = README.split("<!-- teachers:begin -->", 1)[1].split("<!-- teachers:end -->", 1)[0]
    assert runs_table(load_finals(runs)) in block


def _majority_baselines(glue_dir) -> dict[str, dict[str, float]]:
    from ablations.readme_tables import TEACHER_TASKS
    from spd.data import load_split
    from spd.metrics import majority_baseline
    from spd.tasks import TASKS

    def labels(task, split):
        return [r["label"] for r in load_split(TASKS[task], split, glue_dir)]

    return {t: majority_baseline(TASKS[t], labels(t, "train"), labels(t, "validation"))
            for t in TEACHER_TASKS}


def test_majority_baselines_in_the_readme_are_computed_from_the_data(glue_dir):
    for name, base in _majority_baselines(glue_dir).items():
        text = f"{name}: " + ", ".join(f"{k} {v:.3f}" for k, v in base.items())
        assert text in README, f"README should state the majority baseline as {text!r}"


def test_spd_table_in_the_readme_is_generated_from_the_committed_runs():
    from ablations.readme_tables import spd_runs
    from spd.report import load_finals, spd_table

    runs = spd_runs()
    assert runs, "no committed SPD runs"
    block = README.split("<!-- spd:begin -->", 1)[1].split("<!-- spd:end -->", 1)[0]
    assert spd_table(load_finals(runs)) in block


def test_ablation_tables_in_the_readme_are_the_committed_ones():
    from ablations.readme_tables import ablation_block

    block = README.split("<!-- ablations:begin -->", 1)[1].split("<!-- ablations:end -->", 1)[0]
    assert block == "\n" + ablation_block()


ABLATIONS = Path(__file__).resolve().parents[1] / "ablations"


def _prose(start: str, end: str) -> str:
    """README text between two markers, tables left out (they have their own tests)."""
    text = README.split(start, 1)[1].split(end, 1)[0]
    return " ".join(line for line in text.splitlines() if not line.startswith("|"))


def _table_rows() -> list[dict]:
    return [row for path in sorted((ABLATIONS / "tables").glob("*.csv"))
            for row in table_csv_rows(path)]


def _result_values() -> set[float]:
    """Every metric a committed run or table holds, to 3 decimals, and each run's train - dev."""
    import json

    values: set[float] = set()

    def walk(node, key=""):
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, k)
        elif isinstance(node, float) and "loss" not in key and "time" not in key:
            values.add(round(node, 3))

    for path in (ABLATIONS / "results").rglob("final.json"):
        final = json.loads(path.read_text())
        walk(final)
        dev, train = final.get("dev", {}), final.get("train_subset", {})
        values.update(round(train[m] - dev[m], 3) for m in set(dev) & set(train))
    values.update(round(float(row[k]), 3) for row in _table_rows()
                  for k in ("mean", "ci_low", "ci_high") if row[k])
    return values


def test_numbers_in_the_results_prose_come_from_the_committed_runs(glue_dir):
    """Each 3-decimal figure the README's results prose cites is a committed run's or table's
    metric (or a train - dev gap, or a majority baseline), and each ablation p-value a table's:
    prose left behind when new cells land fails here."""
    import re

    known = _result_values() | {round(v, 3) for base in _majority_baselines(glue_dir).values()
                                for v in base.values()}
    ablation_prose = _prose("<!-- ablations:end -->", "## Data-parallel")
    teacher_prose = _prose("## Teacher results", "## Ablations")
    prose = re.sub(r"p =\s+\d\.\d+", "", teacher_prose + ablation_prose)  # p: checked below
    unknown = sorted({m for m in re.findall(r"(?<![\w.])-?\d\.\d{3}(?!\d)", prose)
                      if round(float(m), 3) not in known})
    assert not unknown, f"README prose cites figures no committed run or table holds: {unknown}"
    cited = {float(p) for p in re.findall(r"p =\s+(\d\.\d+)", ablation_prose)}
    tabled = {round(float(row["p"]), 2) for row in _table_rows() if row["p"]}
    assert cited <= tabled, f"README cites p-values no table holds: {sorted(cited - tabled)}"
