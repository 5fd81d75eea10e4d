"""`spd bench --epoch-steps N`: the time of an SPD epoch on a task's real lengths, old path
against new, measured in one run.

Variants: fp32 with shuffled batches (the path of every run before the `precision` and
`data.group_by_length` fields), bf16 autocast, length-grouped batches, and both; then, on top
of both, the teacher cache (`teacher_cache`), the perturbed copies of the default recipe
(`augment.rate=0.5`: half of each batch is new to the teacher, so the cache serves only the
other half) and the two together. Each runs N SPD steps of the pure-student stage (every
student layer trains, masks at s_f) on the first N batches its own loader yields for the same
seed, after one untimed warm-up step; an epoch is estimated as the mean step time times the
steps per epoch, plus the one-off cache build spread over `EPOCHS_PER_RUN` epochs. The padding
fraction is counted over a whole epoch of each loader. The cache's parity: on the first
batches of an fp32 epoch, the cached teacher outputs against the teacher run on each batch, at
real tokens (where the loss looks).
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
from spd.teacher_cache import TeacherCache, teacher_outputs
from spd.loop import load_inputs

NEW = ["precision=bf16", "data.group_by_length=true"]
CACHE = ["loss.padding=exclude", "teacher_cache=8"]  # GiB: all of MRPC in bf16 is about 2
COPIES = ["augment.rate=0.5"]
# (label, overrides); the first is the old path every ratio is taken against.
VARIANTS = (("fp32, shuffled batches (old path)", ["precision=fp32", "data.group_by_length=false"]),
            ("bf16 autocast, shuffled batches", ["precision=bf16", "data.group_by_length=false"]),
            ("fp32, length-grouped batches", ["precision=fp32", "data.group_by_length=true"]),
            ("bf16 autocast, length-grouped batches", NEW),
            ("bf16, grouped, teacher cache", [*NEW, *CACHE]),
            ("bf16, grouped, perturbed copies (the default recipe's batches)", [*NEW, *COPIES]),
            ("bf16, grouped, perturbed copies, teacher cache", [*NEW, *COPIES, *CACHE]))
EPOCHS_PER_RUN = 10  # the default recipe's length, over which a cache build is spread
PARITY_BATCHES = 8
PARITY_TOLERANCE = 1e-4  # max |difference| of any teacher output at real tokens (fp32)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _epoch_batches(td, batch_size: int, pad_id: int, seed: int, grouped: bool):
    """The index lists of one epoch of the loader `spd prune` would build."""
    loader = data.make_loader(td.train, batch_size, pad_id, shuffle=True, seed=seed,
                              group_by_length=grouped)
    return list(loader.batch_sampler)


def time_variant(model_name: str, task_name: str, data_dir, device, steps: int,
                 overrides: list[str], seed: int = 42) -> dict:
    cfg = spd_config(task_name, model_name, "cpu",
                     [*overrides, "theory_examples=0", f"seed={seed}"])
    grouped = cfg.data.group_by_length
    tokenizer, td, teacher = load_inputs(get_task(task_name), model_name, cfg.data, data_dir)
    teacher.to(device).eval()
    pad_id = tokenizer.pad_token_id
    loader = data.make_loader(td.train, cfg.data.batch_size, pad_id, shuffle=True, seed=seed,
                              group_by_length=grouped)
    plan = make_plan(cfg, len(loader), len(td.train))
    student = Student(cfg, plan, teacher, td, tokenizer, device)
    build = student.cache.build_s if student.cache else 0.0
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
    cache = student.cache
    return {"overrides": overrides, "precision": cfg.precision, "group_by_length": grouped,
            "steps_timed": steps, "mean_step_s": statistics.fmean(times),
            "median_step_s": statistics.median(times), "steps_per_epoch": len(loader),
            "epoch_s": statistics.fmean(times) * len(loader) + build / EPOCHS_PER_RUN,
            "padding_fraction": data.padding_fraction(td.train, epoch),
            "autocast": str(autocast_dtype(device, cfg.precision)),
            "teacher_cache": cache and {
                "examples": cache.cached, "gib": cache.bytes / 2 ** 30, "build_s": build,
                "hit_fraction": cache.hits / max(1, cache.hits + cache.misses)}}


def cache_parity(model_name: str, task_name: str, data_dir, device, seed: int = 42) -> dict:
    """The largest difference between cached and freshly computed teacher outputs (fp32) at
    real tokens, over the first batches of an epoch."""
    cfg = spd_config(task_name, model_name, "cpu", ["precision=fp32", f"seed={seed}"])
    tokenizer, td, teacher = load_inputs(get_task(task_name), model_name, cfg.data, data_dir)
    teacher.to(device).eval()
    pad_id = tokenizer.pad_token_id
    cache = TeacherCache(teacher, td.train, pad_id, device, "fp32", cfg.data.eval_batch_size,
                         2 ** 40)
    worst, n = 0.0, 0
    loader = data.make_loader(td.train, cfg.data.batch_size, pad_id, shuffle=True, seed=seed)
    for batch in loader:
        inputs = {k: v.to(device) for k, v in batch.items() if k != "labels"}
        got, want = cache(inputs), teacher_outputs(teacher, inputs, device, "fp32")
        worst = max(worst, float((got.logits - want.logits).abs().max()))
        for r, length in enumerate(inputs["attention_mask"].sum(1).tolist()):
            for g, w in zip(got.hidden_states, want.hidden_states, strict=True):
                worst = max(worst, float((g[r, :length] - w[r, :length]).abs().max()))
            for g, w in zip(got.attentions, want.attentions, strict=True):
                worst = max(worst, float((g[r, :, :length, :length]
                                          - w[r, :, :length, :length]).abs().max()))
        n += 1
        if n == PARITY_BATCHES:
            break
    return {"batches": n, "examples_cached": cache.cached, "max_abs_diff": worst,
            "tolerance": PARITY_TOLERANCE, "hits": cache.hits, "misses": cache.misses}


def run(model_name: str, task_name: str, data_dir, device, steps: int) -> dict:
    with process_wide_speed_settings(device):
        rows = [{"label": label, **time_variant(model_name, task_name, data_dir, device, steps,
                                                overrides)}
                for label, overrides in VARIANTS]
        parity = cache_parity(model_name, task_name, data_dir, device)
    old = rows[0]["epoch_s"]
    for row in rows:
        row["speedup"] = old / row["epoch_s"]
    return {"model": model_name, "task": task_name, "device": describe(device),
            "cpu_fast_bf16": cpu_has_fast_bf16() if device.type == "cpu" else None,
            "torch": torch.__version__, "rows": rows, "cache_parity": parity}


def render(result: dict) -> str:
    lines = [f"spd bench (epoch): SPD on {result['task']} real lengths, {result['model']} on "
             f"{result['device']} (torch {result['torch']}; hardware bf16: "
             f"{result['cpu_fast_bf16']}), batch 32, pure-student steps at s_f", "",
             "| variant | s / step (mean) | epoch estimate s | padding fraction | "
             "teacher cache (examples, GiB, build s, hits) | speedup vs old |",
             "|---|---|---|---|---|---|"]
    for r in result["rows"]:
        c = r["teacher_cache"]
        cache = (f"{c['examples']}, {c['gib']:.2f}, {c['build_s']:.0f}, "
                 f"{c['hit_fraction']:.0%}" if c else "")
        lines.append(f"| {r['label']} | {r['mean_step_s']:.3f} | {r['epoch_s']:.0f} | "
                     f"{r['padding_fraction']:.1%} | {cache} | {r['speedup']:.2f}x |")
    p = result["cache_parity"]
    lines += ["", f"Teacher cache parity (fp32, {p['batches']} batches, "
              f"{p['hits']} rows from the cache): largest difference from the teacher run on "
              f"the batch, at real tokens, {p['max_abs_diff']:.1e} (tolerance "
              f"{p['tolerance']:.0e}). An epoch estimate with the cache includes a tenth of "
              f"its one-off build (a 10-epoch run)."]
    return "\n".join(lines) + "\n"
