"""Dense fine-tuning of a teacher: the model's step and evaluation, run by `spd.loop`."""
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from spd import data, resume, rundir
from spd.lock import OutputLock
from spd.config import FinetuneConfig
from spd.data import TaskData, to_device
from spd.device import autocast, describe, process_wide_speed_settings
from spd.evaluation import evaluate, evaluate_dev
from spd.loop import (compiled, finish, keep_best, load_inputs, make_optimizer, open_run,
                      run_steps, run_summary, seed_everything, start_or_resume, train_loader)
from spd.schedules import warmup_linear_decay
from spd.tensorboard_log import Scalars
from spd.tasks import get_task

log = logging.getLogger(__name__)


@dataclass
class Progress(resume.Progress):
    """A fine-tuning run's progress: the shared fields and the training loss since the last
    evaluation."""

    loss_sum: float = 0.0
    n_loss: int = 0


class Dense:
    """The dense model being fine-tuned, with its optimizer: one step, one evaluation record,
    the state a checkpoint holds (a job of `spd.loop.run_steps`)."""

    def __init__(self, cfg: FinetuneConfig, model, td: TaskData, device, total: int,
                 steps_per_epoch: int):
        self.cfg, self.model, self.td, self.device = cfg, model, td, device
        self.steps_per_epoch = steps_per_epoch
        self.optimizer = make_optimizer(model, cfg.optim.lr, cfg.optim.weight_decay)
        warmup = round(cfg.optim.warmup_ratio * total)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: warmup_linear_decay(s, total, warmup))
        self.params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        self.forward = compiled(model, cfg.compile)

    def step(self, step: int, batch: dict, progress: Progress) -> None:
        batch = to_device(batch, self.device)
        with autocast(self.device, self.cfg.precision):
            loss = self.forward(**batch).loss
        value = loss.item()
        resume.check_loss({"loss": value}, step + 1, progress)
        loss.backward()
        resume.clip_gradients(self.params, self.cfg.optim.grad_clip, step + 1, progress)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        progress.step = step + 1
        progress.loss_sum, progress.n_loss = progress.loss_sum + value, progress.n_loss + 1

    def record(self, progress: Progress, elapsed: float, evaluate_now: bool = True) -> dict:
        """Evaluate dev (and the train subset), append the record, keep the best."""
        cfg, td, step = self.cfg, self.td, progress.step
        rec = {"step": step, "epoch": step / self.steps_per_epoch,
               "lr": self.scheduler.get_last_lr()[0],
               "train_loss": progress.loss_sum / progress.n_loss, "elapsed_s": elapsed,
               "dev": evaluate_dev(self.model, td, self.device, cfg.data.eval_batch_size,
                                   cfg.precision)}
        if td.train_subset:
            rec["train_subset"] = evaluate(self.model, td.train_subset, td.task, self.device,
                                           cfg.data.eval_batch_size, td.tokenizer.pad_token_id,
                                           precision=cfg.precision)
        progress.records.append(rec)
        progress.loss_sum, progress.n_loss = 0.0, 0
        keep_best(progress, rec, td.task.main_metric)
        log.info("step %d dev %s %.4f", step, td.task.main_metric, rec["dev"][td.task.main_metric])
        return rec

    def postfix(self, rec: dict) -> dict:
        main = self.td.task.main_metric
        return {main: f"{rec['dev'][main]:.4f}"}

    def state(self) -> dict:
        return resume.training_state(self.model, self.optimizer, self.scheduler, self.device)

    def load_state(self, ckpt: dict) -> None:
        resume.load_training_state(ckpt, self.model, self.optimizer, self.scheduler)


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
    lock = OutputLock(out_dir)
    tb = Scalars(out_dir, tensorboard)
    try:
        with process_wide_speed_settings(device):
            return _finetune(cfg, Path(out_dir), data_dir, device, overwrite, command, resume,
                             lock, tb)
    finally:
        tb.close()
        lock.release()


def _finetune(cfg, out_dir, data_dir, device, overwrite, command, resume_run, lock, tb) -> dict:
    task = get_task(cfg.task)
    opened = open_run(out_dir, cfg, overwrite, resume_run, lock)
    if opened.done:
        return opened.done
    seed_everything(cfg.seed)
    tokenizer, td, model = load_inputs(task, cfg.model, cfg.data, data_dir, fresh_head=True)
    model.to(device).train()
    loader = train_loader(td, cfg, device)
    total = len(loader) * cfg.optim.epochs
    if cfg.optim.max_steps:
        total = min(total, cfg.optim.max_steps)
    job = Dense(cfg, model, td, device, total, len(loader))
    batches = data.epochs(loader)
    progress, env = start_or_resume(opened, out_dir, cfg, lock, device, batches, job.load_state,
                                    Progress)
    log.info("fine-tuning %s on %s: %d train examples, %d steps, device %s%s",
             cfg.model, task.name, len(td.train), total, describe(device),
             f"; resuming at step {progress.step}" if progress.step else "")
    eval_every = cfg.eval_every or len(loader)
    wall = run_steps(job, batches, progress, total, out_dir, cfg, env, f"finetune {task.name}",
                     eval_every, log_every=eval_every, tb=tb)
    rundir.save_model(model, tokenizer, out_dir)
    final = {**run_summary(cfg, td, progress.records, progress.best, total, len(loader), wall,
                           env, command),
             "model": cfg.model, "resumed_at_steps": progress.resumed_at_steps}
    return finish(out_dir, final)
