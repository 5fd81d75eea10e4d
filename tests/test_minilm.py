"""The embedded default model (all-MiniLM-L6-v2) on real GLUE data: a few steps, end to end."""
import json
from pathlib import Path

import pytest

from spd.cli import main
from spd.models import load_classifier, resolve_model_path
from spd.tasks import TASKS


def test_default_model_is_the_packaged_minilm():
    path = Path(resolve_model_path("minilm"))
    config = json.loads((path / "config.json").read_text())
    assert (path / "model.safetensors").is_file()
    assert (config["num_hidden_layers"], config["hidden_size"]) == (6, 384)


def test_heads_match_the_task():
    assert load_classifier("minilm", TASKS["stsb"]).config.num_labels == 1
    model = load_classifier("minilm", TASKS["rte"])
    assert model.config.id2label == {0: "entailment", 1: "not_entailment"}
    # Eager attention, so that attention probabilities can be returned for distillation.
    assert model.config._attn_implementation == "eager"


@pytest.mark.slow
def test_minilm_finetunes_a_few_steps_on_real_mrpc(glue_dir, tmp_path):
    out = tmp_path / "mrpc"
    assert main(["finetune", "--task", "mrpc", "--data-dir", str(glue_dir), "--output", str(out),
                 "--set", "optim.max_steps=3", "--set", "data.max_length=64",
                 "--set", "data.train_eval_size=32"]) == 0
    final = json.loads((out / "final.json").read_text())
    assert final["model"] == "minilm" and final["steps"] == 3
    assert final["num_dev_examples"] == {"validation": 408}
    assert 0 <= final["dev"]["accuracy"] <= 1 and 0 <= final["dev"]["f1"] <= 1
    assert final["data"]["train"]["sha256"] == (
        "02826f6397068882260649640f9122947e88f1953a1645dc571b38bc03557563")


@pytest.mark.slow
def test_minilm_spd_run_through_every_stage_on_real_mrpc(glue_dir, tmp_path):
    """`spd run --preset smoke`: 12 teacher steps, then 24 SPD steps through all three stages."""
    out = tmp_path / "spd"
    assert main(["run", "--task", "mrpc", "--sparsity", "0.5", "--preset", "smoke",
                 "--data-dir", str(glue_dir), "--output", str(out)]) == 0
    final = json.loads((out / "final.json").read_text())
    assert final["steps"] == 24 and final["stage_ends"] == [12, 20, 24]
    assert final["sparsity"] == pytest.approx(0.5, abs=1e-4)
    assert json.loads((out / "teacher" / "final.json").read_text())["model"] == "minilm"
    assert (out / "report.md").is_file() and (out / "model" / "model.safetensors").is_file()
