"""Dense fine-tuning of a teacher: one readable, seeded training loop."""
import logging
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from spd import data, model_card, resume, rundir
from spd.config import FinetuneConfig
from spd.overrides import config_hash, to_dict
from spd.device import autocast, describe, process_wide_speed_settings
from spd.errors import SpdError
from spd.interrupt import stop_requests
from spd.metrics import compute_metrics, majority_baseline
from spd.models import load_classifier, load_tokenizer, max_positions
from spd.schedules import warmup_linear_decay
from spd.tensorboard_log import Scalars
from spd.tasks import Task, get_task

log = logging.getLogger(__name__)

# The train subset evaluated beside dev is the same for every seed, so gaps are comparable.
TRAIN_SUBSET_SEED = 0


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass
class TaskData:
    """A task's encoded splits, the fixed train subset and where the rows came from."""

    task: Task
    tokenizer: object
    train: list
    dev: dict  # dev split name -> encoded examples
    train_subset: list
    provenance: dict


def load_task_data(task: Task, tokenizer, data_dir: Path | None, max_length: int,
                   train_eval_size: int) -> TaskData:
    splits = ["train", *task.dev_splits]
    rows = {s: data.load_split(task, s, data_dir) for s in splits}
    enc = {s: data.encode(r, task, tokenizer, max_length) for s, r in rows.items()}
    g = torch.Generator().manual_seed(TRAIN_SUBSET_SEED)
    subset_idx = torch.randperm(len(enc["train"]), generator=g)[:train_eval_size].tolist()
    return TaskData(task, tokenizer, enc["train"], {s: enc[s] for s in task.dev_splits},
                    [enc["train"][i] for i in sorted(subset_idx)],
                    data.data_provenance(task, splits, data_dir))


def compiled(model, on: bool):
    """`torch.compile(model)` (dynamic shapes: batches are padded to their own length) when
    `on`, else the model. The compiled wrapper shares the model's parameters; the model itself
    stays eager for evaluation, checkpoints and export."""
    return torch.compile(model, dynamic=True) if on else model


def to_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


@torch.no_grad()
def evaluate(model, examples: list, task: Task, device, batch_size: int, pad_id: int,
             suffix: str = "", precision: str = "auto") -> dict:
    """GLUE metrics and mean loss of `model` on encoded examples (eval mode, no dropout)."""
    was_training = model.training
    model.eval()
    preds, labels, loss_sum = [], [], 0.0
    for batch in data.make_loader(examples, batch_size, pad_id, shuffle=False,
                                  pin_memory=device.type == "cuda"):
        batch = to_device(batch, device)
        with autocast(device, precision):
            out = model(**batch)
        logits = out.logits.float()
        loss_sum += out.loss.float().item() * len(batch["labels"])
        preds.append(logits.squeeze(-1) if task.is_regression else logits.argmax(-1))
        labels.append(batch["labels"])
    model.train(was_training)
    result = compute_metrics(task, torch.cat(preds).cpu().numpy(), torch.cat(labels).cpu().numpy(),
                             suffix)
    result[f"loss{suffix}"] = loss_sum / len(examples)
    return result


def evaluate_dev(model, td: TaskData, device, batch_size: int, precision: str = "auto") -> dict:
    out = {}
    for split, suffix in td.task.dev_splits.items():
        out.update(evaluate(model, td.dev[split], td.task, device, batch_size,
                            td.tokenizer.pad_token_id, suffix, precision))
    return out


def make_optimizer(model, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW; biases and LayerNorm weights get no weight decay."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim < 2 else decay).append(p)
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=lr)


def finished_run(out_dir: Path, cfg, overwrite: bool) -> dict | None:
    """Check `out_dir` before any work: the `final.json` of a finished run of `cfg`, or None.

    Refuses an unwritable folder, and one holding another configuration unless `overwrite`.
    """
    rundir.check_writable(out_dir)
    if rundir.check_existing(out_dir, cfg, overwrite):
        log.info("%s already holds a finished run of this configuration", out_dir)
        return rundir.read_json(Path(out_dir) / rundir.FINAL)
    return None


