"""ablations/: the registry, the runner (skip finished cells, locks, shards) on tiny grids."""
import dataclasses
import json
import math
import os
import signal
import subprocess
import sys

import pytest

from ablations import registry, run, stats, tables
from spd import records, rundir
from spd.overrides import to_dict
from tests.conftest import REPO, table_csv_rows


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
                assert cfg.seed == c.seed


def test_methods_mean_what_their_names_say():
    def cfg(method, profile="cpu"):
        return to_dict(run.cell_config(registry.Cell("mrpc", method, 0.9, 0, profile, "x"),
                                       registry.RESULTS, None))

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


@pytest.mark.parametrize("grid, base", [("gmp_lr", "gmp"), ("movement_lr", "movement")])
def test_an_lr_grid_changes_the_learning_rate_alone(grid, base):
    """GMP's and movement's lr are chosen on dev as SPD's was; each row is the method with only
    optim.lr changed, and the row at the profile's lr is the components grid's cell itself
    (reused, not rerun)."""
    cells = registry.ABLATIONS[grid](["stsb"], [0], "cpu3")
    ref = to_dict(run.cell_config(cells[0], registry.RESULTS, None))
    assert cells[0].method == base and ref["optim"]["lr"] == 1e-3
    lrs = []
    for c in cells[1:]:
        cfg = to_dict(run.cell_config(c, registry.RESULTS, None))
        lrs.append(cfg["optim"]["lr"])
        assert cfg | {"optim": cfg["optim"] | {"lr": 1e-3}} == ref  # nothing else differs
    assert sorted(lrs) == [1e-4, 3e-4]


@pytest.mark.parametrize("profile", registry.PROFILES)
def test_the_components_grid_runs_movement_at_the_lr_chosen_for_it_where_one_was(profile):
    movement = registry.Cell("stsb", "movement", 0.9, 0, profile, "x")
    want = to_dict(run.cell_config(movement, registry.RESULTS, None))
    if profile in registry.MOVEMENT_LR:
        want["optim"]["lr"] = float(registry.MOVEMENT_LR[profile])
    cells = [c for c in registry.ABLATIONS["components"](["stsb"], [0], profile)
             if c.label.startswith("movement")]
    assert len(cells) == 1
    assert to_dict(run.cell_config(cells[0], registry.RESULTS, None)) == want


@pytest.mark.parametrize("profile", registry.PROFILES)
def test_the_grids_run_gmp_at_the_lr_chosen_for_it_where_one_was(profile):
    """GMP's rows of components, sparsity and overfitting are GMP at the lr that the gmp_lr
    grid chose for the profile, or at the profile's own lr where none was chosen."""
    gmp = registry.Cell("stsb", "gmp", 0.9, 0, profile, "x")
    want = to_dict(run.cell_config(gmp, registry.RESULTS, None))
    if profile in registry.GMP_LR:
        want["optim"]["lr"] = float(registry.GMP_LR[profile])
    for name in ("components", "sparsity", "overfitting"):
        cells = [c for c in registry.ABLATIONS[name](["stsb"], [0], profile)
                 if c.sparsity == 0.9 and "GMP" in c.label and "lr" not in c.label]
        assert len(cells) == 1, name
        assert to_dict(run.cell_config(cells[0], registry.RESULTS, None)) == want, name


@pytest.mark.parametrize("task", ["mrpc", "stsb"])
def test_every_overfitting_run_is_evaluated_at_least_ten_times(task):
    """Issue 23: train-subset and dev curves at ten or more evaluations per run."""
    from spd.tasks import get_task

    per_epoch = math.ceil(get_task(task).sizes["train"] / 32)
    for cell in registry.ABLATIONS["overfitting"]([task], [0], "cpu3"):
        cfg = run.cell_config(cell, registry.RESULTS, None)
        assert cfg.data.batch_size == 32
        if cell.kind == "finetune":
            steps = cfg.optim.epochs * per_epoch
        else:
            st = cfg.stages
            assert st.unit == "epochs" and st.max_steps == 0
            steps = round((st.prune + st.graft + st.finetune) * per_epoch)
        evaluations = math.ceil(steps / (cfg.eval_every or per_epoch))
        assert evaluations >= 10, (cell.key, evaluations)


