"""`spd bench`: where an SPD step's time goes, and what sparsity buys at inference.

Every figure is measured in one run on the machine it prints. Training: the parts of one SPD
step (as `spd.spd_train` runs it, in the pure-student stage where every student layer trains)
timed one by one, the whole step, and the bare minimum it is compared with: a teacher forward
plus a plain training step of an unmasked copy on the same batch (same trainable layers,
cross-entropy, AdamW). The ratio of the two is the price of SPD's machinery (grafting, masks,
hidden-state and attention outputs, loss terms). The FLOP rate is the step's model FLOPs
(teacher forward, student forward and backward: 4 forward passes, counted from the layer
shapes) per second, as a fraction of a dense float32 matmul rate measured in the same run.
Inference: a copy magnitude-pruned to each sparsity, and one pruned to the 2:4 pattern, with
dense kernels and with a sparse path (CSR weights through `torch.sparse.mm`, MKL on the CPU and
cuSPARSE on CUDA; for 2:4 on CUDA the semi-structured sparse tensor-core kernels, in fp16
against dense fp16), latency at batch 1 and throughput at batch 32, each sparse row checked
against the dense outputs.
"""
import copy
import logging
import resource
import statistics
import time
from pathlib import Path

import torch
from torch import nn

from spd import pruning, rundir
from spd.sparse_kernels import SEMI_KERNEL, sparse_path
from spd.presets import spd_config
from spd.device import autocast, describe, process_wide_speed_settings
from spd.spd_train import Progress, Student
from spd.losses import spd_loss
from spd.schedules import make_plan
from spd.grafting import draw_layers, set_layers
from spd.errors import SpdError
from spd.models import load_classifier, load_tokenizer, max_positions
from spd.tasks import get_task
from spd.data import TaskData

log = logging.getLogger(__name__)
SPARSITIES = (0.0, 0.5, 0.8, 0.9, 0.95)
# The inference rows: unstructured magnitude pruning at each sparsity, and the 2:4 pattern
# (2 of every 4 weights of a row kept) that sparse tensor cores run.
PATTERNS = (*(("unstructured", s) for s in SPARSITIES), ("2:4", 0.5))
TOLERANCE = 1e-4  # max |logit difference| allowed between a sparse path and dense kernels (fp32)
HALF_TOLERANCE = 1e-2  # the same in fp16, where the 2:4 kernels run (CUDA)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved(fns, device, repeats: int, warmup: int = 1) -> list[float]:
    """Median seconds of each function, timed in turn `repeats` times after `warmup` rounds."""
    times = [[] for _ in fns]
    for r in range(warmup + repeats):
        for fn, ts in zip(fns, times):
            _sync(device)
            t0 = time.perf_counter()
            fn()
            _sync(device)
            if r >= warmup:
                ts.append(time.perf_counter() - t0)
    return [statistics.median(ts) for ts in times]


def timed(fn, device, repeats: int, warmup: int = 1) -> float:
    """Median seconds of `fn()` over `repeats` runs after `warmup` runs."""
    return interleaved([fn], device, repeats, warmup)[0]


def random_batch(vocab: int, batch: int, length: int, num_labels: int, device) -> dict:
    g = torch.Generator().manual_seed(0)
    return {"input_ids": torch.randint(1000, vocab, (batch, length), generator=g).to(device),
            "token_type_ids": torch.zeros(batch, length, dtype=torch.long, device=device),
            "attention_mask": torch.ones(batch, length, dtype=torch.long, device=device),
            "labels": torch.randint(0, max(num_labels, 1), (batch,), generator=g).to(device)}


def forward_flops(model, batch: int, length: int) -> float:
    """Multiply-adds x 2 of one forward pass: every encoder linear, plus attention scores and
    the weighted sum (embeddings and head are negligible)."""
    layers = pruning.encoder_layers(model)
    linear = sum(m.in_features * m.out_features for layer in layers for m in layer.modules()
                 if isinstance(m, nn.Linear))
    hidden = model.config.hidden_size
    attention = 2 * length * length * hidden * len(layers)  # QK^T and PV, per example
    return 2.0 * batch * (length * linear + attention)


def matmul_rate(device, n: int = 1024, repeats: int = 5) -> float:
    """Dense float32 matmul FLOP/s of this machine (n x n x n)."""
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    return 2 * n ** 3 / timed(lambda: a @ b, device, repeats)


