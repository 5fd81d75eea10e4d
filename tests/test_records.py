"""record.json: built from a run folder alone, rows kept across writes, teacher identity."""
from spd import records, rundir


def finished(folder, dev=0.8, teacher=None, teacher_dev=None):
    folder.mkdir(parents=True, exist_ok=True)
    final = {"task": "mrpc", "seed": 1, "main_metric": "f1", "dev": {"f1": dev},
             "config_hash": "abc", "environment": {"device": "cpu", "platform": "x"}}
    if teacher is not None:
        final |= {"teacher": str(teacher), "teacher_dev": teacher_dev, "target_sparsity": 0.9}
    rundir.write_json(folder / "final.json", final)
    return folder


def test_rows_accumulate_once_and_the_recipe_is_kept(tmp_path):
    run = finished(tmp_path / "run")
    row = {"grid": "components", "label": "SPD", "reference": None, "method": "spd"}
    records.write(run, recipe="cpu", row=row)
    records.write(run, row=row)  # the same row again: not repeated
    other = {**row, "grid": "sparsity", "label": "SPD s0.9", "reference": "SPD s0.9"}
    rec = records.write(run, row=other)
    assert rec["rows"] == [row, other] and rec["recipe"] == "cpu"
    assert records.read(run) == rec and rec["environment"] == {"device": "cpu"}


def test_a_run_counts_only_while_its_teacher_is_the_one_in_place(tmp_path):
    teacher = finished(tmp_path / "teacher", dev=0.86)
    rundir.write_json(teacher / "final.json", {"dev": {"f1": 0.86}, "config_hash": "t1"})
    run = finished(tmp_path / "run", teacher=teacher, teacher_dev={"f1": 0.86 * (1 + 1e-7)})
    rec = records.write(run)
    assert rec["kind"] == "prune" and rec["teacher"]["config_hash"] == "t1"
    assert records.teacher_is_current(rec)
    rundir.write_json(teacher / "final.json", {"dev": {"f1": 0.85}, "config_hash": "t2"})
    assert not records.teacher_is_current(rec)
    assert records.teacher_is_current(records.build(finished(tmp_path / "dense")))  # no teacher


def test_records_under_a_folder_are_found_in_path_order(tmp_path):
    for name in ("b/seed1", "a/seed0", "b/seed0"):
        records.write(finished(tmp_path / name))
    assert [p.relative_to(tmp_path).as_posix() for p, _ in records.under(tmp_path)] == \
        ["a/seed0", "b/seed0", "b/seed1"]
