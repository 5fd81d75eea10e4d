"""Data-parallel SPD: two CPU processes (torchrun, gloo) against one with the same global batch."""
import json
import os
import subprocess
import sys

import torch
from transformers import AutoModelForSequenceClassification, BertConfig

from spd.cli import main
from tests.conftest import REPO
from tests.test_cli import TINY

TOLERANCE = 1e-4  # max |difference| of any weight after the run (float sums in another order)


def test_two_processes_equal_one_with_the_same_global_batch(tiny_model_dir, small_glue, tmp_path):
    # Dropout off: each rank draws its own dropout masks, so only then are the runs comparable.
    model = tmp_path / "no-dropout"
    config = BertConfig.from_pretrained(tiny_model_dir)
    config.hidden_dropout_prob = config.attention_probs_dropout_prob = 0.0
    bert = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, config=config)
    bert.save_pretrained(model)
    for f in tiny_model_dir.glob("*"):
        if "token" in f.name or f.name == "vocab.txt":
            (model / f.name).write_bytes(f.read_bytes())
    teacher = tmp_path / "teacher"
    assert main(["finetune", "--task", "rte", "--model", str(model), "--data-dir", str(small_glue),
                 "--output", str(teacher), *TINY]) == 0

    def args(out):
        return ["prune", "--task", "rte", "--teacher", str(teacher), "--sparsity", "0.6",
                "--data-dir", str(small_glue), "--output", str(out), "--preset", "smoke",
                "--set", "data.batch_size=8", "--set", "theory_examples=0"]

    assert main(args(tmp_path / "one")) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc_per_node", "2", "-m", "spd", *args(tmp_path / "two")],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    one, two = (json.loads((tmp_path / d / "final.json").read_text()) for d in ("one", "two"))
    assert two["environment"]["world_size"] == 2 and one["environment"]["world_size"] == 1
    assert two["steps"] == one["steps"] and two["sparsity"] == one["sparsity"]
    wa, wb = (AutoModelForSequenceClassification.from_pretrained(tmp_path / d / "model").state_dict()
              for d in ("one", "two"))
    worst = max(float((wa[k] - wb[k]).abs().max()) for k in wa)
    print(f"max weight difference 1 vs 2 processes: {worst:.2e}")
    assert worst <= TOLERANCE, worst
    masks = [torch.equal(wa[k] == 0, wb[k] == 0) for k in wa if "encoder.layer" in k and "weight" in k]
    assert all(masks)  # the same weights pruned on both
