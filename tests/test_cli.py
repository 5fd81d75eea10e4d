"""`spd finetune / evaluate / report` end to end on a tiny random BERT, and bad input."""
import gzip
import json
import os
import subprocess
import sys

import pytest

from spd.cli import main

TINY = ["--set", "optim.max_steps=4", "--set", "eval_every=2", "--set", "data.max_length=64",
        "--set", "data.train_eval_size=16", "--set", "data.batch_size=8"]


def spd(*args, env=None):
    """Run the real console entry point in a subprocess: exit code, stdout, stderr."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", **(env or {})}
    proc = subprocess.run([sys.executable, "-m", "spd", *map(str, args)], capture_output=True,
                          text=True, env=env, timeout=300)
    return proc.returncode, proc.stdout, proc.stderr


@pytest.fixture(scope="module")
def tiny_run(tiny_model_dir, small_glue, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "rte"
    assert main(["finetune", "--task", "rte", "--model", str(tiny_model_dir),
                 "--data-dir", str(small_glue), "--output", str(out), *TINY]) == 0
    return out


def test_run_directory_describes_itself(tiny_run):
    assert {p.name for p in tiny_run.iterdir()} == {"model", "config.json", "metrics.jsonl",
                                                    "final.json", "record.json", ".spd.lock"}
    assert (tiny_run / "model" / "README.md").is_file()  # the model card
    assert (tiny_run / "model" / "config.json").is_file()
    assert (tiny_run / "model" / "tokenizer.json").is_file()
    config = json.loads((tiny_run / "config.json").read_text())
    assert config["task"] == "rte" and config["optim"]["max_steps"] == 4
    records = [json.loads(line) for line in (tiny_run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [2, 4]
    assert all({"accuracy", "loss"} <= set(r["dev"]) and "accuracy" in r["train_subset"]
               for r in records)
    final = json.loads((tiny_run / "final.json").read_text())
    assert final["steps"] == 4 and final["dev"] == records[-1]["dev"]
    assert final["best_dev_during_training"]["dev"]["accuracy"] == max(
        r["dev"]["accuracy"] for r in records)
    assert final["data"]["train"]["sha256"] and final["config_hash"]
    env = final["environment"]
    assert {"torch", "transformers", "device", "git_commit"} <= set(env)
    assert not list(tiny_run.glob("*.tmp")) and not list(tiny_run.glob(".*.tmp"))


def test_same_seed_gives_bitwise_identical_results(tiny_run, tiny_model_dir, small_glue, tmp_path):
    assert main(["finetune", "--task", "rte", "--model", str(tiny_model_dir), "--data-dir",
                 str(small_glue), "--output", str(tmp_path / "again"), *TINY]) == 0
    first = json.loads((tiny_run / "final.json").read_text())
    again = json.loads((tmp_path / "again" / "final.json").read_text())
    assert again["dev"] == first["dev"] and again["train_subset"] == first["train_subset"]


def test_evaluate_reloads_the_saved_model(tiny_run, small_glue, capsys):
    assert main(["evaluate", "--task", "rte", "--model", str(tiny_run), "--data-dir",
                 str(small_glue), "--max-length", "64"]) == 0
    printed = json.loads(capsys.readouterr().out)
    final = json.loads((tiny_run / "final.json").read_text())
    # Same weights, same data, eval mode: equal up to float summation order across batches.
    for k, v in final["dev"].items():
        assert printed["dev"][k] == pytest.approx(v, rel=1e-5)


def test_finished_run_is_not_redone_and_other_configs_are_refused(tiny_run, tiny_model_dir,
                                                                   small_glue, capsys):
    before = (tiny_run / "final.json").stat().st_mtime_ns
    args = ["finetune", "--task", "rte", "--model", str(tiny_model_dir), "--data-dir",
            str(small_glue), "--output", str(tiny_run), *TINY]
    assert main(args) == 0
    assert (tiny_run / "final.json").stat().st_mtime_ns == before
    assert main(args + ["--set", "seed=1"]) == 2
    assert "different configuration" in capsys.readouterr().err


def test_report_prints_a_table(tiny_run, capsys):
    assert main(["report", str(tiny_run)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("| task |") and "| rte |" in out


def test_regression_task_trains(tiny_model_dir, glue_dir, tmp_path):
    small = tmp_path / "glue"
    (small / "stsb").mkdir(parents=True)
    for split in ("train", "validation"):
        with gzip.open(glue_dir / "stsb" / f"{split}.jsonl.gz", "rt") as f:
            (small / "stsb" / f"{split}.jsonl").write_text("".join(next(f) for _ in range(24)))
    assert main(["finetune", "--task", "stsb", "--model", str(tiny_model_dir), "--data-dir",
                 str(small), "--output", str(tmp_path / "run"), *TINY]) == 0
    final = json.loads((tmp_path / "run" / "final.json").read_text())
    assert set(final["dev"]) == {"pearson", "spearman", "loss"}


# The bad-input catalogue (exit 2, one line, nothing left behind) is tests/test_bad_input.py.


def test_argparse_errors_are_one_line_too():
    code, _, stderr = spd("finetune", "--task", "rte")
    assert code == 2 and len(stderr.strip().splitlines()) == 1 and "--output" in stderr


def test_provenance_is_captured_when_the_run_starts(tiny_model_dir, small_glue, tmp_path,
                                                    monkeypatch):
    """A commit made while a run trains must not be recorded as the code that ran."""
    from spd import finetune, rundir

    head = {"commit": "commit-at-start"}
    monkeypatch.setattr(rundir, "git_commit", lambda: {"git_commit": head["commit"], "git_dirty": False})
    evaluate_dev = finetune.evaluate_dev

    def evaluate_then_commit(*args, **kwargs):  # someone commits while the run trains
        head["commit"] = "commit-during-run"
        return evaluate_dev(*args, **kwargs)

    monkeypatch.setattr(finetune, "evaluate_dev", evaluate_then_commit)
    assert main(["finetune", "--task", "rte", "--model", str(tiny_model_dir), "--data-dir",
                 str(small_glue), "--output", str(tmp_path / "run"), *TINY]) == 0
    final = json.loads((tmp_path / "run" / "final.json").read_text())
    assert head["commit"] == "commit-during-run"
    assert final["environment"]["git_commit"] == "commit-at-start"


def test_result_files_and_model_folder_get_the_usual_permissions(tiny_run):
    import os

    umask = os.umask(0)
    os.umask(umask)
    for name in ("config.json", "final.json", "metrics.jsonl"):
        assert (tiny_run / name).stat().st_mode & 0o777 == 0o666 & ~umask, name
    assert (tiny_run / "model").stat().st_mode & 0o777 == 0o777 & ~umask


def test_a_run_saved_before_a_field_existed_is_the_same_configuration(tmp_path):
    from spd import rundir
    from spd.presets import spd_config
    from spd.overrides import to_dict

    cfg = spd_config("mrpc", "teacher", "cpu")
    old = to_dict(cfg)
    del old["prune"]["pattern"], old["theory_examples"]  # fields added after the run was saved
    rundir.write_json(tmp_path / "config.json", old)
    assert rundir.holds_config(tmp_path, cfg)
    assert not rundir.holds_config(tmp_path, spd_config("mrpc", "teacher", "cpu", ["theory_examples=0"]))
    assert not rundir.holds_config(tmp_path, spd_config("mrpc", "teacher", "cpu", ["seed=1"]))
    (tmp_path / "config.json").write_text("{broken")
    assert not rundir.holds_config(tmp_path, cfg)


def test_a_set_that_agrees_with_its_flag_is_accepted():
    from spd.arguments import build_parser, check_agreement

    args = build_parser().parse_args(["prune", "--task", "rte", "--teacher", "t", "--sparsity",
                                      "0.5", "--output", "o", "--set", "prune.sparsity=0.50",
                                      "--set", "task=rte"])
    check_agreement(args)  # the same values, written differently: no error


def test_version_prints_the_package_version_and_commit(capsys):
    from spd import __version__
    from spd.cli import main

    assert main(["--version"]) == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith(f"spd {__version__} (") and len(out.split("(")[1].split(",")[0]) >= 7


def test_finetune_from_another_tasks_model_starts_a_fresh_head(tiny_model_dir, small_glue,
                                                               tmp_path, caplog):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from spd.cli import main

    regression = tmp_path / "stsb-shaped"
    AutoModelForSequenceClassification.from_pretrained(
        tiny_model_dir, num_labels=1, problem_type="regression").save_pretrained(regression)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(regression)
    assert main(["finetune", "--task", "rte", "--model", str(regression), "--data-dir",
                 str(small_glue), "--output", str(tmp_path / "run"), *TINY]) == 0
    said = [r.getMessage() for r in caplog.records if "starting a fresh rte head" in r.getMessage()]
    assert len(said) == 1 and "1 outputs (regression)" in said[0]
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "run" / "model")
    assert model.config.num_labels == 2


def test_report_over_a_teacher_and_a_student_together_is_one_table():
    from spd.report import table

    teacher = {"task": "rte", "model": "minilm", "seed": 42, "dev": {"accuracy": 0.6},
               "best_dev_during_training": {"step": 4, "dev": {"accuracy": 0.6}},
               "main_metric": "accuracy", "train_subset": None, "steps": 4, "wall_time_s": 60,
               "environment": {"device": "cpu (2 threads)"}}
    student = {**{k: v for k, v in teacher.items() if k != "model"}, "teacher": "t",
               "teacher_dev": {"accuracy": 0.6}, "sparsity": 0.9}
    text = table([teacher, student])
    assert "| rte | minilm | 42 |" in text and "| rte | SPD student at 0.90 | 42 |" in text


@pytest.mark.parametrize("saved_labels, problem, task, fits", [
    (1, "regression", "rte", False), (2, "single_label_classification", "stsb", False),
    (3, "single_label_classification", "rte", False),
    (2, "single_label_classification", "rte", True),
    (1, "regression", "stsb", True)])
def test_a_saved_head_fits_only_its_own_task_shape(tiny_model_dir, tmp_path, saved_labels,
                                                    problem, task, fits):
    from transformers import AutoModelForSequenceClassification

    from spd.models import head_mismatch
    from spd.tasks import get_task

    AutoModelForSequenceClassification.from_pretrained(
        tiny_model_dir, num_labels=saved_labels, problem_type=problem).save_pretrained(tmp_path)
    assert (head_mismatch(str(tmp_path), get_task(task)) is None) == fits
    assert head_mismatch(str(tiny_model_dir), get_task(task)) is None  # no saved head: fits


@pytest.mark.parametrize("given", [None, "0123abc"])
def test_a_copy_without_git_records_the_commit_its_copier_names_or_none(monkeypatch, given):
    """A tree copied without .git (as to a lent GPU machine) has no commit of its own: the run
    records SPD_GIT_COMMIT where the copier set it, else none, and never claims to be clean."""
    from spd import rundir

    def no_git(*args, **kwargs):
        raise subprocess.CalledProcessError(128, args[0])

    monkeypatch.setattr(rundir.subprocess, "run", no_git)
    if given is None:
        monkeypatch.delenv("SPD_GIT_COMMIT", raising=False)
    else:
        monkeypatch.setenv("SPD_GIT_COMMIT", given)
    assert rundir.git_commit() == {"git_commit": given, "git_dirty": None}
