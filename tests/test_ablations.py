"""ablations/: the registry, the runner (skip finished cells, locks, shards) on tiny grids."""
import json
import os
import signal
import subprocess
import sys

import pytest

from ablations import registry, run
from tests.conftest import REPO


def test_every_grid_has_unique_cells_valid_configs_and_known_references():
    for name, make in registry.ABLATIONS.items():
        for profile in registry.PROFILES:
            cells = make(registry.DEFAULT_TASKS[name], [0, 1], profile)
            labels = {c.label for c in cells}
            assert len({(c.task, c.label, c.seed) for c in cells}) == len(cells), name
            assert len({c.path() for c in cells}) == len(cells), name  # one folder per cell
            assert all(c.reference is None or c.reference in labels for c in cells), name
            for c in cells:
                cfg = run.cell_config(c, registry.RESULTS, None)  # every override is valid
                assert cfg["seed"] == c.seed


def test_methods_mean_what_their_names_say():
    def cfg(method, profile="cpu"):
        return run.cell_config(registry.Cell("mrpc", method, 0.9, 0, profile, "x"),
                               registry.RESULTS, None)

    spd, gmp = cfg("spd"), cfg("gmp")
    assert gmp["replace"] == {"schedule": "constant", "p_0": 1.0, "slope": 0.0}
    assert gmp["loss"] | {"hidden": 1.0, "attention": 1.0, "prediction": 1.0, "hard": 0.0} \
        == spd["loss"] and gmp["loss"]["hard"] == 1.0
    assert gmp["prune"] == spd["prune"] and gmp["stages"] == spd["stages"]  # same schedule
    assert cfg("one_shot")["prune"]["updates"] == 0
    readme = cfg("official_readme")
    assert readme["stages"]["finetune"] == 0 and readme["replace"]["slope"] == 0
    total = sum(spd["stages"][k] for k in ("prune", "graft", "finetune"))
    assert sum(readme["stages"][k] for k in ("prune", "graft", "finetune")) == total
    # linear: from 0.5 to 1 at the end of the graft stage (mrpc: 115 steps per epoch at 32).
    linear = cfg("linear")["replace"]
    graft_end = round((spd["stages"]["prune"] + spd["stages"]["graft"]) * 115)
    assert linear["p_0"] + linear["slope"] * graft_end == pytest.approx(1.0, abs=1e-5)


def runner_args(tiny_model_dir, small_glue, results, *extra) -> list[str]:
    return ["components", "--profile", "smoke", "--tasks", "rte", "--seeds", "1",
            "--methods", "spd", "gmp", "--model", str(tiny_model_dir), "--data-dir",
            str(small_glue), "--results", str(results), *extra]


def runner_lines(folder) -> list[dict]:
    return [json.loads(x) for x in (folder / run.RUNNER_LOG).read_text().splitlines()]


def test_runner_runs_each_cell_then_skips_finished_ones(tiny_model_dir, small_glue, tmp_path,
                                                        capsys):
    args = runner_args(tiny_model_dir, small_glue, tmp_path)
    assert run.main([*args, "--dry-run"]) == 0
    assert capsys.readouterr().out.count("todo") == 2
    assert run.main(args) == 0
    assert "2 ran" in capsys.readouterr().out
    cells = run.grid(run.parse(args))
    for cell in cells:
        final = json.loads((cell.path(tmp_path) / "final.json").read_text())
        assert final["seed"] == 0 and final["teacher"] == str(registry.teacher_dir("rte", "smoke",
                                                                                   tmp_path))
    assert run.main(args) == 0
    assert "2 done" in capsys.readouterr().out
    assert all(len(runner_lines(c.path(tmp_path))) == 1 for c in cells)
    teacher = registry.teacher_dir("rte", "smoke", tmp_path)
    assert len(runner_lines(teacher)) == 1  # one teacher for every method of the task
    assert run.main([*args, "--dry-run"]) == 0
    assert capsys.readouterr().out.count("done") == 2


def test_two_concurrent_runners_run_each_cell_once(tiny_model_dir, small_glue, tmp_path):
    args = runner_args(tiny_model_dir, small_glue, tmp_path)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-m", "ablations.run", *args], cwd=REPO, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    for cell in run.grid(run.parse(args)):
        folder = cell.path(tmp_path)
        assert len(runner_lines(folder)) == 1, folder  # claimed and run by exactly one runner
        json.loads((folder / "final.json").read_text())  # whole, valid JSON
    assert len(runner_lines(registry.teacher_dir("rte", "smoke", tmp_path))) == 1


def test_a_lock_left_by_a_killed_runner_is_recovered(tmp_path):
    folder = tmp_path / "cell"
    code = ("import os, signal, sys; from pathlib import Path; from ablations.run import claim\n"
            "with claim(Path(sys.argv[1])) as mine:\n"
            "    assert mine\n"
            "    os.kill(os.getpid(), signal.SIGKILL)\n")
    proc = subprocess.run([sys.executable, "-c", code, str(folder)], cwd=REPO)
    assert proc.returncode == -signal.SIGKILL
    assert (folder / run.LOCK).is_file()  # the lock file is left behind ...
    with run.claim(folder) as mine:  # ... but the dead runner's lock is not
        assert mine
        with run.claim(folder) as other:  # while held, any other claim is refused
            assert not other


def test_shards_split_the_grid_without_overlap_or_loss():
    args = run.parse(["sparsity", "--seeds", "3"])
    every = run.grid(args)
    parts = [run.grid(run.parse(["sparsity", "--seeds", "3", "--shard", f"{i}/4"]))
             for i in range(4)]
    assert sorted(c.path() for p in parts for c in p) == sorted(c.path() for c in every)
    assert len(every) == 2 * 6 * 3


@pytest.mark.parametrize("bad, word", [(["nope"], "'nope'"),
                                       (["sparsity", "--shard", "4/4"], "'4/4'"),
                                       (["sparsity", "--shard", "x"], "'x'"),
                                       (["sparsity", "--seeds", "0"], "0"),
                                       (["sparsity", "--profile", "gpu"], "'gpu'"),
                                       (["sparsity", "--tasks", "mnli2"], "'mnli2'"),
                                       (["sparsity", "--methods", "magic"], "'magic'")])
def test_bad_runner_input_is_one_line_and_exit_2(bad, word, capsys):
    assert run.main(bad) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and word in err and "Traceback" not in err