def load_inputs(task: Task, model_name: str, data_cfg, data_dir: Path | None,
                fresh_head: bool = False):
    """Tokenizer, encoded task data and classifier, with the length checked against the model;
    `fresh_head`: a saved head that does not fit the task starts afresh (fine-tuning) instead
    of being refused (a teacher)."""
    tokenizer = load_tokenizer(model_name)
    td = load_task_data(task, tokenizer, data_dir, data_cfg.max_length, data_cfg.train_eval_size)
    model = load_classifier(model_name, task, fresh_head)
    if data_cfg.max_length > max_positions(model):
        raise SpdError(f"data.max_length: got {data_cfg.max_length}; allowed: at most "
                       f"{max_positions(model)}, the model's max_position_embeddings")
    return tokenizer, td, model


def majority_dev(td: TaskData) -> dict:
    """Dev metrics of a constant prediction (the most frequent train label, or the train mean
    for regression): the floor a collapsed model sits at, beside every result."""
    train = [e["label"] for e in td.train]
    out = {}
    for split, suffix in td.task.dev_splits.items():
        out.update(majority_baseline(td.task, train, [e["label"] for e in td.dev[split]], suffix))
    return {k: float(v) for k, v in out.items()}


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


def progress_bar(total: int, desc: str, disable: bool = False) -> tqdm:
    """A progress bar with ETA; in a log file (not a terminal) a line every 30 s is enough."""
    return tqdm(total=total, desc=desc, unit="step", dynamic_ncols=True, disable=disable,
                mininterval=0.1 if sys.stderr.isatty() else 30)


@dataclass
class Progress(resume.Progress):
    """A fine-tuning run's progress: the shared fields and the training loss since the last
    evaluation."""

    loss_sum: float = 0.0
    n_loss: int = 0


def finetune(cfg: FinetuneConfig, out_dir: Path, data_dir: Path | None, device: torch.device,
             overwrite: bool = False, command: list[str] | None = None,
             resume: bool = False, tensorboard: bool = False) -> dict:
    """Fine-tune `cfg.model` on `cfg.task` and write the run directory `out_dir`
    (`tensorboard`: mirror its metrics into TensorBoard event files there too).

    Returns the contents of `final.json`. A folder that already holds a finished run of the
    same configuration is left as it is and its `final.json` returned. With `resume`, an
    interrupted run continues from its last checkpoint and ends with the same weights and
    metrics as an uninterrupted one (bitwise on the CPU).
    """
    lock = rundir.OutputLock(out_dir)
    tb = Scalars(out_dir, tensorboard)
    try:
        with process_wide_speed_settings(device):
            return _finetune(cfg, out_dir, data_dir, device, overwrite, command, resume, lock, tb)
    finally:
        tb.close()
        lock.release()


