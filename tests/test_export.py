"""`spd export` and `--compress`: a student saved with compressed-tensors loads back bit for
bit, scores its final.json, and is smaller than the dense model/."""
import json

import pytest
import torch
from transformers import AutoModelForSequenceClassification

from spd.cli import main
from spd.export import folder_bytes
from spd.models import load_compressed
from tests.test_distill import smoke_prune, tiny_teacher, pruned  # noqa: F401 (fixtures)


def test_export_round_trips_bit_for_bit_and_scores_final_json(pruned, small_glue, tmp_path,
                                                              capsys):
    out = tmp_path / "compressed"
    capsys.readouterr()
    assert main(["export", str(pruned), "--format", "sparse-bitmask", "--output", str(out),
                 "--data-dir", str(small_glue)]) == 0
    said = capsys.readouterr().out
    assert "loaded back bit for bit; dev metrics equal to final.json's" in said
    dense = AutoModelForSequenceClassification.from_pretrained(pruned / "model").state_dict()
    back = load_compressed(out).state_dict()
    assert dense.keys() == back.keys() and all(torch.equal(dense[k], back[k]) for k in dense)
    config = json.loads((out / "config.json").read_text())
    assert config["quantization_config"]["sparsity_config"]["format"] == "sparse-bitmask"
    assert folder_bytes(out) < folder_bytes(pruned / "model")
    capsys.readouterr()  # spd evaluate reads the compressed folder too, with the run's metrics
    assert main(["evaluate", "--task", "rte", "--model", str(out), "--data-dir", str(small_glue),
                 "--max-length", "64"]) == 0
    final = json.loads((pruned / "final.json").read_text())
    assert json.loads(capsys.readouterr().out)["dev"] == final["dev"]


def test_a_2_4_student_exports_in_the_2_4_format(tiny_teacher, small_glue, tmp_path):
    out = tmp_path / "nm"
    args = smoke_prune(tiny_teacher, small_glue, out, "--set", "prune.pattern=2:4",
                       "--compress", "sparse-24-bitmask")
    args[args.index("--sparsity") + 1] = "0.5"
    assert main(args) == 0
    config = json.loads((out / "model-compressed" / "config.json").read_text())
    assert config["quantization_config"]["sparsity_config"]["format"] == "sparse-24-bitmask"
    dense = AutoModelForSequenceClassification.from_pretrained(out / "model").state_dict()
    back = load_compressed(out / "model-compressed").state_dict()
    assert all(torch.equal(dense[k], back[k]) for k in dense)


def test_the_2_4_format_is_refused_for_an_unstructured_student(pruned, capsys):
    capsys.readouterr()
    assert main(["export", str(pruned), "--format", "sparse-24-bitmask"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "sparse-24-bitmask needs prune.pattern=2:4" in err[0]
    assert not (pruned / "model-compressed").exists()
