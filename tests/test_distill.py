"""`spd prune` end to end on a tiny random BERT: stages, schedules, masks, export."""
import json

import pytest
import torch
from transformers import AutoModelForSequenceClassification

from spd.cli import main
from spd.pruning import overall_sparsity, prunable_linears, encoder_layers
from tests.test_cli import TINY


@pytest.fixture(scope="module")
def tiny_teacher(tiny_model_dir, small_glue, tmp_path_factory):
    out = tmp_path_factory.mktemp("teacher") / "rte"
    assert main(["finetune", "--task", "rte", "--model", str(tiny_model_dir), "--data-dir",
                 str(small_glue), "--output", str(out), *TINY]) == 0
    return out


@pytest.fixture(scope="module")
def pruned(tiny_teacher, small_glue, tmp_path_factory):
    out = tmp_path_factory.mktemp("spd") / "rte"
    assert main(["prune", "--task", "rte", "--teacher", str(tiny_teacher), "--sparsity", "0.75",
                 "--data-dir", str(small_glue), "--output", str(out), "--preset", "smoke",
                 "--set", "data.batch_size=8", "--set", "eval_every=4"]) == 0
    return out


def test_schedules_are_realised_and_logged(pruned):
    records = [json.loads(line) for line in (pruned / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["step"] == 24  # smoke: 12 + 8 + 4 steps
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
    assert main(["prune", "--task", "rte", "--teacher", str(tiny_teacher), "--sparsity", "0.75",
                 "--data-dir", str(small_glue), "--output", str(out), "--preset", "smoke",
                 "--set", "data.batch_size=8", "--set", "eval_every=4"]) == 0
    a = json.loads((pruned / "metrics.jsonl").read_text().splitlines()[-1])
    b = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert a["loss"] == b["loss"] and a["dev"] == b["dev"]


from spd.config import spd_config  # noqa: E402
from spd.distill import audit, make_plan  # noqa: E402


def _audit(preset="cpu", overrides=(), steps_per_epoch=100):
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
