"""The README documents what the code does: every config key, every command, the Quickstart."""
from pathlib import Path

from spd.cli import build_parser
from spd.config import FinetuneConfig, _leaf_keys

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


def test_majority_baselines_in_the_readme_are_computed_from_the_data(glue_dir):
    from spd.data import load_split
    from spd.metrics import majority_baseline
    from spd.tasks import TASKS

    for name in ("mrpc", "rte", "stsb", "cola", "sst2"):
        task = TASKS[name]
        labels = {s: [r["label"] for r in load_split(task, s, glue_dir)] for s in ("train", "validation")}
        base = majority_baseline(task, labels["train"], labels["validation"])
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
