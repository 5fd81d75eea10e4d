"""`spd prune` end to end on a tiny random BERT: stages, schedules, masks, export."""
import json
import os
import signal
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForSequenceClassification

from spd import spd_train
from spd.cli import main
from spd.pruning import overall_sparsity, prunable_linears, encoder_layers
from tests.test_cli import TINY


@pytest.fixture(scope="module")
def tiny_teacher(tiny_model_dir, small_glue, tmp_path_factory):
    out = tmp_path_factory.mktemp("teacher") / "rte"
    assert main(["finetune", "--task", "rte", "--model", str(tiny_model_dir), "--data-dir",
                 str(small_glue), "--output", str(out), *TINY]) == 0
    return out


def smoke_prune(teacher, glue, out, *extra) -> list[str]:
    """`spd prune` arguments of the smoke run these tests share (24 steps, batch 8)."""
    return ["prune", "--task", "rte", "--teacher", str(teacher), "--sparsity", "0.75",
            "--data-dir", str(glue), "--output", str(out), "--preset", "smoke",
            "--set", "data.batch_size=8", "--set", "eval_every=8", "--set", "log_every=2", *extra]


@pytest.fixture(scope="module")
def pruned(tiny_teacher, small_glue, tmp_path_factory):
    out = tmp_path_factory.mktemp("spd") / "rte"
    assert main(smoke_prune(tiny_teacher, small_glue, out)) == 0
    return out


def read_metrics(run) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_schedules_are_realised_and_logged(pruned):
    records = read_metrics(pruned)
    # smoke: 12 + 8 + 4 steps, the schedules every 2 steps, dev every 8 and at the end
    assert [r["step"] for r in records] == list(range(2, 25, 2))
    assert [r["step"] for r in records if "dev" in r] == [8, 16, 24]
    sparsity = [r["sparsity"] for r in records]
    p = [r["replace_p"] for r in records]
    assert sparsity == sorted(sparsity) and sparsity[-1] == 0.75
    assert p == sorted(p) and p[0] == 0.5 and p[-1] == 1.0
    assert all({"hidden", "attention", "prediction", "total"} <= set(r["loss"]) for r in records)
    assert all(r["loss"]["hidden"] >= 0 for r in records)


def test_exported_model_is_plain_sparse_and_scores_what_final_json_says(pruned, small_glue, capsys):
    final = json.loads((pruned / "final.json").read_text())
    model = AutoModelForSequenceClassification.from_pretrained(pruned / "model")
    linears = prunable_linears(encoder_layers(model))
    assert not any(torch.nn.utils.parametrize.is_parametrized(m) for m in linears.values())
    # Every matrix within one weight of 0.75, and the overall figure in final.json agrees.
    table = json.loads((pruned / "sparsity.json").read_text())
    assert all(abs(table["per_matrix"][k] - 0.75) <= 1 / m.weight.numel() for k, m in linears.items())
    assert final["sparsity"] == pytest.approx(overall_sparsity(linears))
    capsys.readouterr()
    assert main(["evaluate", "--task", "rte", "--model", str(pruned), "--data-dir",
                 str(small_glue), "--max-length", "64"]) == 0
    # Plain transformers, no spd parametrizations: exactly the figures final.json reports.
    assert json.loads(capsys.readouterr().out)["dev"] == final["dev"]


def test_p_zero_and_no_pruning_leave_the_teacher(tiny_teacher, small_glue, tmp_path):
    out = tmp_path / "p0"
    assert main(["prune", "--task", "rte", "--teacher", str(tiny_teacher), "--sparsity", "0",
                 "--data-dir", str(small_glue), "--output", str(out), "--preset", "smoke",
                 "--set", "replace.schedule=constant", "--set", "replace.p_0=0",
                 "--set", "data.batch_size=8"]) == 0
    final = json.loads((out / "final.json").read_text())
    assert final["dev"] == final["teacher_dev"] and final["sparsity"] == 0


def test_two_seeded_runs_are_bitwise_equal(pruned, tiny_teacher, small_glue, tmp_path):
    out = tmp_path / "again"
    assert main(smoke_prune(tiny_teacher, small_glue, out)) == 0
    assert without_times(read_metrics(out)) == without_times(read_metrics(pruned))
    assert_same_weights(out, pruned)


def without_times(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "elapsed_s"} for r in records]


