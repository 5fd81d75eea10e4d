"""`spd bench --epoch-steps N`: the time of an SPD epoch on a task's real lengths, old path
against new, measured in one run.

Variants: fp32 with shuffled batches (the path of every run before the `precision` and
`data.group_by_length` fields), bf16 autocast, length-grouped batches, and both. Each runs N
SPD steps of the pure-student stage (every student layer trains, masks at s_f) on the first N
batches its own loader yields for the same seed, after one untimed warm-up step; an epoch is
estimated as the mean step time times the steps per epoch. The padding fraction is counted
over a whole epoch of each loader.
"""
import statistics
import time

import torch

from spd import data, pruning
from spd.presets import spd_config
from spd.device import (autocast_dtype, cpu_has_fast_bf16, describe,
                        process_wide_speed_settings)
from spd.spd_train import Progress, Student
from spd.schedules import make_plan
from spd.tasks import get_task
from spd.loop import load_inputs

# (label, precision, group_by_length); the first is the old path every ratio is taken against.
VARIANTS = (("fp32, shuffled batches (old path)", "fp32", False),
            ("bf16 autocast, shuffled batches", "bf16", False),
            ("fp32, length-grouped batches", "fp32", True),
            ("bf16 autocast, length-grouped batches", "bf16", True))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _epoch_batches(td, batch_size: int, pad_id: int, seed: int, grouped: bool):
    """The index lists of one epoch of the loader `spd prune` would build."""
    loader = data.make_loader(td.train, batch_size, pad_id, shuffle=True, seed=seed,
                              group_by_length=grouped)
    return list(loader.batch_sampler)


def time_variant(model_name: str, task_name: str, data_dir, device, steps: int, precision: str,
                 grouped: bool, seed: int = 42) -> dict:
    cfg = spd_config(task_name, model_name, "cpu",
                     [f"precision={precision}", f"data.group_by_length={grouped}",
                      "theory_examples=0", f"seed={seed}"])
    tokenizer, td, teacher = load_inputs(get_task(task_name), model_name, cfg.data, data_dir)
    teacher.to(device).eval()
    pad_id = tokenizer.pad_token_id
    loader = data.make_loader(td.train, cfg.data.batch_size, pad_id, shuffle=True, seed=seed,
                              group_by_length=grouped)
    plan = make_plan(cfg, len(loader), len(td.train))
    student = Student(cfg, plan, teacher, td, tokenizer, device)
    pruning.prune_to(student.linears, cfg.prune.sparsity)
    progress = Progress(sparsity=cfg.prune.sparsity)
    student.model.train()
    first = plan.stage_ends[1]  # the pure-student stage: p = 1, every student layer trains
    batches = data.epochs(loader)
    student.step(first, next(batches), progress)  # warm-up, untimed
    times = []
    for i in range(steps):
        batch = next(batches)
        _sync(device)
        t0 = time.perf_counter()
        student.step(first + 1 + i, batch, progress)
        _sync(device)
        times.append(time.perf_counter() - t0)
    epoch = _epoch_batches(td, cfg.data.batch_size, pad_id, seed, grouped)
    return {"precision": precision, "group_by_length": grouped, "steps_timed": steps,
            "mean_step_s": statistics.fmean(times), "median_step_s": statistics.median(times),
            "steps_per_epoch": len(loader),
            "epoch_s": statistics.fmean(times) * len(loader),
            "padding_fraction": data.padding_fraction(td.train, epoch),
            "autocast": str(autocast_dtype(device, precision))}


def run(model_name: str, task_name: str, data_dir, device, steps: int) -> dict:
    with process_wide_speed_settings(device):
        rows = [{"label": label, **time_variant(model_name, task_name, data_dir, device, steps,
                                                precision, grouped)}
                for label, precision, grouped in VARIANTS]
    old = rows[0]["epoch_s"]
    for row in rows:
        row["speedup"] = old / row["epoch_s"]
    return {"model": model_name, "task": task_name, "device": describe(device),
            "cpu_fast_bf16": cpu_has_fast_bf16() if device.type == "cpu" else None,
            "torch": torch.__version__, "rows": rows}


def render(result: dict) -> str:
    lines = [f"spd bench (epoch): SPD on {result['task']} real lengths, {result['model']} on "
             f"{result['device']} (torch {result['torch']}; hardware bf16: "
             f"{result['cpu_fast_bf16']}), batch 32, pure-student steps at s_f", "",
             "| variant | s / step (mean) | epoch estimate s | padding fraction | speedup vs old |",
             "|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['label']} | {r['mean_step_s']:.3f} | {r['epoch_s']:.0f} | "
                     f"{r['padding_fraction']:.1%} | {r['speedup']:.2f}x |")
    return "\n".join(lines) + "\n"