def training_breakdown(model_name: str, task_name: str, batch: int, length: int, device,
                       repeats: int) -> dict:
    task = get_task(task_name)
    tokenizer = load_tokenizer(model_name)
    teacher = load_classifier(model_name, task).to(device).eval()
    if length > max_positions(teacher):
        raise SpdError(f"--length: got {length}; allowed: at most {max_positions(teacher)}, the "
                       f"model's max_position_embeddings")
    cfg = spd_config(task.name, model_name, "cpu", ["theory_examples=0"])
    plan = make_plan(cfg, steps_per_epoch=100)
    td = TaskData(task, tokenizer, [], {"validation": []}, [], {})
    student = Student(cfg, plan, teacher, td, tokenizer, device)
    data = random_batch(tokenizer.vocab_size, batch, length, task.num_labels, device)
    inputs = {k: v for k, v in data.items() if k != "labels"}
    last = plan.total - 1  # the pure-student stage: p = 1, every student layer trains
    pruning.prune_to(student.linears, cfg.prune.sparsity)
    progress = Progress(sparsity=cfg.prune.sparsity)
    model, n = student.model, student.n_layers
    model.train()  # dropout on, as in `spd.spd_train.train_spd`
    parts = {}
    parts["layer draws"] = timed(lambda: set_layers(model, draw_layers(cfg.seed, last, 1.0, n)),
                                 device, repeats)
    masks = timed(lambda: pruning.prune_to(student.linears, cfg.prune.sparsity), device, repeats)
    parts["mask upkeep (per step, amortised)"] = masks / plan.interval

    def teacher_fwd():
        with torch.no_grad(), autocast(device):
            return teacher(**inputs, output_hidden_states=True, output_attentions=True)

    t_out = teacher_fwd()
    parts["teacher forward"] = timed(teacher_fwd, device, repeats)

    def student_fwd():
        with autocast(device):
            return model(**inputs, output_hidden_states=True, output_attentions=True)

    parts["student forward"] = timed(student_fwd, device, repeats)
    s_out = student_fwd()

    def loss_of(out):
        with autocast(device):
            return spd_loss(out, t_out, data["labels"], task, cfg.loss)[0]

    parts["loss terms"] = timed(lambda: loss_of(s_out), device, repeats)

    def fwd_bwd():
        loss_of(student_fwd()).backward()
        student.optimizer.zero_grad(set_to_none=True)

    parts["student backward"] = max(0.0, timed(fwd_bwd, device, repeats)
                                    - parts["student forward"] - parts["loss terms"])

    plain = copy.deepcopy(teacher).train()
    params = [p for layer in pruning.encoder_layers(plain) for p in layer.parameters()]
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=1e-5)

    def plain_step():
        with torch.no_grad(), autocast(device):
            teacher(**inputs)
        with autocast(device):
            loss = nn.functional.cross_entropy(plain(**inputs).logits.float(), data["labels"])
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    # The two steps alternate, so that drifts in the machine's speed hit both alike.
    step, minimum = interleaved([lambda: student.step(last, data, progress), plain_step], device,
                                repeats)
    parts["optimizer and the rest (residual)"] = max(0.0, step - sum(parts.values()))
    flops = 4 * forward_flops(teacher, batch, length)
    rate = matmul_rate(device)
    return {"batch": batch, "length": length, "parts_s": parts, "spd_step_s": step,
            "minimum_step_s": minimum, "ratio": step / minimum,
            "step_flops": flops, "achieved_flop_rate": flops / step,
            "matmul_flop_rate": rate, "flop_rate_fraction": flops / step / rate}