def assert_same_weights(a, b) -> None:
    wa = AutoModelForSequenceClassification.from_pretrained(a / "model").state_dict()
    wb = AutoModelForSequenceClassification.from_pretrained(b / "model").state_dict()
    assert wa.keys() == wb.keys()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def interrupt_at(monkeypatch, step: int, action):
    """Make the run call `action()` as it draws the layers of `step`; returns the undo."""
    real_draw = spd_train.draw_layers

    def draw(seed, s, p, n_layers):
        if s == step:
            action()
        return real_draw(seed, s, p, n_layers)

    monkeypatch.setattr(spd_train, "draw_layers", draw)
    return lambda: monkeypatch.setattr(spd_train, "draw_layers", real_draw)


def _raise_interrupt():
    raise KeyboardInterrupt


def test_killed_run_resumes_to_the_uninterrupted_result(pruned, tiny_teacher, small_glue,
                                                        tmp_path, monkeypatch):
    out = tmp_path / "killed"
    args = smoke_prune(tiny_teacher, small_glue, out, "--set", "checkpoint_every=6")
    undo = interrupt_at(monkeypatch, 13, _raise_interrupt)  # after the checkpoint at step 12
    assert main(args) == 130
    undo()
    assert (out / "checkpoint.pt").is_file() and not (out / "final.json").exists()
    assert main(args) == 2  # an unfinished run is neither lost nor silently restarted
    assert main([*args, "--resume"]) == 0
    assert not (out / "checkpoint.pt").exists()  # the finished run needs it no more
    final = json.loads((out / "final.json").read_text())
    assert final["resumed_at_steps"] == [12]
    assert without_times(read_metrics(out)) == without_times(read_metrics(pruned))
    assert_same_weights(out, pruned)


from spd.presets import DEFAULT_PRESET, spd_config  # noqa: E402
from spd.audit import audit  # noqa: E402
from spd.schedules import make_plan  # noqa: E402


def _audit(preset=DEFAULT_PRESET, overrides=(), steps_per_epoch=100):
    cfg = spd_config("mrpc", "t", preset, list(overrides))
    return audit(cfg, make_plan(cfg, steps_per_epoch))


def test_audit_flags_the_official_readme_slope_0_schedule():
    warnings = _audit("official_readme")
    assert any("slope 0" in w for w in warnings)
    assert any("final stage" in w for w in warnings)


def test_audit_flags_window_shorter_than_an_interval_and_sparsity_never_reached():
    assert any("one update interval" in w for w in _audit(overrides=[
        "stages.unit=steps", "stages.prune=3", "prune.updates=10"], steps_per_epoch=5))
    # 10 updates need 11 intervals; a 3-step run clamps them to one step: s_f at step 10.
    assert any("after training ends" in w for w in _audit(overrides=[
        "stages.unit=steps", "stages.prune=3", "stages.graft=0", "stages.finetune=0",
        "prune.updates=10"]))


def test_default_preset_raises_no_warning():
    assert _audit() == []
    assert _audit("cpu") == []  # the recipe before it


def spd_run(model, glue, out, sparsity, *extra) -> list[str]:
    return ["run", "--task", "rte", "--model", str(model), "--sparsity", str(sparsity),
            "--preset", "smoke", "--data-dir", str(glue), "--output", str(out),
            "--set", "data.batch_size=8", "--teacher-set", "data.batch_size=8", *extra]


def test_spd_run_fine_tunes_the_teacher_once_then_prunes(tiny_model_dir, small_glue, tmp_path):
    out = tmp_path / "run"
    assert main(spd_run(tiny_model_dir, small_glue, out, 0.5)) == 0
    teacher = json.loads((out / "teacher" / "final.json").read_text())
    final = json.loads((out / "final.json").read_text())
    assert teacher["steps"] == 12  # the smoke preset reaches the teacher's fine-tuning too
    assert final["teacher"] == str(out / "teacher") and final["teacher_dev"] == teacher["dev"]
    assert final["steps"] == 24 and final["sparsity"] == pytest.approx(0.5, abs=1e-3)
    stamp = (out / "teacher" / "final.json").stat().st_mtime_ns
    assert main(spd_run(tiny_model_dir, small_glue, out, 0.25)) == 2  # another student: refused
    assert main(spd_run(tiny_model_dir, small_glue, out, 0.25, "--overwrite")) == 0
    assert (out / "teacher" / "final.json").stat().st_mtime_ns == stamp  # teacher reused
    assert json.loads((out / "final.json").read_text())["target_sparsity"] == 0.25