def _finetune(cfg, out_dir, data_dir, device, overwrite, command, resume_run, lock, tb) -> dict:
    task, out_dir = get_task(cfg.task), Path(out_dir)
    lock.check_free()
    seen = rundir.state(out_dir)
    done = finished_run(out_dir, cfg, overwrite)
    if done:
        return done
    ckpt = resume.resume_point(out_dir, overwrite, resume_run)
    seed_everything(cfg.seed)
    tokenizer, td, model = load_inputs(task, cfg.model, cfg.data, data_dir, fresh_head=True)
    model.to(device).train()
    loader = data.make_loader(td.train, cfg.data.batch_size, tokenizer.pad_token_id,
                              shuffle=True, seed=cfg.seed, pin_memory=device.type == "cuda",
                              group_by_length=cfg.data.group_by_length)
    total = len(loader) * cfg.optim.epochs
    if cfg.optim.max_steps:
        total = min(total, cfg.optim.max_steps)
    warmup = round(cfg.optim.warmup_ratio * total)
    eval_every = cfg.eval_every or len(loader)
    checkpoint_every = cfg.checkpoint_every or eval_every
    optimizer = make_optimizer(model, cfg.optim.lr, cfg.optim.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: warmup_linear_decay(s, total, warmup))
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    forward = compiled(model, cfg.compile)
    batches = data.epochs(loader)
    if ckpt is None:
        lock.acquire(seen)  # before the first write
        rundir.start(out_dir, to_dict(cfg))
        env = rundir.environment(describe(device))  # the code as it is now, when the run starts
        progress = Progress()
    else:
        progress = resume.resumed_progress(ckpt, Progress)
        env = resume.resumed_environment(ckpt, describe(device), progress.step)
        resume.load_training_state(ckpt, model, optimizer, scheduler)
        resume.check_config(ckpt, cfg)
        resume.skip_seen(batches, progress.step)
        resume.restore_rng(ckpt, device)
        lock.acquire(seen)  # after the checkpoint fits: a refused resume leaves no lock file

    log.info("fine-tuning %s on %s: %d train examples, %d steps, device %s%s",
             cfg.model, task.name, len(td.train), total, describe(device),
             f"; resuming at step {progress.step}" if progress.step else "")
    start = time.perf_counter() - progress.elapsed_s
    bar = progress_bar(total, f"finetune {task.name}")
    bar.update(progress.step)
    with stop_requests() as stop, bar:
        for step in range(progress.step, total):
            batch = to_device(next(batches), device)
            with autocast(device, cfg.precision):
                loss = forward(**batch).loss
            value = loss.item()
            resume.check_loss({"loss": value}, step + 1, progress)
            loss.backward()
            resume.clip_gradients(params, cfg.optim.grad_clip, step + 1, progress)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            progress.step = step + 1
            progress.loss_sum, progress.n_loss = progress.loss_sum + value, progress.n_loss + 1
            bar.update(1)
            if progress.step % eval_every == 0 or progress.step == total:
                rec = _evaluation(model, td, device, cfg, progress, scheduler, len(loader),
                                  time.perf_counter() - start)
                rundir.write_jsonl(out_dir / rundir.METRICS, progress.records)
                tb.log(rec)
                bar.set_postfix({task.main_metric: f"{rec['dev'][task.main_metric]:.4f}"})
            resume.checkpoint_or_stop(
                stop, progress, total, checkpoint_every, out_dir,
                lambda: {**resume.progress_state(progress, start), "env": env,
                         "config_hash": config_hash(cfg),
                         **resume.training_state(model, optimizer, scheduler, device)})
    wall = time.perf_counter() - start
    rundir.save_model(model, tokenizer, out_dir)
    final = {**run_summary(cfg, td, progress.records, progress.best, total, len(loader), wall,
                           env, command),
             "model": cfg.model, "resumed_at_steps": progress.resumed_at_steps}
    rundir.write_json(out_dir / rundir.FINAL, final)
    model_card.write(out_dir)
    (out_dir / rundir.CHECKPOINT).unlink(missing_ok=True)
    return final


def _evaluation(model, td: TaskData, device, cfg, progress: Progress, scheduler,
                steps_per_epoch: int, elapsed: float) -> dict:
    """Evaluate dev (and the train subset), append the record, keep the best; the record."""
    task, step = td.task, progress.step
    rec = {"step": step, "epoch": step / steps_per_epoch, "lr": scheduler.get_last_lr()[0],
           "train_loss": progress.loss_sum / progress.n_loss, "elapsed_s": elapsed,
           "dev": evaluate_dev(model, td, device, cfg.data.eval_batch_size, cfg.precision)}
    if td.train_subset:
        rec["train_subset"] = evaluate(model, td.train_subset, task, device,
                                       cfg.data.eval_batch_size, td.tokenizer.pad_token_id,
                                       precision=cfg.precision)
    progress.records.append(rec)
    progress.loss_sum, progress.n_loss = 0.0, 0
    if progress.best is None or rec["dev"][task.main_metric] > progress.best["dev"][task.main_metric]:
        progress.best = {"step": step, "dev": rec["dev"]}
    log.info("step %d dev %s %.4f", step, task.main_metric, rec["dev"][task.main_metric])
    return rec
