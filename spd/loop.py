"""The one training-loop skeleton that dense fine-tuning (`spd.finetune`) and SPD
(`spd.spd_train`) share: open a run folder (finished, resumable or new), start or resume it,
run the steps with their evaluation, log, checkpoint and signal handling, and finish it.

A run is a job with four methods; the skeleton owns everything around them:
- `step(step, batch, progress)`: one optimizer step; sets `progress.step = step + 1`;
- `record(progress, elapsed, evaluate_now)`: the log record (with metrics when
  `evaluate_now`), appended to `progress.records`;
- `postfix(record)`: what the progress bar shows after an evaluation;
- `state()`: the weights, optimizer, scheduler and RNG a checkpoint holds.
Non-finite losses and gradients are refused inside the jobs' steps (`resume.check_loss`,
`resume.clip_gradients`), naming the checkpoint that is kept.
"""
import logging
import random
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from spd import data, model_card, parallel, resume, rundir
from spd.data import TaskData
from spd.device import describe
from spd.errors import SpdError
from spd.evaluation import majority_dev
from spd.interrupt import Stopped, stop_requests
from spd.lock import OutputLock
from spd.models import load_classifier, load_tokenizer, max_positions
from spd.overrides import config_hash, to_dict
from spd.tasks import Task

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def compiled(model, on: bool):
    """`torch.compile(model)` (dynamic shapes: batches are padded to their own length) when
    `on`, else the model. The compiled wrapper shares the model's parameters; the model itself
    stays eager for evaluation, checkpoints and export."""
    return torch.compile(model, dynamic=True) if on else model


def make_optimizer(model, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW; biases and LayerNorm weights get no weight decay."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim < 2 else decay).append(p)
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=lr)


def load_inputs(task: Task, model_name: str, data_cfg, data_dir: Path | None,
                fresh_head: bool = False):
    """Tokenizer, encoded task data and classifier, with the length checked against the model;
    `fresh_head`: a saved head that does not fit the task starts afresh (fine-tuning) instead
    of being refused (a teacher)."""
    tokenizer = load_tokenizer(model_name)
    td = data.load_task_data(task, tokenizer, data_dir, data_cfg.max_length,
                             data_cfg.train_eval_size)
    model = load_classifier(model_name, task, fresh_head)
    if data_cfg.max_length > max_positions(model):
        raise SpdError(f"data.max_length: got {data_cfg.max_length}; allowed: at most "
                       f"{max_positions(model)}, the model's max_position_embeddings")
    return tokenizer, td, model


def train_loader(td: TaskData, cfg, device):
    """The seeded, shuffled batches of the training split, as the run's data section says."""
    return data.make_loader(td.train, cfg.data.batch_size, td.tokenizer.pad_token_id,
                            shuffle=True, seed=cfg.seed, pin_memory=device.type == "cuda",
                            group_by_length=cfg.data.group_by_length)


def progress_bar(total: int, desc: str, disable: bool = False) -> tqdm:
    """A progress bar with ETA; in a log file (not a terminal) a line every 30 s is enough."""
    return tqdm(total=total, desc=desc, unit="step", dynamic_ncols=True, disable=disable,
                mininterval=0.1 if sys.stderr.isatty() else 30)


def finished_run(out_dir: Path, cfg, overwrite: bool) -> dict | None:
    """Check `out_dir` before any work: the `final.json` of a finished run of `cfg`, or None.

    Refuses an unwritable folder, and one holding another configuration unless `overwrite`.
    """
    rundir.check_writable(out_dir)
    if rundir.check_existing(out_dir, cfg, overwrite):
        log.info("%s already holds a finished run of this configuration", out_dir)
        return rundir.read_json(Path(out_dir) / rundir.FINAL)
    return None


@dataclass
class Opened:
    """What `open_run` found: a finished run's `final.json`, or the checkpoint to resume (None:
    start afresh), and the folder's state before this process wrote anything."""

    done: dict | None
    ckpt: dict | None
    seen: object


def open_run(out_dir: Path, cfg, overwrite: bool, resume_run: bool, lock: OutputLock,
             world: parallel.World = parallel.World(), check=None) -> Opened:
    """Look at `out_dir` before any work; `check(found, verb)` may refuse a finished run
    ("counted as finished") or a checkpoint ("resumed") it found."""
    if world.is_main:
        lock.check_free()
    seen = rundir.state(out_dir)
    done = finished_run(out_dir, cfg, overwrite)
    if done:
        if check:
            check(done, "counted as finished")
        return Opened(done, None, seen)
    ckpt = resume.resume_point(out_dir, overwrite, resume_run)
    if ckpt is not None and check:
        check(ckpt, "resumed")
    world.barrier()  # every rank has read the folder before rank 0 writes to it
    return Opened(None, ckpt, seen)