def runner_args(tiny_model_dir, small_glue, results, *extra) -> list[str]:
    return ["components", "--profile", "smoke", "--tasks", "rte", "--seeds", "1",
            "--methods", "spd", "gmp", "--model", str(tiny_model_dir), "--data-dir",
            str(small_glue), "--results", str(results), *extra]


def runner_lines(folder) -> list[dict]:
    return [json.loads(x) for x in (folder / run.RUNNER_LOG).read_text().splitlines()]


def test_runner_runs_each_cell_then_skips_finished_ones(tiny_model_dir, small_glue, tmp_path,
                                                        capsys, monkeypatch):
    import spd.cli

    def no_cli(*args, **kwargs):
        raise AssertionError("the runner calls spd's Python API, not its command line")

    monkeypatch.setattr(spd.cli, "build_parser", no_cli)  # what `spd.cli.main` parses with
    args = runner_args(tiny_model_dir, small_glue, tmp_path)
    assert run.main([*args, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.count("todo ") == 2 and out.splitlines()[-1] == "ablations: 2 todo"
    assert run.main(args) == 0
    assert "2 ran" in capsys.readouterr().out
    cells = run.grid(run.parse(args))
    for cell in cells:
        final = json.loads((cell.path(tmp_path) / "final.json").read_text())
        assert final["seed"] == 0 and final["teacher"] == str(registry.teacher_dir("rte", "smoke",
                                                                                   tmp_path))
        assert final["command"] == ["spd", *run.spd_args(cell, tmp_path, str(small_glue),
                                                         str(tiny_model_dir))]
        rec = records.read(cell.path(tmp_path))
        assert rec["recipe"] == "smoke" and rec["rows"] == [
            {"grid": "components", "label": cell.label, "reference": cell.reference,
             "method": cell.method}]
    assert run.main(args) == 0
    assert "2 done" in capsys.readouterr().out
    assert all(len(runner_lines(c.path(tmp_path))) == 1 for c in cells)
    teacher = registry.teacher_dir("rte", "smoke", tmp_path)
    assert len(runner_lines(teacher)) == 1  # one teacher for every method of the task
    assert run.main([*args, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.count("done ") == 2 and out.splitlines()[-1] == "ablations: 2 done"


def test_a_cell_of_a_replaced_teacher_is_stale_not_done_nor_rerun(tiny_model_dir, small_glue,
                                                                  tmp_path, capsys):
    args = runner_args(tiny_model_dir, small_glue, tmp_path)
    assert run.main(args) == 0
    capsys.readouterr()
    teacher = registry.teacher_dir("rte", "smoke", tmp_path)
    final = rundir.read_json(teacher / "final.json")
    rundir.write_json(teacher / "final.json", {**final, "dev": {"accuracy": 0.75}})
    assert run.main(args) == 1
    out = capsys.readouterr().out
    assert out.count(": stale") == 2 and "2 stale" in out and "teacher" in out
    assert all(len(runner_lines(c.path(tmp_path))) == 1 for c in run.grid(run.parse(args)))
    assert run.main([*args, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.count("stale ") == 2 and out.splitlines()[-1] == "ablations: 2 stale"
    out_dir = tmp_path / "tables"  # nor counted in a table
    assert tables.main([*args, "--out", str(out_dir)]) == 0
    assert (out_dir / "components-smoke.md").read_text().count("| accuracy | 0 |") == 2


def test_a_committed_teacher_without_its_weights_is_refit_from_its_recorded_recipe(
        tiny_model_dir, small_glue, tmp_path, capsys):
    """A fresh clone has the teachers' result files but not their weights (never in git): the
    runner fits each again from its recorded config, keeps the committed final.json, and
    takes the weights only if the refit is the same teacher (its dev metrics)."""
    import shutil

    args = runner_args(tiny_model_dir, small_glue, tmp_path)
    assert run.main(args) == 0
    teacher = registry.teacher_dir("rte", "smoke", tmp_path)
    committed = (teacher / "final.json").read_text()
    cells = run.grid(run.parse(args))
    for cell in cells:
        shutil.rmtree(cell.path(tmp_path))
    shutil.rmtree(teacher / "model")
    capsys.readouterr()
    assert run.main(args) == 0
    out = capsys.readouterr().out
    assert "teacher refit" in out and "2 ran" in out
    assert (teacher / "model").is_dir() and (teacher / "final.json").read_text() == committed
    assert not teacher.with_name("rte.refit").exists()
    # a refit that is another teacher is refused and kept beside it: nothing is overwritten
    for cell in cells:
        shutil.rmtree(cell.path(tmp_path))
    shutil.rmtree(teacher / "model")
    final = rundir.read_json(teacher / "final.json")
    rundir.write_json(teacher / "final.json", {**final, "dev": {"accuracy": 0.123}})
    capsys.readouterr()
    assert run.main(args) == 1
    got = capsys.readouterr()
    assert "teacher refit failed" in got.out and not (teacher / "model").exists()
    errors = [line for line in got.err.splitlines() if "is another teacher" in line]
    assert len(errors) == 1 and str(teacher) in errors[0]
    assert (teacher.with_name("rte.refit") / "model").is_dir()
    assert rundir.read_json(teacher / "final.json")["dev"] == {"accuracy": 0.123}


# The MRPC teacher refit from its recipe on an AVX2-only CPU (its first fit ran on another):
# the same dev predictions, the loss equal to 6 significant digits, not to the last bit.
FIRST_FIT = {"accuracy": 0.8161764705882353, "f1": 0.8686514886164624, "loss": 0.47402800824127944}
REFIT = {**FIRST_FIT, "loss": 0.47402817536802855}


@pytest.mark.parametrize("current, same", [
    (FIRST_FIT, True),
    (REFIT, True),  # float rounding of another machine: the same teacher
    ({**FIRST_FIT, "accuracy": 0.8161764705882353 - 1 / 408}, False),  # one dev example fewer right
    ({**FIRST_FIT, "loss": 0.4745}, False),
    ({"accuracy": 0.8161764705882353, "f1": 0.8686514886164624}, False),  # a metric missing
])
def test_a_teacher_is_the_same_when_its_dev_metrics_agree_to_float_rounding(current, same):
    assert records.same_teacher(FIRST_FIT, current) is same
    assert records.same_teacher(current, FIRST_FIT) is same


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
    assert len(every) == 2 * len(registry.SPARSITIES) * 3


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


SPD = {0: 0.80, 1: 0.82, 2: 0.84}
GMP = {0: 0.70, 1: 0.75, 2: 0.71}
GRID = ["components", "--profile", "smoke", "--tasks", "mrpc", "--seeds", "3"]


def write_cell(results, cell, dev: dict, train: dict, evals: list[dict] | None = None,
               grid: str = "components"):
    """A finished cell's config.json, final.json (and metrics.jsonl: `evals`) and the record
    the runner makes of them, distilled from its task's teacher (whose final.json this writes
    too)."""
    teacher, teacher_dev = registry.teacher_dir(cell.task, cell.profile, results), {"f1": 0.86}
    teacher.mkdir(parents=True, exist_ok=True)
    rundir.write_json(teacher / "final.json", {"dev": teacher_dev, "main_metric": "f1"})
    folder = cell.path(results)
    folder.mkdir(parents=True, exist_ok=True)
    rundir.write_json(folder / "config.json", to_dict(run.cell_config(cell, results, None)))
    rundir.write_json(folder / "final.json", {
        "task": cell.task, "seed": cell.seed, "main_metric": "f1", "dev": dev,
        "train_subset": train, "teacher": str(teacher), "teacher_dev": teacher_dev,
        "target_sparsity": cell.sparsity, "majority_dev": {"f1": 0.75, "accuracy": 0.684},
        "environment": {"git_commit": "abc123", "device": "cpu"}})
    if evals:
        rundir.write_jsonl(folder / "metrics.jsonl", evals)
    run.record(cell, grid, results)
    return folder


def fake_results(results, values: dict) -> None:
    """Finished cells with chosen dev F1 (train F1 = 1)."""
    for cell in run.grid(run.parse(GRID)):
        seeds = values.get(cell.method, {})
        if cell.seed in seeds:
            write_cell(results, cell, {"f1": seeds[cell.seed], "accuracy": 0.5}, {"f1": 1.0})


def table_rows(tmp_path) -> dict:
    out = tmp_path / "tables"
    assert tables.main([*GRID, "--results", str(tmp_path), "--out", str(out)]) == 0
    return {r["method"]: r for r in table_csv_rows(out / "components-smoke.csv")}


def test_table_numbers_equal_hand_computed_ones(tmp_path):
    fake_results(tmp_path, {"spd": SPD, "gmp": GMP, "one_shot": {1: 0.9}})
    rows = table_rows(tmp_path)
    spd, gmp = rows["SPD"], rows["no distillation (GMP, hard labels)"]
    assert spd["n"] == "3" and float(spd["mean"]) == pytest.approx(0.82)
    assert float(spd["sd"]) == pytest.approx(0.02)
    half = 4.302653 * 0.02 / 3 ** 0.5  # t_{0.975, 2} sd / sqrt(n)
    assert float(spd["ci_low"]) == pytest.approx(0.82 - half, abs=1e-6)
    assert float(spd["ci_high"]) == pytest.approx(0.82 + half, abs=1e-6)
    # Paired differences -0.10, -0.07, -0.13: t = -0.1 / (0.03 / sqrt 3); with 2 degrees of
    # freedom the two-sided p is 1 - |t| / sqrt(t^2 + 2).
    t = 0.1 / (0.03 / 3 ** 0.5)
    assert float(gmp["p"]) == pytest.approx(1 - t / (t * t + 2) ** 0.5, rel=1e-3)
    assert gmp["vs"] == "SPD" and spd["p"] == "" and spd["vs"] == ""
    one = rows["one-shot pruning"]  # one seed: a mean, no spread, no test
    assert one["n"] == "1" and one["sd"] == one["ci_low"] == one["p"] == ""
    assert one["best"] == "1" and spd["best"] == "0"  # the best mean of the column
    empty = rows["logits-only distillation"]  # no finished seed: an empty row, not a number
    assert empty["n"] == "0" and empty["mean"] == ""
    # The smallest paired difference 3 seeds could see at 80% power (two-sided 0.05): the
    # effect size 3.264 (noncentral t; tests/test_stats.py checks it by simulation) times the
    # sd 0.03 of the differences; with one comparison in the table Holm's p is the raw p.
    assert float(gmp["detectable"]) == pytest.approx(3.264 * 0.03, rel=1e-3)
    assert gmp["p_holm"] == gmp["p"] and spd["detectable"] == spd["p_holm"] == ""
    # GMP's CI [0.64, 0.80] reaches the constant prediction's F1 (0.75); SPD's [0.77, 0.87] not
    assert gmp["at_baseline"] == "1" and spd["at_baseline"] == "0"


def test_holm_corrects_across_the_comparisons_of_a_table_and_the_marks_are_explained(tmp_path):
    fake_results(tmp_path, {"spd": SPD, "gmp": GMP, "one_shot": {0: 0.79, 1: 0.83, 2: 0.80}})
    rows = table_rows(tmp_path)
    gmp, one = rows["no distillation (GMP, hard labels)"], rows["one-shot pruning"]
    p = sorted([float(gmp["p"]), float(one["p"])])
    assert sorted([float(gmp["p_holm"]), float(one["p_holm"])]) == pytest.approx(
        [2 * p[0], max(2 * p[0], p[1])], rel=1e-2)  # 3 significant digits in the file
    md = (tmp_path / "tables" / "components-smoke.md").read_text()
    assert "| 0.7200 † |" in md  # GMP's mean, at the constant prediction
    assert "Holm" in md and "80% power" in md and "†" in md


def test_the_sparsity_table_gives_the_train_dev_gap_with_intervals_and_tests(tmp_path):
    # The gap against sparsity, with and without distillation, over two seeds: SPD dev 0.7,
    # train 0.9 and 0.8 (gaps 0.2, 0.1); GMP dev 0.6 and 0.65, train 0.95 and 1.0 (gaps 0.35).
    argv = ["sparsity", "--profile", "smoke", "--tasks", "mrpc", "--seeds", "2"]
    dev, train = {"spd": (0.7, 0.7), "gmp": (0.6, 0.65)}, {"spd": (0.9, 0.8), "gmp": (0.95, 1.0)}
    for cell in run.grid(run.parse(argv)):
        write_cell(tmp_path, cell, {"f1": dev[cell.method][cell.seed]},
                   {"f1": train[cell.method][cell.seed]}, grid="sparsity")
    out = tmp_path / "tables"
    assert tables.main([*argv, "--results", str(tmp_path), "--out", str(out)]) == 0
    got = {(r["method"], r["quantity"]): r for r in table_csv_rows(out / "sparsity-smoke.csv")}
    spd, gmp = got["SPD s0.9", "gap"], got["GMP s0.9", "gap"]
    assert float(spd["mean"]) == pytest.approx(0.15) and float(gmp["mean"]) == pytest.approx(0.35)
    assert float(got["GMP s0.9", "train"]["mean"]) == pytest.approx(0.975)
    half = 12.706205 * 0.1 / 2 ** 0.5 / 2 ** 0.5  # t_{0.975, 1} sd / sqrt(n); sd = 0.1 / sqrt 2
    assert float(spd["ci_high"]) == pytest.approx(0.15 + half, abs=1e-6)
    # Paired gap differences 0.15 and 0.25: t = 0.2 / (0.0707 / sqrt 2) = 4 with one degree of
    # freedom, where the two-sided p is 1 - 2 atan(t) / pi.
    assert gmp["vs"] == "SPD s0.9"
    assert float(gmp["p"]) == pytest.approx(1 - 2 * math.atan(4) / math.pi, abs=5e-4)  # 3 places
    assert spd["best"] == "1" and gmp["best"] == "0"  # the smaller gap is the better


def test_p_is_left_empty_and_explained_where_every_seed_gives_the_same_result(tmp_path):
    # All RTE cells at 90% end at the majority class: identical pairs, an undefined t-test.
    fake_results(tmp_path, {"spd": SPD, "no_replacing": SPD})
    assert table_rows(tmp_path)["no progressive replacing (p = 1)"]["p"] == ""
    md = (tmp_path / "tables" / "components-smoke.md").read_text()
    assert ("empty p: fewer than two shared seeds, or the same difference between the rows on "
            "every seed") in md


def test_p_is_left_empty_where_the_paired_differences_differ_only_by_rounding():
    # Gaps (train - dev) of two rows a constant apart differ in the last bits from seed to
    # seed (0.1 + 0.2 != 0.3 in floats): a t-test on them reports p near 0, a false finding.
    assert stats.paired_p({0: 0.1 + 0.2, 1: 0.3}, {0: 0.0, 1: 0.0}) is None
    # Differences 0.3 and 0.2: t = 5 with one degree of freedom, p = 1 - 2 atan(t) / pi.
    assert stats.paired_p({0: 0.3, 1: 0.2}, {0: 0.0, 1: 0.0}) == pytest.approx(
        1 - 2 * math.atan(5) / math.pi)


def test_tables_are_byte_identical_when_regenerated_and_name_their_provenance(tmp_path):
    fake_results(tmp_path, {"spd": SPD, "gmp": GMP})
    out = tmp_path / "tables"
    args = [*GRID, "--results", str(tmp_path), "--out", str(out)]
    assert tables.main(args) == 0
    first = {p.name: p.read_bytes() for p in out.iterdir()}
    assert tables.main(args) == 0
    assert {p.name: p.read_bytes() for p in out.iterdir()} == first
    assert set(first) == {"components-smoke.md", "components-smoke.tex", "components-smoke.csv",
                          "components-smoke.meta.json"}
    md = first["components-smoke.md"].decode()
    assert "python -m ablations.tables components --profile smoke" in md and "--out" not in md
    assert "abc123" in md and "cpu" in md and "ttest_rel" in md and "**0.8200**" in md
    assert r"\textbf{0.8200}" in first["components-smoke.tex"].decode()


def test_the_footer_names_the_hardware_and_commit_of_every_resumed_segment(tmp_path):
    fake_results(tmp_path, {"spd": SPD})
    cell = next(c for c in run.grid(run.parse(GRID)) if c.method == "spd" and c.seed == 0)
    final = rundir.read_json(cell.path(tmp_path) / "final.json")
    final["environment"]["resumed"] = [{"at_step": 3, "device": "cuda (H100)",
                                        "git_commit": "def456"}]
    rundir.write_json(cell.path(tmp_path) / "final.json", final)
    run.record(cell, "components", tmp_path)
    out = tmp_path / "tables"
    assert tables.main([*GRID, "--results", str(tmp_path), "--out", str(out)]) == 0
    md = (out / "components-smoke.md").read_text()
    assert "runs at commit abc123, def456;" in md and "hardware: cpu; cuda (H100)." in md


def test_a_changed_preset_keeps_the_rows_of_the_runs_made_with_the_old_one(tmp_path,
                                                                            monkeypatch):
    """Tables read records, not today's presets: changing the recipe a grid runs adds rows
    when new runs land and never empties the old ones."""
    fake_results(tmp_path, {"spd": SPD, "gmp": GMP})
    before = table_rows(tmp_path)
    from spd import presets

    smoke = presets.SPD_PRESETS["smoke"]
    monkeypatch.setitem(presets.SPD_PRESETS, "smoke",
                        lambda c: dataclasses.replace(smoke(c), optim=dataclasses.replace(smoke(c).optim, lr=1.0)))
    cell = next(c for c in run.grid(run.parse(GRID)) if c.method == "spd")
    assert run.finished_state(cell.path(tmp_path), run.cell_config(cell, tmp_path, None)) is None
    assert table_rows(tmp_path) == before and before["SPD"]["n"] == "3"


def test_a_run_whose_teacher_was_replaced_is_not_counted(tmp_path):
    fake_results(tmp_path, {"spd": SPD})
    teacher = registry.teacher_dir("mrpc", "smoke", tmp_path)
    rundir.write_json(teacher / "final.json", {"dev": {"f1": 0.9}})
    assert table_rows(tmp_path)["SPD"]["n"] == "0"


def test_a_row_only_the_records_hold_is_kept_and_the_footer_names_the_folder_read(tmp_path):
    fake_results(tmp_path, {"spd": SPD})
    cell = next(c for c in run.grid(run.parse(GRID)) if c.method == "spd" and c.seed == 1)
    records.write(cell.path(tmp_path), row={"grid": "components", "label": "a retired row",
                                            "reference": None, "method": "retired"})
    rows = table_rows(tmp_path)
    assert rows["a retired row"]["n"] == "1" and rows["SPD"]["n"] == "3"
    md = (tmp_path / "tables" / "components-smoke.md").read_text()
    assert f"under `{tmp_path}/cells/smoke/` alone" in md


def test_sparsity_and_overfitting_figures_are_drawn_from_results(tmp_path):
    for name, grid_args in (("sparsity", ["--seeds", "2"]), ("overfitting", ["--seeds", "1"])):
        argv = [name, "--profile", "smoke", "--tasks", "mrpc", *grid_args]
        for i, cell in enumerate(run.grid(run.parse(argv))):
            dev = 0.5 + 0.01 * i
            write_cell(tmp_path, cell, {"f1": dev}, {"f1": 0.9}, grid=name, evals=[
                {"step": e, "epoch": e, "dev": {"f1": dev}, "train_subset": {"f1": 0.6 + 0.1 * e}}
                for e in (1, 2, 3)])
        out = tmp_path / "tables"
        assert tables.main([*argv, "--results", str(tmp_path), "--out", str(out)]) == 0
        assert "| f1 | 0 |" not in (out / f"{name}-smoke.md").read_text()  # every cell counted
        for ext in ("png", "pdf"):
            assert (tmp_path / "figures" / f"{name}-smoke.{ext}").stat().st_size > 1000


def test_figures_name_a_series_by_its_rows_label_not_its_method_key():
    """GMP under cpu3 is method gmp_lr3e-4; its curves are still "GMP", one per sparsity."""
    from ablations import figures

    cell = registry.Cell("stsb", "gmp_lr3e-4", 0.9, 0, "cpu3", "GMP s0.9")
    assert figures.series(cell) == "GMP"
    assert figures.series(dataclasses.replace(cell, method="spd", sparsity=0.95,
                                              label="SPD s0.95")) == "SPD"
    dense = dataclasses.replace(cell, method="dense", sparsity=None, label="dense fine-tuning")
    assert figures.series(dense) == "dense fine-tuning"


def test_the_sparsity_figure_marks_the_teacher_its_cells_distilled_from(tmp_path):
    from ablations import figures

    fake_results(tmp_path, {"spd": SPD, "gmp": GMP})
    cells = run.grid(run.parse(GRID))
    # write_cell's teacher: dev F1 0.86, recorded by every cell (GMP starts from it too).
    _, finals = tables.collect("components", cells, tmp_path)
    assert figures.teacher_metric(finals) == {"mrpc": 0.86}
    assert figures.teacher_metric({}) == {}


@pytest.mark.parametrize("name", ["schedules", "ablations", "overfitting", "theory"])
def test_notebooks_run_headless_on_a_fixture_of_results(name, tmp_path, monkeypatch):
    import nbclient
    import nbformat

    fake_results(tmp_path, {"spd": SPD, "gmp": GMP})
    spd0 = next(c for c in run.grid(run.parse(GRID)) if c.method == "spd" and c.seed == 0)
    probe = {"p": 0.5, "D": {"measured": 1.0, "bound": 2.0, "holds": True}}
    rundir.write_jsonl(spd0.path(tmp_path) / "metrics.jsonl",
                       [{"step": 8, "dev": {"f1": 0.8}, "train_subset": {"f1": 0.9},
                         "epoch": 1, "theory": probe}])
    monkeypatch.setenv("SPD_RESULTS", str(tmp_path))
    monkeypatch.setenv("SPD_PROFILE", "smoke")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    nb = nbformat.read(REPO / "notebooks" / f"{name}.ipynb", as_version=4)
    # The documented way (`jupyter nbconvert --execute` or `jupyter lab notebooks/`) starts the
    # kernel in notebooks/: the notebook must find the repository root itself.
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(REPO / "notebooks")}}).execute()
    text = "".join(o.get("text", "") + str(o.get("data", {}).get("text/markdown", ""))
                   for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert not any(o.get("output_type") == "error" for c in nb.cells for o in c.get("outputs", []))
    expected = {"schedules": "stages end at", "ablations": "0.8200",
                "overfitting": "dense fine-tuning", "theory": "bound 2"}[name]
    assert expected in text, text[:2000]


def test_committed_tables_regenerate_byte_identically_from_the_committed_results(tmp_path,
                                                                                 monkeypatch):
    """Each table in ablations/tables/ names the command that made it; rerun from the repository
    root on the committed results, that command writes the same bytes."""
    import re
    import shlex

    monkeypatch.chdir(REPO)  # the results folder is relative to the repository root
    committed = sorted((REPO / "ablations" / "tables").glob("*.md"))
    assert committed, "no committed ablation tables"
    for md in committed:
        command = re.search(r"Generated by `python -m ablations\.tables ([^`]*)`", md.read_text())
        assert command, md
        out = tmp_path / md.stem
        assert tables.main([*shlex.split(command.group(1)), "--out", str(out)]) == 0
        for suffix in (".md", ".tex", ".csv", ".meta.json"):
            assert (out / f"{md.stem}{suffix}").read_bytes() == \
                md.with_suffix(suffix).read_bytes(), (md.stem, suffix)


def test_make_ablations_runs_the_issue_grids_and_remakes_the_committed_tables():
    """`make ablations` runs each grid of the ablations issue, then makes its table with the
    same grid options, which are the ones the committed tables name as their command."""
    import re
    import shlex

    # Not as a sub-make of `make test`, whose flags would add "Entering directory" lines.
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    lines = [x for x in subprocess.run(["make", "-n", "ablations"], cwd=REPO, env=env,
                                       capture_output=True, text=True, check=True).stdout
             .splitlines() if " -m " in x]

    def calls(module: str) -> list[list[str]]:
        return [shlex.split(x.split(f"-m {module} ", 1)[1]) for x in lines if f"-m {module} " in x]

    def cells(argv: list[str]) -> set:
        return {(c.task, c.method, c.sparsity, c.seed, c.profile)
                for c in run.grid(run.parse(argv))}

    runs, made = calls("ablations.run"), calls("ablations.tables")
    assert lines[-1].endswith("-m ablations.results_md")
    assert [r[0] for r in made] == ["components", "gmp_lr", "movement_lr", "sparsity",
                                      "overfitting"]
    for argv in runs:
        assert cells(argv)  # valid options, a non-empty grid
    # each table is made once, over every cell the runs before it ran (the default profile,
    # cpu3; components also lists its 3-seed rows at seeds 3-4, empty)
    for table in made:
        assert cells(table) >= set().union(*(cells(r) for r in runs if r[0] == table[0]))

    def stem(argv: list[str]) -> str:
        args = run.parse(argv)
        run.grid(args)
        return tables.stem(args)

    committed = {md.stem: shlex.split(re.search(r"ablations\.tables ([^`]*)`", md.read_text())[1])
                 for md in (REPO / "ablations" / "tables").glob("*.md")}
    # `make results` remakes every committed table (the budget study's and the earlier cpu
    # recipe's too) and RESULTS.md.
    results = [shlex.split(x.split("-m ablations.tables ", 1)[1]) for x in subprocess.run(
        ["make", "-n", "results"], cwd=REPO, env=env, capture_output=True, text=True,
        check=True).stdout.splitlines() if "-m ablations.tables " in x]
    assert all(t in results for t in made)
    assert committed == {stem(r): r for r in results}


def test_every_committed_csv_reads_with_plain_pandas_and_has_numeric_columns():
    import pandas as pd

    paths = sorted((REPO / "ablations" / "tables").glob("*.csv"))
    assert paths, "no committed tables"
    for path in paths:
        frame = pd.read_csv(path)
        assert len(frame) > 0 and not frame["task"].isna().any(), path
        for column in ("n", "mean", "sd", "ci_low", "ci_high", "p", "best"):
            assert pd.api.types.is_numeric_dtype(frame[column]), (path.name, column)
        assert (path.with_suffix(".meta.json")).is_file(), path


def test_the_best_gap_is_the_smallest_in_size():
    rows = [tables.Row("mrpc", label, "gap", "f1", {0: gap}, None, None)
            for label, gap in (("a", -0.05), ("b", 0.01), ("c", 0.03))]
    assert tables.best(rows) == {1}


def test_a_cell_whose_run_already_exists_under_another_name_is_reused_not_rerun(tmp_path,
                                                                                 capsys):
    """`spd` at 0.9 under the cpu3 profile is the budget study's `budget-e10-rest-lr1e-3-aug`
    under cpu (one configuration): the grid copies that run's result files, says where from,
    and never trains it twice."""
    budget = registry.Cell("mrpc", "budget-e10-rest-lr1e-3-aug", 0.9, 0, "cpu", "b", "budget-e10")
    source = write_cell(tmp_path, budget, {"f1": 0.84, "accuracy": 0.76}, {"f1": 0.92},
                        grid="budget")
    argv = ["components", "--profile", "cpu3", "--tasks", "mrpc", "--seeds", "1",
            "--methods", "spd", "--results", str(tmp_path)]
    assert run.main([*argv, "--dry-run"]) == 0
    assert "ablations: 1 reusable" in capsys.readouterr().out
    assert run.main(argv) == 0
    assert "seed 0: reused" in capsys.readouterr().out
    cell = next(c for c in run.grid(run.parse(argv)) if c.method == "spd")
    folder = cell.path(tmp_path)
    assert (folder / "final.json").read_bytes() == (source / "final.json").read_bytes()
    assert json.loads((folder / "reused_from.json").read_text()) == {
        "run": str(source.relative_to(tmp_path))}
    assert not (folder / "runner.jsonl").exists()  # nothing ran here
    rec = json.loads((folder / "record.json").read_text())
    assert rec["rows"][0]["grid"] == "components" and rec["dev"]["f1"] == 0.84
    assert run.main(argv) == 0 and "seed 0: done" in capsys.readouterr().out


def test_each_row_names_the_device_each_of_its_seeds_ran_on(tmp_path):
    """Issue 23: cells run on a lent GPU sit beside CPU cells; each row says which seeds ran
    where (a run resumed on another device counts under both)."""
    fake_results(tmp_path, {"spd": SPD, "gmp": GMP})
    cells = {c.seed: c for c in run.grid(run.parse(GRID)) if c.method == "spd"}
    for seed, env in ((2, {"device": "NVIDIA H200"}),
                      (1, {"resumed": [{"at_step": 3, "device": "NVIDIA H200"}]})):
        final = rundir.read_json(cells[seed].path(tmp_path) / "final.json")
        final["environment"].update(env)
        rundir.write_json(cells[seed].path(tmp_path) / "final.json", final)
        run.record(cells[seed], "components", tmp_path)
    rows = table_rows(tmp_path)
    assert rows["SPD"]["devices"] == "NVIDIA H200: 1-2; cpu: 0-1"
    assert rows["no distillation (GMP, hard labels)"]["devices"] == "cpu: 0-2"
    md = (tmp_path / "tables" / "components-smoke.md").read_text()
    assert md.splitlines()[0].endswith("| device: seeds |")
    assert "| NVIDIA H200: 1-2; cpu: 0-1 |" in md
