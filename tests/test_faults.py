"""Faults: runs SIGKILLed at a random step resume to the uninterrupted result (prune, finetune,
an ablation grid between and inside cells); non-finite losses and gradients stop a run with
the step and the culprit named, and leave the last checkpoint usable."""
import json
import os
import random
import signal
import subprocess
import sys

import pytest
import torch

from spd import loop, spd_train
from spd.cli import main
from spd.report import load_finals, runs_table
from tests.conftest import REPO
from tests.test_distill import (assert_same_weights, read_metrics, smoke_prune, without_times,
                                tiny_teacher, pruned)  # noqa: F401 (fixtures)

# A fine-tuning run long enough to be killed after its first checkpoint (every 3 steps).
FINETUNE = ["--set", "optim.max_steps=12", "--set", "eval_every=4", "--set", "checkpoint_every=3",
            "--set", "data.max_length=64", "--set", "data.train_eval_size=16",
            "--set", "data.batch_size=4"]


def killed(target: str, n: int, program: str, args: list[str]) -> subprocess.CompletedProcess:
    """Run `program args` in a subprocess SIGKILLed at the n-th call of `target`."""
    # The same thread count as this process: summation order, hence bits, depend on it.
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "OMP_NUM_THREADS": str(torch.get_num_threads())}
    proc = subprocess.run([sys.executable, "-m", "tests.killer", target, str(n), program, *args],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == -signal.SIGKILL, (n, proc.stderr[-2000:])
    return proc


def same_result(a, b) -> None:
    """Two runs with the same metrics at every record, the same final metrics and weights."""
    assert without_times(read_metrics(a)) == without_times(read_metrics(b))
    fa, fb = (json.loads((r / "final.json").read_text()) for r in (a, b))
    for key in ("dev", "train_subset", "best_dev_during_training", "steps"):
        assert fa[key] == fb[key], key
    assert_same_weights(a, b)


def finetune_args(model, glue, out) -> list[str]:
    return ["finetune", "--task", "rte", "--model", str(model), "--data-dir", str(glue),
            "--output", str(out), *FINETUNE]


@pytest.fixture(scope="module")
def finetuned(tiny_model_dir, small_glue, tmp_path_factory):
    out = tmp_path_factory.mktemp("finetune") / "rte"
    assert main(finetune_args(tiny_model_dir, small_glue, out)) == 0
    return out


def test_sigkilled_prune_resumes_to_the_uninterrupted_result(pruned, tiny_teacher, small_glue,
                                                              tmp_path):
    out = tmp_path / "killed"
    args = smoke_prune(tiny_teacher, small_glue, out, "--set", "checkpoint_every=6")
    n = random.randint(7, 24)  # the n-th step of 24, after the first checkpoint (step 6)
    killed("torch.optim.AdamW.step", n, "spd", args)
    assert (out / "checkpoint.pt").is_file() and not (out / "final.json").exists()
    assert main([*args, "--resume"]) == 0, n
    final = json.loads((out / "final.json").read_text())
    assert final["resumed_at_steps"] == [(n - 1) // 6 * 6]
    # Each resumed segment records where and from which code it ran, besides the first.
    [segment] = final["environment"]["resumed"]
    assert segment["at_step"] == (n - 1) // 6 * 6 and segment["device"] == "cpu (%d threads)" \
        % torch.get_num_threads() and "git_commit" in segment and "torch" in segment
    same_result(out, pruned)


def test_sigkilled_finetune_resumes_to_the_uninterrupted_result(finetuned, tiny_model_dir,
                                                                 small_glue, tmp_path):
    out = tmp_path / "killed"
    args = finetune_args(tiny_model_dir, small_glue, out)
    n = random.randint(4, 12)  # after the first checkpoint (step 3)
    killed("torch.optim.AdamW.step", n, "spd", args)
    assert (out / "checkpoint.pt").is_file() and not (out / "final.json").exists()
    assert main(args) == 2  # an unfinished run is neither lost nor silently restarted
    assert main([*args, "--resume"]) == 0, n
    assert not (out / "checkpoint.pt").exists()
    assert json.loads((out / "final.json").read_text())["resumed_at_steps"] == [(n - 1) // 3 * 3]
    same_result(out, finetuned)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signalled_finetune_checkpoints_and_resumes(signum, finetuned, tiny_model_dir,
                                                      small_glue, tmp_path, monkeypatch, capsys):
    out = tmp_path / "signalled"
    args = finetune_args(tiny_model_dir, small_glue, out)
    undo = at_optimizer_step(monkeypatch, 5, lambda: os.kill(os.getpid(), signum))
    assert main(args) == 128 + signum
    undo()
    line = [x for x in capsys.readouterr().err.splitlines() if "spd: " in x][-1]
    assert "stopped: SIG" in line and "step 5 of 12" in line and "--resume" in line
    monkeypatch.setattr(loop, "describe", lambda device: "the resuming machine")
    assert main([*args, "--resume"]) == 0
    env = json.loads((out / "final.json").read_text())["environment"]
    assert env["device"] != "the resuming machine"  # the first segment's, as it was
    assert [(s["at_step"], s["device"]) for s in env["resumed"]] == [(5, "the resuming machine")]
    assert f"{env['device']}; from step 5: the resuming machine |" in runs_table(load_finals([out]))
    same_result(out, finetuned)


def test_resume_of_a_folder_without_a_run_is_refused(tiny_model_dir, small_glue, tmp_path,
                                                     capsys):
    out = tmp_path / "new"
    assert main([*finetune_args(tiny_model_dir, small_glue, out), "--resume"]) == 2
    assert "holds no run to resume" in capsys.readouterr().err
    assert not out.exists()


def at_optimizer_step(monkeypatch, n: int, action):
    """Call `action()` as the n-th optimizer step of this process begins; returns the undo."""
    real, calls = torch.optim.AdamW.step, [0]

    def step(self, *a, **k):
        calls[0] += 1
        if calls[0] == n:
            action()
        return real(self, *a, **k)

    monkeypatch.setattr(torch.optim.AdamW, "step", step)
    return lambda: monkeypatch.setattr(torch.optim.AdamW, "step", real)


def _nan_term(terms, total, s_out):
    terms["hidden"] = terms["hidden"] * float("nan")
    return total * float("nan"), terms


def _nan_gradient(terms, total, s_out):
    # value unchanged (0 * sqrt(0)); gradient 0 * inf = nan through the logits
    logits = s_out.logits
    return total + 0 * torch.sqrt(logits - logits.detach()).sum(), terms


@pytest.mark.parametrize("poison, expect", [
    (_nan_term, "non-finite loss term hidden = nan at step 9"),
    (_nan_gradient, "non-finite gradient (norm nan) at step 9"),
])
def test_a_non_finite_loss_or_gradient_stops_and_the_last_checkpoint_resumes(
        poison, expect, pruned, tiny_teacher, small_glue, tmp_path, monkeypatch, capsys):
    out = tmp_path / "nan"
    args = smoke_prune(tiny_teacher, small_glue, out, "--set", "checkpoint_every=6")
    real, calls = spd_train.spd_loss, [0]

    def spd_loss(s_out, t_out, *rest):
        total, terms = real(s_out, t_out, *rest)
        calls[0] += 1
        return poison(terms, total, s_out) if calls[0] == 9 else (total, terms)

    monkeypatch.setattr(spd_train, "spd_loss", spd_loss)
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err
    (line,) = [x for x in err.splitlines() if "spd: " in x]
    assert expect in line and "step 6" in line and "--resume" in line, line
    monkeypatch.setattr(spd_train, "spd_loss", real)
    assert main([*args, "--resume"]) == 0  # from the checkpoint at step 6
    same_result(out, pruned)


@pytest.mark.parametrize("kind, expect", [("loss", "non-finite training loss nan at step 6"),
                                          ("gradient", "non-finite gradient (norm nan) at step 6")])
def test_a_non_finite_finetune_step_names_the_step_and_keeps_the_checkpoint(
        kind, expect, finetuned, tiny_model_dir, small_glue, tmp_path, monkeypatch, capsys):
    out = tmp_path / "nan"
    args = finetune_args(tiny_model_dir, small_glue, out)
    real, calls = loop.load_classifier, [0]

    def poisoned(module, inputs, output):
        if not module.training:
            return output
        calls[0] += 1
        if calls[0] != 6:
            return output
        if kind == "loss":
            return output * float("nan")
        w = module.weight  # nan reaches the classifier's weight gradient only
        return output + 0 * torch.sqrt(w - w.detach()).sum()

    def load_classifier(name, task, *args, **kwargs):
        model = real(name, task, *args, **kwargs)
        model.classifier.register_forward_hook(poisoned)
        return model

    monkeypatch.setattr(loop, "load_classifier", load_classifier)
    assert main(args) == 2
    (line,) = [x for x in capsys.readouterr().err.splitlines() if "spd: " in x]
    assert expect in line and "step 3" in line, line
    if kind == "gradient":
        assert "first in classifier.weight" in line
    monkeypatch.setattr(loop, "load_classifier", real)
    assert main([*args, "--resume"]) == 0
    same_result(out, finetuned)


def runner(tiny_model_dir, small_glue, results) -> list[str]:
    return ["components", "--profile", "smoke", "--tasks", "rte", "--seeds", "1",
            "--methods", "spd", "gmp", "--model", str(tiny_model_dir), "--data-dir",
            str(small_glue), "--results", str(results)]


def test_a_grid_killed_between_and_inside_cells_ends_as_an_uninterrupted_one(
        tiny_model_dir, small_glue, tmp_path):
    from ablations import run

    reference, results = tmp_path / "reference", tmp_path / "killed"
    assert run.main(runner(tiny_model_dir, small_glue, reference)) == 0
    args = runner(tiny_model_dir, small_glue, results)
    # Calls of run_claimed: teacher, cell 1, teacher (done), cell 2: killed as cell 2 begins.
    killed("ablations.run.run_claimed", 4, "ablations", args)
    cells = run.grid(run.parse(args))
    assert (cells[0].path(results) / "final.json").is_file()
    assert not (cells[1].path(results) / "config.json").exists()
    # Then inside cell 2 (24 steps, a checkpoint at 12): the first optimizer steps are its own.
    n = random.randint(14, 24)
    killed("torch.optim.AdamW.step", n, "ablations", args)
    assert (cells[1].path(results) / "checkpoint.pt").is_file(), n
    assert run.main(args) == 0
    for cell in cells:
        same_result(cell.path(results), cell.path(reference))
    assert json.loads((cells[1].path(results) / "final.json").read_text())[
        "resumed_at_steps"] == [12]


@pytest.mark.parametrize("damage", ["truncated", "empty"])
def test_a_damaged_result_file_is_refused_by_tables_and_report(damage, tmp_path, capsys):
    from ablations import run, tables
    from tests.test_ablations import GRID, SPD, fake_results

    fake_results(tmp_path, {"spd": SPD})
    folder = next(c for c in run.grid(run.parse(GRID)) if c.method == "spd").path(tmp_path)
    final, record = folder / "final.json", folder / "record.json"
    for path in (final, record):  # tables read records; spd report reads final.json
        text = path.read_text()
        path.write_text(text[:len(text) // 2] if damage == "truncated" else "")
    capsys.readouterr()
    assert tables.main([*GRID, "--results", str(tmp_path), "--out", str(tmp_path / "t")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(record) in err and "not valid JSON" in err, err
    assert not (tmp_path / "t").exists()  # no table made from what could be read
    assert main(["report", str(final.parent)]) == 2
    assert "not valid JSON" in capsys.readouterr().err


def test_a_checkpoint_of_another_configuration_is_refused():
    from spd import resume
    from spd.presets import spd_config
    from spd.overrides import config_hash
    from spd.errors import SpdError

    cfg = spd_config("rte", "t", "smoke")
    resume.check_config({}, cfg)  # written before checkpoints carried the hash: accepted
    resume.check_config({"config_hash": config_hash(cfg)}, cfg)
    other = spd_config("rte", "t", "smoke", ["seed=7"])
    with pytest.raises(SpdError, match=f"config hash {config_hash(other)}, this run "
                                       f"{config_hash(cfg)}"):
        resume.check_config({"config_hash": config_hash(other)}, cfg)


def test_a_disk_full_during_a_checkpoint_keeps_the_last_one_and_leaves_no_temp_file(
        pruned, tiny_teacher, small_glue, tmp_path, monkeypatch, capsys):
    """The second checkpoint's fsync fails with ENOSPC: exit 2 with one line, the first
    checkpoint (step 6) stays whole, no temporary file is left, and --resume finishes the run
    to the uninterrupted result."""
    from spd import rundir

    out = tmp_path / "full"
    args = smoke_prune(tiny_teacher, small_glue, out, "--set", "checkpoint_every=6")
    real_fsync, seen = os.fsync, []

    def fsync(fd):
        if os.readlink(f"/proc/self/fd/{fd}").endswith(".checkpoint.pt.tmp"):
            seen.append(fd)
            if len(seen) == 2:
                raise OSError(28, "No space left on device")
        return real_fsync(fd)

    monkeypatch.setattr(rundir.os, "fsync", fsync)
    capsys.readouterr()
    assert main(args) == 2
    monkeypatch.setattr(rundir.os, "fsync", real_fsync)
    err = [x for x in capsys.readouterr().err.splitlines() if x.startswith("spd: error")]
    assert len(err) == 1 and "No space left on device" in err[0] and "--resume" in err[0]
    assert rundir.load_checkpoint(out)["progress"]["step"] == 6
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    assert main([*args, "--resume"]) == 0
    same_result(out, pruned)