def start_or_resume(opened: Opened, out_dir: Path, cfg, lock: OutputLock, device,
                    batches, load_state, progress_cls, env_extra: dict | None = None,
                    world: parallel.World = parallel.World()):
    """A new run: its folder started (config.json) and the environment recorded. A resumed
    one: its progress, weights and optimizer (`load_state(ckpt)`), the data it has seen
    skipped and the RNG restored. Returns (progress, env)."""
    ckpt = opened.ckpt
    if ckpt is None:
        env = {}
        if world.is_main:
            lock.acquire(opened.seen)  # before the first write
            rundir.start(out_dir, to_dict(cfg))
            env = {**rundir.environment(describe(device)), **(env_extra or {})}
        return progress_cls(), env
    progress = resume.resumed_progress(ckpt, progress_cls)
    env = resume.resumed_environment(ckpt, describe(device), progress.step)
    load_state(ckpt)  # another architecture is named as such, before the hash
    resume.check_config(ckpt, cfg)
    resume.skip_seen(batches, progress.step)
    resume.restore_rng(ckpt, device)
    if world.is_main:
        lock.acquire(opened.seen)  # after the checkpoint fits: a refused one leaves no lock
    return progress, env


def run_steps(job, batches, progress, total: int, out_dir: Path, cfg, env: dict, desc: str,
              eval_every: int, log_every: int, checkpoint_extra: dict | None = None,
              tb=None, world: parallel.World = parallel.World()) -> float:
    """Steps `progress.step` to `total`: log every `log_every` steps and evaluate every
    `eval_every` (and at the end), writing `metrics.jsonl`; checkpoint every
    `cfg.checkpoint_every` (default: at each evaluation) and on SIGINT/SIGTERM, then stop.
    Returns the wall time of the whole run, resumed segments included."""
    checkpoint_every = cfg.checkpoint_every or eval_every
    start = time.perf_counter() - progress.elapsed_s
    bar = progress_bar(total, desc, disable=not world.is_main)
    bar.update(progress.step)
    with stop_requests() as stop, bar:
        for step in range(progress.step, total):
            job.step(step, next(batches), progress)
            bar.update(1)
            done = progress.step
            if world.size > 1:  # every rank stops at the same step when any was signalled
                flag = world.mean(torch.tensor([float(stop.requested)]))
                if flag.item() > 0 and not stop.requested:
                    stop.signum = signal.SIGTERM
            if not world.is_main:
                if stop.requested and done < total:
                    raise Stopped(stop.signum, f"{stop.name} at step {done}: rank {world.rank} "
                                               f"stopped; rank 0 wrote the checkpoint")
                continue
            evaluate_now = done % eval_every == 0 or done == total
            if done % log_every == 0 or evaluate_now:
                rec = job.record(progress, time.perf_counter() - start, evaluate_now)
                rundir.write_jsonl(out_dir / rundir.METRICS, progress.records)
                if tb is not None:
                    tb.log(rec)
                if evaluate_now:
                    bar.set_postfix(job.postfix(rec))
            resume.checkpoint_or_stop(
                stop, progress, total, checkpoint_every, out_dir,
                lambda: {**resume.progress_state(progress, start), "env": env,
                         **(checkpoint_extra or {}), "config_hash": config_hash(cfg),
                         "config": to_dict(cfg),
                         **job.state()})
    return time.perf_counter() - start


def keep_best(progress, rec: dict, main_metric: str) -> None:
    """Note `rec` as the best evaluation so far when its dev metric beats the best's."""
    if progress.best is None or rec["dev"][main_metric] > progress.best["dev"][main_metric]:
        progress.best = {"step": rec["step"], "dev": rec["dev"]}


def run_summary(cfg, td: TaskData, records: list[dict], best: dict, steps: int,
                steps_per_epoch: int, wall: float, env: dict, command: list[str] | None) -> dict:
    """The fields of `final.json` that every kind of run shares."""
    return {
        "task": td.task.name, "seed": cfg.seed, "config_hash": config_hash(cfg),
        "steps": steps, "epochs": steps / steps_per_epoch, "wall_time_s": wall,
        "main_metric": td.task.main_metric, "dev": records[-1]["dev"],
        "majority_dev": majority_dev(td),
        "best_dev_during_training": best, "train_subset": records[-1].get("train_subset"),
        "num_train_examples": len(td.train),
        "num_dev_examples": {s: len(e) for s, e in td.dev.items()},
        "data": td.provenance, "environment": env, "command": command,
    }


def finish(out_dir: Path, final: dict, report=None) -> dict:
    """Write `final.json` and the model card (and `report(out_dir)`, a run report); the
    checkpoint goes, since the finished run replaces it."""
    rundir.write_json(out_dir / rundir.FINAL, final)
    model_card.write(out_dir)
    if report:
        report(out_dir)
    (out_dir / rundir.CHECKPOINT).unlink(missing_ok=True)
    return final
