"""`--set compile=true`: the training forward passes (fine-tuning: the model; SPD: the frozen
teacher) go through torch.compile; the results match the eager run up to float rounding."""
import json

import pytest

from spd.cli import main
from tests.test_cli import TINY
from tests.test_distill import smoke_prune, tiny_teacher  # noqa: F401 (fixture)

pytestmark = pytest.mark.slow  # inductor compiles C++ for the CPU: tens of seconds


def finals(*runs):
    return [json.loads((r / "final.json").read_text()) for r in runs]


def test_compiled_finetune_matches_eager(tiny_model_dir, small_glue, tmp_path):
    args = ["finetune", "--task", "rte", "--model", str(tiny_model_dir), "--data-dir",
            str(small_glue), *TINY]
    assert main([*args, "--output", str(tmp_path / "eager")]) == 0
    assert main([*args, "--output", str(tmp_path / "compiled"), "--set", "compile=true"]) == 0
    eager, compiled = finals(tmp_path / "eager", tmp_path / "compiled")
    assert compiled["dev"]["loss"] == pytest.approx(eager["dev"]["loss"], rel=1e-3)


def test_compiled_teacher_in_spd_matches_eager(tiny_teacher, small_glue, tmp_path):  # noqa: F811
    eager, compiled = tmp_path / "eager", tmp_path / "compiled"
    assert main(smoke_prune(tiny_teacher, small_glue, eager)) == 0
    assert main(smoke_prune(tiny_teacher, small_glue, compiled, "--set", "compile=true")) == 0
    a, b = finals(eager, compiled)
    assert b["dev"]["loss"] == pytest.approx(a["dev"]["loss"], rel=1e-3)
    assert b["sparsity"] == a["sparsity"]
