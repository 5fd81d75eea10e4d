"""theory/ on real (tiny, random) BERT layers through spd's adapter (`spd.probe`):
local-constant versions of A to D, and the `spd theory RUN_DIR` command on an SPD run."""
import copy
import json

import pytest
import torch
from transformers import AutoModelForSequenceClassification

from spd import pruning
from spd.cli import main as spd_main
from spd import probe as check


@pytest.fixture()
def pair(tiny_model_dir):
    torch.manual_seed(0)
    teacher = AutoModelForSequenceClassification.from_pretrained(
        tiny_model_dir, num_labels=2, attn_implementation="eager").eval()
    student = copy.deepcopy(teacher)
    linears = pruning.prunable_linears(pruning.encoder_layers(student))
    pruning.attach_masks(linears)
    pruning.prune_to(linears, 0.7)
    pruning.bake(linears)
    return teacher, student


@pytest.mark.parametrize("seed", [0, 1])
def test_local_constant_statements_hold_on_a_pruned_tiny_bert(pair, seed):
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(3, 10, dtype=torch.long)
    mask[1, 7:] = 0
    inputs = {"input_ids": torch.randint(5, 1000, (3, 10), generator=g), "attention_mask": mask}
    result = check.check_models(*pair, inputs, p_grid=(0.0, 0.5, 1.0))
    c = result["checks"]
    assert c["A"]["measured"] <= 1e-10 * max(1.0, c["A"]["bound"])
    rows = [c["B1"], c["B2"], *c["C"], *c["D"]]
    assert all(r["holds"] for r in rows), [r for r in rows if not r["holds"]]
    assert c["B1"]["measured"] > 0  # pruning 70% changed the function: not a vacuous 0 <= 0
    assert c["D"][0]["measured"] == 0 and c["D"][-1]["measured"] == pytest.approx(c["B1"]["measured"])
    assert all(k > 0 for k in result["K_teacher"] + result["K_student"])


def test_theory_check_command_writes_json_md_and_plots(tiny_model_dir, small_glue, tmp_path, capsys):
    run = tmp_path / "spd"
    assert spd_main(["run", "--task", "rte", "--model", str(tiny_model_dir), "--sparsity", "0.6",
                     "--preset", "smoke", "--data-dir", str(small_glue), "--output", str(run),
                     "--set", "data.batch_size=8", "--teacher-set", "data.batch_size=8"]) == 0
    out = tmp_path / "report"
    capsys.readouterr()
    assert spd_main(["theory", str(run), "--output", str(out), "--examples", "6",
                     "--data-dir", str(small_glue)]) == 0
    assert "all bounds hold" in capsys.readouterr().out
    result = json.loads((out / "theory.json").read_text())
    md = (out / "theory.md").read_text()
    assert result["meta"]["examples"] == 6 and len(result["checks"]["D"]) == 11
    # p is a field of the result, not parsed back from each row's label
    assert len(result["D_p"]) == 11 and all(f"{p:g}" in row["statement"] for p, row in
                                            zip(result["D_p"], result["checks"]["D"]))
    assert f"{result['checks']['B1']['bound']:.4g}" in md
    for png in ("theory_d.png", "theory_modules.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"


def test_theory_check_refuses_a_folder_without_an_spd_run(tmp_path, capsys):
    assert spd_main(["theory", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(tmp_path) in err


def test_training_probe_agrees_with_the_full_check_and_leaves_the_models(pair):
    teacher, student = pair
    g = torch.Generator().manual_seed(3)
    inputs = {"input_ids": torch.randint(5, 1000, (2, 9), generator=g),
              "attention_mask": torch.ones(2, 9, dtype=torch.long)}
    before = {k: v.clone() for k, v in student.state_dict().items()}
    full = check.check_models(teacher, student, inputs, p_grid=(0.3,), lip_points=2, lip_iters=5)
    probe = check.probe(teacher, student, inputs, 0.3)
    assert probe["D"] == full["checks"]["D"][0] and probe["D"]["holds"]
    assert probe["K_teacher"] == full["K_teacher"]
    assert probe["module_errors"]["teacher_inputs"] == full["module_errors"]["teacher_inputs"]
    assert probe["student_error"] == pytest.approx(full["checks"]["B1"]["measured"], rel=1e-12)
    # ebar_l(p) runs from the teacher-input errors at p = 0 to the student-input ones at p = 1.
    me = check.probe(teacher, student, inputs, 0.0)["module_errors"]
    assert me["hybrid_inputs"] == pytest.approx(me["teacher_inputs"], rel=1e-12)
    me = check.probe(teacher, student, inputs, 1.0)["module_errors"]
    assert me["hybrid_inputs"] == pytest.approx(me["student_inputs"], rel=1e-12)
    assert next(teacher.parameters()).dtype == torch.float32  # copies were made, not changes
    assert all(torch.equal(before[k], v) for k, v in student.state_dict().items())
