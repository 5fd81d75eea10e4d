"""The GPU path (CUDA, bf16 autocast): the same code as on the CPU. Marked `gpu`: skipped where
there is no CUDA device; on a GPU machine run `pytest -m gpu`."""
import json
import math

import pytest
import torch

from spd.cli import main
from tests.test_cli import TINY
from tests.test_distill import smoke_prune

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def cuda_teacher(tiny_model_dir, small_glue, tmp_path_factory):
    out = tmp_path_factory.mktemp("cuda-teacher") / "rte"
    assert main(["finetune", "--task", "rte", "--model", str(tiny_model_dir), "--data-dir",
                 str(small_glue), "--output", str(out), "--device", "cuda", *TINY]) == 0
    return out


def test_spd_runs_on_cuda_in_bf16_and_exports_a_model_the_cpu_scores_alike(
        cuda_teacher, small_glue, tmp_path, capsys):
    out = tmp_path / "spd"
    assert main([*smoke_prune(cuda_teacher, small_glue, out), "--device", "cuda"]) == 0
    final = json.loads((out / "final.json").read_text())
    assert final["environment"]["device"] == torch.cuda.get_device_name()
    assert abs(final["sparsity"] - 0.75) < 1e-3
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert all(math.isfinite(v) for r in records for v in r["loss"].values())
    capsys.readouterr()
    assert main(["evaluate", "--task", "rte", "--model", str(out), "--data-dir",
                 str(small_glue), "--device", "cpu", "--max-length", "64"]) == 0
    cpu = json.loads(capsys.readouterr().out)["dev"]["accuracy"]
    # bf16 on the GPU against fp32 on the CPU: a prediction near the boundary may flip
    assert abs(cpu - final["dev"]["accuracy"]) <= 0.1


def test_a_cuda_run_resumes_to_the_uninterrupted_result(cuda_teacher, small_glue, tmp_path,
                                                        monkeypatch):
    from tests.test_distill import _raise_interrupt, interrupt_at

    ref, out = tmp_path / "ref", tmp_path / "killed"
    assert main([*smoke_prune(cuda_teacher, small_glue, ref), "--device", "cuda"]) == 0
    args = [*smoke_prune(cuda_teacher, small_glue, out, "--set", "checkpoint_every=6"),
            "--device", "cuda"]
    undo = interrupt_at(monkeypatch, 13, _raise_interrupt)
    assert main(args) == 130
    undo()
    assert main([*args, "--resume"]) == 0
    a, b = (json.loads((r / "final.json").read_text()) for r in (ref, out))
    # the CUDA RNG state is checkpointed too; kernels may differ in the last bits
    assert a["dev"] == pytest.approx(b["dev"], abs=0.05)


def test_bench_runs_on_cuda(tiny_model_dir):
    from spd import bench

    result = bench.run(str(tiny_model_dir), "rte", batch=4, length=128, repeats=1,
                       device=torch.device("cuda"))
    assert result["training"]["ratio"] > 0 and result["peak_cuda_bytes"] > 0
    assert all(r["outputs_match"] for r in result["inference"])
    (semi,) = {r["sparse_kernel"] for r in result["inference"] if r["pattern"] == "2:4"}
    assert "semi-structured" in semi