def test_unknown_preset_is_refused_by_every_command(tiny_model_dir, small_glue, tmp_path, capsys):
    for args in (["finetune", "--task", "rte", "--output", str(tmp_path / "f")],
                 ["prune", "--task", "rte", "--teacher", "t", "--sparsity", "0.5",
                  "--output", str(tmp_path / "p")],
                 spd_run(tiny_model_dir, small_glue, tmp_path / "r", 0.5)):
        capsys.readouterr()
        assert main([*args, "--preset", "fast"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "'fast'" in err and "smoke" in err


def test_report_md_states_teacher_student_gap_and_plots(pruned):
    final = json.loads((pruned / "final.json").read_text())
    report = (pruned / "report.md").read_text()
    assert report.startswith(f"# SPD on {final['task']}: target sparsity")
    m = final["main_metric"]
    assert f"{final['teacher_dev'][m]:.4f}" in report and f"{final['dev'][m]:.4f}" in report
    assert f"{final['sparsity']:.4f}" in report
    evals = [r for r in read_metrics(pruned) if "dev" in r]
    for r in evals:  # the train/dev gap at every evaluation
        gap = r["train_subset"][m] - r["dev"][m]
        assert f"| {r['step']} |" in report and f"{gap:+.4f}" in report
    for png in ("curves.png", "schedules.png", "losses.png", "layer_sparsity.png"):
        assert f"]({png})" in report
        assert (pruned / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


_NO_REPLACING = ["replace.schedule=constant", "replace.p_0=1"]
_NO_DISTILLATION = ["loss.hidden=0", "loss.attention=0", "loss.prediction=0", "loss.hard=1",
                    "augment.rate=0"]


@pytest.mark.parametrize("overrides, name, says", [
    ([], "SPD", ["hidden 1 + attention 1 + prediction 1", "three_stage from p_0 0.5"]),
    (_NO_REPLACING, "Magnitude pruning with distillation",
     ["hidden 1 + attention 1 + prediction 1", "none (the student alone, p = 1)"]),
    ([*_NO_REPLACING, *_NO_DISTILLATION], "Magnitude pruning without distillation",
     ["hard 1", "none (the student alone, p = 1)"]),
    ([*_NO_REPLACING, "prune.criterion=movement", "loss.hidden=0", "loss.attention=0"],
     "Movement pruning with distillation", ["prediction 1", "none (the student alone"]),
    (["prune.criterion=movement"], "SPD (movement criterion)", ["three_stage from p_0 0.5"]),
])
def test_a_run_is_named_by_what_its_config_ran_not_always_spd(overrides, name, says):
    # A GMP cell's report.md (no teacher in its loss, no replacing) used to open "SPD on ...".
    from spd.overrides import to_dict
    from spd.report import method_line, method_name
    cfg = to_dict(spd_config("mrpc", "t", DEFAULT_PRESET, overrides))
    assert method_name(cfg) == name
    line = method_line(cfg)
    assert all(s in line for s in says), line


def test_module_errors_and_the_d_bound_are_logged_at_every_evaluation(pruned):
    evals = [r for r in read_metrics(pruned) if "dev" in r]
    for r in evals:
        probe = r["theory"]
        assert probe["p"] == r["replace_p"] and probe["examples"] == 8
        assert probe["D"]["holds"], probe["D"]
        assert probe["D"]["measured"] <= probe["student_error"] * (1 + 1e-9)  # E_R <= f_S at p<1
        for side in ("teacher_inputs", "student_inputs", "hybrid_inputs"):
            assert len(probe["module_errors"][side]) == 2  # the tiny BERT's two layers
    assert evals[-1]["replace_p"] == 1.0  # the pure student: E_R ||f_R - f_T|| is ||f_S - f_T||
    last = evals[-1]["theory"]
    assert last["D"]["measured"] == pytest.approx(last["student_error"], rel=1e-12)
    report = (pruned / "report.md").read_text()
    assert "](bounds.png)" in report and (pruned / "bounds.png").read_bytes()[:4] == b"\x89PNG"
    for r in evals:
        assert f"{r['theory']['D']['bound']:.4g}" in report


def test_the_bound_probe_observes_without_changing_the_run(pruned, tiny_teacher, small_glue,
                                                            tmp_path):
    out = tmp_path / "no-probe"
    assert main(smoke_prune(tiny_teacher, small_glue, out, "--set", "theory_examples=0")) == 0
    assert not any("theory" in r for r in read_metrics(out))
    strip = lambda rs: [{k: v for k, v in r.items() if k != "theory"} for r in without_times(rs)]
    assert strip(read_metrics(out)) == strip(read_metrics(pruned))
    assert_same_weights(out, pruned)


def test_the_denormal_flush_ends_with_the_run(pruned):
    # spd flushes denormals to zero while training on the CPU; afterwards the process's float
    # arithmetic is IEEE again (it is a process-wide flag).
    assert (torch.tensor([1e-40]) * 1.0).item() != 0
    assert 5e-324 * 1.0 > 0


def test_a_2_4_pattern_run_exports_two_zeros_in_every_group_of_four(tiny_teacher, small_glue,
                                                                     tmp_path):
    out = tmp_path / "nm"
    args = smoke_prune(tiny_teacher, small_glue, out, "--set", "prune.pattern=2:4")
    args[args.index("--sparsity") + 1] = "0.5"
    assert main(args) == 0
    model = AutoModelForSequenceClassification.from_pretrained(out / "model")
    for name, lin in prunable_linears(encoder_layers(model)).items():
        zeros = (lin.weight == 0).view(-1, 4).sum(1)
        assert (zeros == 2).all(), name  # random init: no kept weight is exactly zero
    assert json.loads((out / "final.json").read_text())["sparsity"] == 0.5
    records = read_metrics(out)
    assert {r["realised_sparsity"] for r in records} <= {0.0, 0.25, 0.5}  # whole weights per group


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_checkpoints_after_the_current_step_and_resume_finishes_the_run(
        signum, pruned, tiny_teacher, small_glue, tmp_path, monkeypatch, capsys):
    out = tmp_path / "signalled"
    args = smoke_prune(tiny_teacher, small_glue, out)
    # mid-run, between the periodic checkpoints (every 8 steps here)
    undo = interrupt_at(monkeypatch, 13, lambda: os.kill(os.getpid(), signum))
    capsys.readouterr()
    assert main(args) == 128 + signum
    err = capsys.readouterr().err  # the progress bar writes there too
    (line,) = [x for x in err.splitlines() if "spd: " in x]
    assert "stopped: SIG" in line and "step 14 of 24" in line and "--resume" in line
    assert "Traceback" not in err
    undo()
    assert not (out / "final.json").exists()
    assert main([*args, "--resume"]) == 0
    final = json.loads((out / "final.json").read_text())
    assert final["resumed_at_steps"] == [14]  # the step the signal's checkpoint was written at
    assert without_times(read_metrics(out)) == without_times(read_metrics(pruned))
    assert_same_weights(out, pruned)


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_a_damaged_checkpoint_is_refused_not_loaded(damage, tiny_teacher, small_glue, tmp_path,
                                                    monkeypatch, capsys):
    out = tmp_path / "damaged"
    args = smoke_prune(tiny_teacher, small_glue, out, "--set", "checkpoint_every=6")
    undo = interrupt_at(monkeypatch, 13, _raise_interrupt)
    assert main(args) == 130
    undo()
    ckpt = out / "checkpoint.pt"
    data = bytearray(ckpt.read_bytes())
    if damage == "truncate":
        del data[len(data) // 2:]
    else:
        data[len(data) // 2] ^= 0xFF
    ckpt.write_bytes(bytes(data))
    capsys.readouterr()
    assert main([*args, "--resume"]) == 2
    err = capsys.readouterr().err
    (line,) = [x for x in err.splitlines() if "spd: " in x]
    assert "damaged" in line and "checkpoint.pt" in line and "Traceback" not in err
    assert ckpt.read_bytes() == bytes(data)  # left as it was, for inspection


def test_a_checkpoint_written_before_checksums_still_loads(tmp_path):
    from spd import rundir

    torch.save({"progress": {"step": 3}}, tmp_path / "checkpoint.pt")  # the old, bare format
    assert rundir.load_checkpoint(tmp_path)["progress"]["step"] == 3
    (tmp_path / "checkpoint.pt").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(Exception, match="damaged"):
        rundir.load_checkpoint(tmp_path)


NEW_PATHS = ["--set", "precision=bf16", "--set", "data.group_by_length=true",
             "--set", "graft_teacher_dropout=true", "--set", "loss.soft_ce_classes=mean",
             "--set", "optim.restart_at=prune_end", "--set", "optim.warmup_ratio=0.2",
             "--set", "train_rest=true"]


def test_bf16_grouped_run_resumes_bitwise_and_keeps_fp32_state(tiny_teacher, small_glue, tmp_path,
                                                               monkeypatch):
    """The faster paths and the new named options through the whole loop: a killed run resumes
    to the uninterrupted one bitwise, and the exported weights stay fp32."""
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    assert main(smoke_prune(tiny_teacher, small_glue, whole, *NEW_PATHS)) == 0
    args = smoke_prune(tiny_teacher, small_glue, killed, *NEW_PATHS, "--set", "checkpoint_every=6")
    undo = interrupt_at(monkeypatch, 13, _raise_interrupt)
    assert main(args) == 130
    undo()
    from spd.rundir import load_checkpoint

    ckpt = load_checkpoint(killed)
    state = ckpt["optimizer"]["state"]
    assert all(v.dtype == torch.float32 for s in state.values() for v in s.values()
               if torch.is_tensor(v) and v.is_floating_point())
    assert main([*args, "--resume"]) == 0
    assert without_times(read_metrics(killed)) == without_times(read_metrics(whole))
    assert_same_weights(killed, whole)
    model = AutoModelForSequenceClassification.from_pretrained(whole / "model")
    assert all(p.dtype == torch.float32 for p in model.parameters())
    # The teacher is evaluated in its own precision (fp32), so its identity check still holds.
    teacher_final = json.loads((tiny_teacher / "final.json").read_text())
    assert json.loads((whole / "final.json").read_text())["teacher_dev"] == teacher_final["dev"]
    lrs = [r["lr"] for r in read_metrics(whole)]
    assert lrs != sorted(lrs, reverse=True)  # the warm-up restarted after the prune stage


def test_final_json_records_the_constant_prediction_floor(pruned, small_glue):
    """majority_dev: the dev metrics of always predicting the most frequent train label."""
    def labels(split):
        rows = (small_glue / "rte" / f"{split}.jsonl").read_text().splitlines()
        return [json.loads(r)["label"] for r in rows]

    train, dev = labels("train"), labels("validation")
    top = max(set(train), key=lambda c: (train.count(c), -c))  # ties: the lower label
    final = json.loads((pruned / "final.json").read_text())
    assert final["majority_dev"] == {"accuracy": dev.count(top) / len(dev)}


def test_audit_flags_all_loss_weights_zero_and_matrices_pruned_to_nothing():
    assert any("nothing trains the student" in w for w in _audit(overrides=[
        "loss.hidden=0", "loss.attention=0", "loss.prediction=0", "loss.hard=0"]))
    cfg = spd_config("mrpc", "t", DEFAULT_PRESET, ["prune.sparsity=0.999999"])
    sizes = {"0.attention.self.query": 384 * 384, "0.intermediate.dense": 1536 * 384}
    warnings = audit(cfg, make_plan(cfg, 100), sizes)
    assert any("keeps round(n (1 - s)) = 0 weights of 1 matrices" in w for w in warnings)
    assert not any("= 0 weights" in w for w in audit(spd_config("mrpc", "t"), make_plan(cfg, 100),
                                                       sizes))


def test_evaluate_defaults_to_the_runs_own_settings(pruned, small_glue, capsys):
    final = json.loads((pruned / "final.json").read_text())
    capsys.readouterr()
    assert main(["evaluate", "--task", "rte", "--model", str(pruned / "model"), "--data-dir",
                 str(small_glue)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["settings"] == {"max_length": 64, "batch_size": 128, "precision": "auto"}
    assert out["dev"] == final["dev"]


def test_exported_models_carry_a_model_card_and_their_sparsity(pruned, tiny_teacher):
    card = (pruned / "model" / "README.md").read_text()
    final = json.loads((pruned / "final.json").read_text())
    head, body = card.split("---\n", 2)[1:]
    assert "base_model:" in head and "config: rte" in head and "- sparse" in head
    assert f"      value: {final['dev']['accuracy']!r}" in head  # the final dev metric
    assert final["config_hash"] in body and f"{final['sparsity']:.4f} overall" in body
    kinds = [line for line in body.splitlines() if line.startswith("| attention.") or
             line.startswith(("| intermediate.", "| output."))]
    assert len(kinds) == 6
    config = json.loads((pruned / "model" / "config.json").read_text())
    assert config["spd_sparsity"]["pattern"] == "unstructured"
    assert config["spd_sparsity"]["overall"] == pytest.approx(final["sparsity"])
    AutoModelForSequenceClassification.from_pretrained(pruned / "model")  # loads unchanged
    teacher_card = (tiny_teacher / "model" / "README.md").read_text()
    assert teacher_card.startswith("---\n") and "- sparse" not in teacher_card


def test_tensorboard_events_hold_every_logged_scalar(tiny_teacher, small_glue, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "tb"
    assert main(smoke_prune(tiny_teacher, small_glue, out, "--tensorboard")) == 0
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    expected = {"loss/hidden", "loss/attention", "loss/prediction", "loss/hard", "loss/total",
                "sparsity", "realised_sparsity", "replace_p", "lr", "dev/accuracy",
                "train_subset/accuracy", "dev/loss", "train_subset/loss"}
    assert expected <= tags, expected - tags
    records = read_metrics(out)
    assert [e.step for e in events.Scalars("lr")] == [r["step"] for r in records]
    assert [e.value for e in events.Scalars("dev/accuracy")] == pytest.approx(
        [r["dev"]["accuracy"] for r in records if "dev" in r])


def test_a_finished_run_writes_the_record_tables_are_made_from(pruned, tiny_teacher):
    from spd import records

    final = json.loads((pruned / "final.json").read_text())
    rec = records.read(pruned)
    assert (rec["task"], rec["kind"], rec["seed"], rec["sparsity"], rec["recipe"]) == \
        ("rte", "prune", final["seed"], 0.75, "smoke")
    assert rec["dev"] == final["dev"] and rec["config_hash"] == final["config_hash"]
    assert rec["sparsity_realised"] == final["sparsity"] and rec["rows"] == []
    teacher_final = json.loads((tiny_teacher / "final.json").read_text())
    assert rec["teacher"] == {"folder": str(tiny_teacher), "dev": final["teacher_dev"],
                              "config_hash": teacher_final["config_hash"]}
    assert rec["command"][:2] == ["spd", "prune"] and "--teacher" in rec["command"]
    assert [e["step"] for e in rec["evals"]] == [r["step"] for r in read_metrics(pruned)
                                                 if "dev" in r]
    teacher = records.read(tiny_teacher)
    assert teacher["kind"] == "finetune" and teacher["teacher"] is None
    assert teacher["dev"] == teacher_final["dev"] and teacher["command"][:2] == ["spd", "finetune"]


def test_a_run_whose_teacher_was_replaced_is_neither_counted_nor_resumed(
        tiny_teacher, small_glue, tmp_path, monkeypatch, capsys):
    import shutil

    teacher = tmp_path / "teacher"
    shutil.copytree(tiny_teacher, teacher)
    final_path = teacher / "final.json"
    first = json.loads(final_path.read_text())
    replaced = {**first, "dev": {k: v + 0.1 for k, v in first["dev"].items()}}
    done, killed = tmp_path / "done", tmp_path / "killed"
    assert main(smoke_prune(teacher, small_glue, done)) == 0
    args = smoke_prune(teacher, small_glue, killed, "--set", "checkpoint_every=6")
    undo = interrupt_at(monkeypatch, 13, _raise_interrupt)
    assert main(args) == 130
    undo()
    final_path.write_text(json.dumps(replaced))  # the teacher folder now holds another teacher
    capsys.readouterr()
    for argv in (smoke_prune(teacher, small_glue, done), [*args, "--resume"]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "another teacher" in err and str(teacher) in err
    assert (killed / "checkpoint.pt").is_file()  # nothing lost
    final_path.write_text(json.dumps(first))
    assert main([*args, "--resume"]) == 0


def test_reports_read_the_stage_ends_of_runs_saved_before_the_name_changed():
    from spd.report import stage_ends

    assert stage_ends({"stage_bounds": [12, 20, 24]}) == [12, 20, 24]  # committed runs
    assert stage_ends({"stage_ends": [12, 20, 24]}) == [12, 20, 24]


def assert_resumes_to(whole, args, monkeypatch):
    """`args` (a run into another folder) killed after its checkpoint at step 12 and resumed
    ends with the weights and metrics of the uninterrupted run in `whole`."""
    args = [*args, "--set", "checkpoint_every=6"]
    killed = Path(args[args.index("--output") + 1])
    undo = interrupt_at(monkeypatch, 13, _raise_interrupt)
    assert main(args) == 130
    undo()
    assert main([*args, "--resume"]) == 0
    assert without_times(read_metrics(killed)) == without_times(read_metrics(whole))
    assert_same_weights(killed, whole)


def test_an_augmented_run_resumes_bitwise_and_differs_from_a_plain_one(pruned, tiny_teacher,
                                                                      small_glue, tmp_path,
                                                                      monkeypatch):
    """The perturbed copies are drawn from (seed, step): a killed run resumes to the whole one."""
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    augment = ("--set", "augment.rate=0.5", "--set", "augment.tokens=0.3")
    assert main(smoke_prune(tiny_teacher, small_glue, whole, *augment)) == 0
    assert_resumes_to(whole, smoke_prune(tiny_teacher, small_glue, killed, *augment),
                       monkeypatch)
    losses = lambda run: [r["loss"] for r in read_metrics(run)]  # noqa: E731
    assert losses(whole) != losses(pruned)


def test_a_cached_teacher_run_resumes_bitwise_and_matches_the_uncached_run(tiny_teacher,
                                                                            small_glue, tmp_path,
                                                                            monkeypatch):
    """With loss.padding=exclude the cache changes nothing but the time: the same losses (fp32
    rounding) and a killed cached run resumes to the whole one (the cache is rebuilt the same)."""
    plain, whole, killed = tmp_path / "plain", tmp_path / "whole", tmp_path / "killed"
    exclude = ("--set", "loss.padding=exclude", "--set", "precision=fp32",
               "--set", "augment.rate=0.5")
    cached = (*exclude, "--set", "teacher_cache=0.5")
    assert main(smoke_prune(tiny_teacher, small_glue, plain, *exclude)) == 0
    assert main(smoke_prune(tiny_teacher, small_glue, whole, *cached)) == 0
    assert_resumes_to(whole, smoke_prune(tiny_teacher, small_glue, killed, *cached),
                       monkeypatch)
    for a, b in zip(read_metrics(plain), read_metrics(whole), strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4, abs=1e-6)


def test_a_checkpoint_from_before_a_new_config_field_resumes(pruned, small_glue, tiny_teacher,
                                                             tmp_path, monkeypatch):
    """An upgrade that adds a field (at its default) does not strand a stopped run: the
    checkpoint's config is read through today's dataclasses; a changed value is still refused."""
    from spd import rundir

    killed = tmp_path / "killed"
    args = smoke_prune(tiny_teacher, small_glue, killed, "--set", "checkpoint_every=6")
    undo = interrupt_at(monkeypatch, 13, _raise_interrupt)
    assert main(args) == 130
    undo()
    ckpt = rundir.load_checkpoint(killed)
    del ckpt["config"]["teacher_cache"], ckpt["config"]["loss"]["padding"]
    rundir.save_checkpoint(killed, {**ckpt, "config_hash": "from-an-older-spd"})
    assert main([*args, "--resume"]) == 0
    assert without_times(read_metrics(killed)) == without_times(read_metrics(pruned))
    assert_same_weights(killed, pruned)


@pytest.mark.parametrize("recorded, device, expected", [
    (None, "cpu (2 threads)", "fp32"),  # fine-tuned before the field: auto on the CPU
    ("auto", "cpu (2 threads)", "fp32"),
    ("auto", "NVIDIA H200", "bf16"),  # auto on CUDA is bf16 autocast
    ("fp32", "NVIDIA H200", "fp32"),
    ("bf16", "cpu (2 threads)", "bf16"),
])
def test_a_teacher_is_evaluated_in_the_precision_it_was_fine_tuned_in_on_any_device(
        tiny_teacher, tmp_path, recorded, device, expected):
    # Its dev metrics are its identity (`records.same_teacher`): a CPU-made teacher evaluated
    # in bf16 on a GPU would look like another teacher.
    import shutil

    teacher = tmp_path / "teacher"
    shutil.copytree(tiny_teacher, teacher)
    config, final = (json.loads((teacher / f).read_text()) for f in ("config.json", "final.json"))
    config.pop("precision", None)
    if recorded is not None:
        config["precision"] = recorded
    final["environment"]["device"] = device
    (teacher / "config.json").write_text(json.dumps(config))
    (teacher / "final.json").write_text(json.dumps(final))
    assert spd_train.teacher_precision(str(teacher)) == expected
    assert spd_train.teacher_precision(str(teacher / "model")) == expected
    assert spd_train.teacher_precision(str(tmp_path / "plain-model-folder")) == "auto"