def inference_table(model_name: str, task_name: str, length: int, device, repeats: int,
                    patterns=PATTERNS) -> list[dict]:
    task = get_task(task_name)
    tokenizer = load_tokenizer(model_name)
    base = load_classifier(model_name, task).to(device).eval()
    rows = []
    for pattern, s in patterns:
        model = copy.deepcopy(base)
        linears = pruning.prunable_linears(pruning.encoder_layers(model))
        pruning.attach_masks(linears)
        pruning.prune_to(linears, s, pattern=pattern)
        pruning.bake(linears)
        fast, kernel = sparse_path(model, pattern, device)
        half = kernel == SEMI_KERNEL  # dense is timed in fp16 too, for a like-for-like row
        if half:
            model = model.half()
        for batch in (1, 32):
            data = random_batch(tokenizer.vocab_size, batch, length, task.num_labels, device)
            inputs = {k: v for k, v in data.items() if k != "labels"}
            with torch.no_grad():
                dense_out = model(**inputs).logits
                sparse_out = fast(**inputs).logits
                t_dense = timed(lambda: model(**inputs), device, repeats)
                t_sparse = timed(lambda: fast(**inputs), device, repeats)
            diff = float((dense_out.float() - sparse_out.float()).abs().max())
            tolerance = HALF_TOLERANCE if half else TOLERANCE
            rows.append({"pattern": pattern, "sparsity": s, "batch": batch, "length": length,
                         "dense_kernel": "dense (torch.nn.functional.linear"
                                         + (", fp16)" if half else ")"),
                         "sparse_kernel": kernel, "dense_s": t_dense, "sparse_s": t_sparse,
                         "speedup": t_dense / t_sparse, "max_abs_diff": diff,
                         "tolerance": tolerance, "outputs_match": diff <= tolerance})
    return rows


def run(model_name: str = "minilm", task: str = "mrpc", batch: int = 32, length: int = 128,
        repeats: int = 3, device=None, patterns=PATTERNS) -> dict:
    device = device or torch.device("cpu")
    with process_wide_speed_settings(device):  # as every training run does
        train = training_breakdown(model_name, task, batch, length, device, repeats)
        inference = inference_table(model_name, task, length, device, repeats, patterns)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    return {"model": model_name, "task": task, "device": describe(device),
            "torch": torch.__version__, "training": train, "inference": inference,
            "peak_rss_bytes": peak,
            "peak_cuda_bytes": torch.cuda.max_memory_allocated(device) if device.type == "cuda"
            else None, "tolerance": TOLERANCE}


def render(result: dict) -> str:
    t = result["training"]
    lines = [f"spd bench: {result['model']} on {result['device']} (torch {result['torch']}), "
             f"batch {t['batch']}, length {t['length']}", "",
             "| part of one SPD step | ms | share |", "|---|---|---|"]
    for name, s in t["parts_s"].items():
        lines.append(f"| {name} | {s * 1e3:.1f} | {s / t['spd_step_s']:.1%} |")
    lines += [f"| **whole SPD step** | {t['spd_step_s'] * 1e3:.1f} | 100% |",
              f"| minimum: teacher forward + plain student step | {t['minimum_step_s'] * 1e3:.1f} "
              f"| |", "",
              f"SPD step / minimum = {t['ratio']:.3f}. Model FLOPs per step "
              f"{t['step_flops'] / 1e9:.1f} G; achieved {t['achieved_flop_rate'] / 1e9:.1f} "
              f"GFLOP/s = {t['flop_rate_fraction']:.1%} of this machine's dense float32 matmul "
              f"rate ({t['matmul_flop_rate'] / 1e9:.1f} GFLOP/s, measured in the same run).", "",
              "| pattern | sparsity | batch | dense ms | sparse ms | sparse kernel | speedup "
              "(dense / sparse) | max abs diff | outputs match |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in result["inference"]:
        lines.append(f"| {r['pattern']} | {r['sparsity']:g} | {r['batch']} | "
                     f"{r['dense_s'] * 1e3:.1f} | "
                     f"{r['sparse_s'] * 1e3:.1f} | {r['sparse_kernel']} | {r['speedup']:.2f}x | "
                     f"{r['max_abs_diff']:.1e} | {'yes' if r['outputs_match'] else '**no**'} |")
    lines += ["", f"Peak memory of this process (teacher, SPD student, optimizer, activations): "
              f"{result['peak_rss_bytes'] / 2 ** 30:.2f} GiB RSS"
              + (f", {result['peak_cuda_bytes'] / 2 ** 30:.2f} GiB CUDA"
                 if result["peak_cuda_bytes"] else "") + "."]
    return "\n".join(lines) + "\n"


def write(result: dict, output: Path) -> None:
    output.mkdir(parents=True, exist_ok=True)
    rundir.write_json(output / "bench.json", result)
    rundir.write_text(output / "bench.md", render(result))
