"""`spd bench` on a tiny random BERT: every figure present, sparse outputs match dense."""
import json

from spd import bench, bench_epoch
from spd.cli import main


def test_bench_reports_every_part_the_ratio_and_matching_sparse_outputs(tiny_model_dir, tmp_path,
                                                                        capsys):
    out = tmp_path / "bench"
    assert main(["bench", "--model", str(tiny_model_dir), "--batch", "4", "--length", "16",
                 "--repeats", "1", "--output", str(out), "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    result = json.loads((out / "bench.json").read_text())
    t = result["training"]
    assert {"teacher forward", "student forward", "student backward", "loss terms",
            "layer draws", "mask upkeep (per step, amortised)"} <= set(t["parts_s"])
    assert t["ratio"] == t["spd_step_s"] / t["minimum_step_s"] > 0
    assert 0 < t["flop_rate_fraction"] == t["achieved_flop_rate"] / t["matmul_flop_rate"]
    rows = result["inference"]
    assert [(r["pattern"], r["sparsity"], r["batch"]) for r in rows] == [
        (p, s, b) for p, s in bench.PATTERNS for b in (1, 32)]
    assert all(r["outputs_match"] and r["max_abs_diff"] <= r["tolerance"] <= bench.TOLERANCE
               for r in rows)
    two_four = [r for r in rows if r["pattern"] == "2:4"]
    assert two_four and all(r["sparse_kernel"].startswith("CSR") for r in two_four)  # CPU
    assert f"{t['ratio']:.3f}" in printed and (out / "bench.md").read_text() == printed


def test_forward_flops_counts_linears_and_attention(tiny_model_dir):
    from spd.models import load_classifier
    from spd.tasks import get_task

    model = load_classifier(str(tiny_model_dir), get_task("mrpc"))
    cfg = model.config  # 2 layers, hidden 128, intermediate from the config
    per_layer = 4 * cfg.hidden_size ** 2 + 2 * cfg.hidden_size * cfg.intermediate_size
    expected = 2 * 3 * (16 * 2 * per_layer + 2 * 16 * 16 * cfg.hidden_size * 2)
    assert bench.forward_flops(model, batch=3, length=16) == expected


def test_bad_bench_input_is_refused(capsys):
    assert main(["bench", "--batch", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--batch" in err


def test_the_epoch_bench_times_every_variant_and_checks_the_teacher_cache(tiny_model_dir,
                                                                          small_glue, tmp_path,
                                                                          capsys):
    out = tmp_path / "epoch"
    assert main(["bench", "--model", str(tiny_model_dir), "--task", "rte", "--data-dir",
                 str(small_glue), "--epoch-steps", "1", "--output", str(out), "--device",
                 "cpu"]) == 0
    printed = capsys.readouterr().out
    result = json.loads((out / "bench_epoch.json").read_text())
    rows = result["rows"]
    assert [r["label"] for r in rows] == [label for label, _ in bench_epoch.VARIANTS]
    assert rows[0]["speedup"] == 1.0
    cached = [r for r in rows if r["teacher_cache"]]
    assert len(cached) == 2 and all(r["teacher_cache"]["examples"] == 40 for r in cached)
    parity = result["cache_parity"]
    assert parity["batches"] > 0 and parity["max_abs_diff"] <= parity["tolerance"]
    assert "teacher cache" in printed and (out / "bench_epoch.md").read_text() == printed
