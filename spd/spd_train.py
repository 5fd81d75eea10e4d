"""Sparse progressive distillation: prune a student while the dense teacher distils into it
(the SPD training run: the student's step and record, run by `spd.loop`).

One step: update the masks if the cubic schedule moved, draw which layers run as student,
run the teacher (eval, no grad) and the grafted student on the same batch, and take an AdamW
step on the weighted sum of the loss terms (`spd.losses.spd_loss`). The plan and every schedule
are pure functions of the step (`spd.schedules`); this module only wires them to the model.
"""
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch

from spd import data, parallel, pruning, records, resume, rundir
from spd.audit import audit
from spd.augment import Noise
from spd.distil_config import SPDConfig
from spd.data import to_device
from spd.device import autocast, describe, process_wide_speed_settings
from spd.errors import SpdError
from spd.evaluation import evaluate, evaluate_dev
from spd.report import method_name, write_run_report
from spd.grafting import (draw_layers, export_student, make_student, set_layers,
                          drop_student_dropout, set_trainable_head, set_trainable_rest, slots,
                          student_layers)
from spd.losses import spd_loss
from spd.teacher_cache import TeacherCache, teacher_outputs
from spd.schedules import Plan, lr_at, make_plan, replace_p_at, sparsity_at
from spd.tasks import get_task
from spd.lock import OutputLock
from spd.loop import (compiled, finish, keep_best, load_inputs, make_optimizer, open_run,
                      run_steps, run_summary, seed_everything, start_or_resume, train_loader)
from spd.models import check_pattern_fits, recorded_config, recorded_device
from spd.overrides import to_dict
from spd.probe import probe
from spd.tensorboard_log import Scalars

log = logging.getLogger(__name__)
SPARSITY_FILE = "sparsity.json"


def teacher_path(name: str) -> str:
    """The teacher to load: a run folder's `model/`, a model folder or a hub id."""
    if not name:
        raise SpdError("--teacher: got ''; allowed: a teacher run folder, model folder or hub id")
    return rundir.model_source(name)


def teacher_precision(name: str) -> str:
    """The precision a teacher run folder was fine-tuned and evaluated in, on any device: its
    dev metrics are its identity (`records.same_teacher`), and bf16 on a GPU would change a
    CPU-made teacher's. `auto` (or no field: runs from before it) means fp32 where it ran on the
    CPU and bf16 on CUDA; a model folder or hub id, or a run with no final.json, gets `auto`."""
    precision = (recorded_config(name) or {}).get("precision", "auto")
    if precision != "auto":
        return precision
    ran_on = recorded_device(name)
    if ran_on is None:
        return "auto"
    return "fp32" if ran_on.startswith("cpu") else "bf16"


@dataclass
class Progress(resume.Progress):
    """An SPD run's progress: the shared fields, the loss sums and the current sparsity."""

    sums: dict = field(default_factory=dict)  # loss terms summed since the last log record
    n_sum: int = 0
    sparsity: float | None = None  # the sparsity the masks were last pruned to


class Student:
    """The grafted, masked student with its optimizer: one SPD step, one log record, the state a
    checkpoint holds, and the export."""

    def __init__(self, cfg: SPDConfig, plan: Plan, teacher, td, tokenizer, device,
                 world: parallel.World = parallel.World()):
        self.cfg, self.plan, self.teacher, self.td, self.device = cfg, plan, teacher, td, device
        self.teacher_forward = compiled(teacher, cfg.compile)
        self.world = world
        self.pad_id = tokenizer.pad_token_id
        a = cfg.augment
        self.noise = Noise(td.train, tokenizer.all_special_ids, len(tokenizer), td.task, a.rate,
                           a.tokens, a.swap, cfg.seed)
        self.model = make_student(teacher, cfg.graft_teacher_dropout)  # before any teacher run:
        # transformers 5 installs its output hooks on a model's first forward (spd.grafting)
        self.cache = (TeacherCache(self.teacher_forward, td.train, self.pad_id, device,
                                   cfg.precision, cfg.data.eval_batch_size,
                                   cfg.teacher_cache * 2 ** 30) if cfg.teacher_cache else None)
        if self.cache:
            log.info("teacher cache: %d of %d training examples, %.2f GiB", self.cache.cached,
                     len(td.train), self.cache.bytes / 2 ** 30)
        set_trainable_rest(self.model, cfg.train_rest)
        if cfg.train_head:
            set_trainable_head(self.model, True)
        if not cfg.student_dropout:
            drop_student_dropout(self.model)
        self.linears = pruning.prunable_linears(student_layers(self.model))
        self.movement = cfg.prune.criterion == "movement"
        pruning.attach_masks(self.linears, movement=self.movement)
        self.n_layers = len(slots(self.model))
        self.optimizer = make_optimizer(self.model, cfg.optim.lr, cfg.optim.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer,
                                                           lambda s: lr_at(s, cfg, plan))
        self.trainable = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
        self.ddp = world.wrap(self.model, device)  # the model itself in a single process
        # The first dev examples, on which statement D is measured at each evaluation.
        # (Not with train_rest: the statements assume the teacher's embeddings, and the
        # student's then train; `audit` says so.)
        dev = next(iter(td.dev.values()))[:0 if cfg.train_rest else cfg.theory_examples]
        self.probe_inputs = ({k: v for k, v in to_device(data.collate(dev, self.pad_id),
                                                          device).items() if k != "labels"}
                             if dev else None)

    def step(self, step: int, batch: dict, progress: Progress) -> float:
        """Masks to the schedule, draw the layers, one AdamW step; returns p."""
        cfg = self.cfg
        s = sparsity_at(step, cfg, self.plan)
        if s != progress.sparsity:
            pruning.prune_to(self.linears, s, cfg.prune.scope, cfg.prune.criterion, cfg.seed,
                             cfg.prune.pattern)
            progress.sparsity = s
        p = replace_p_at(step, cfg, self.plan)
        draws = draw_layers(cfg.seed, step, p, self.n_layers)
        set_layers(self.model, draws)
        batch = to_device(self.world.shard(self.noise(batch, step)), self.device)
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        if cfg.graft_teacher_dropout:  # the grafted teacher layers are the teacher's own
            self.teacher.eval()
        t_out = (self.cache(inputs) if self.cache else
                 teacher_outputs(self.teacher_forward, inputs, self.device, cfg.precision))
        # With no student layer drawn and the rest frozen nothing trains: skip DDP's bookkeeping.
        trains_outside = cfg.train_rest or cfg.train_head
        model = self.ddp if bool(draws.any()) or trains_outside else self.model
        if cfg.graft_teacher_dropout:
            self.model.train()
        with autocast(self.device, cfg.precision):
            s_out = model(**inputs, output_hidden_states=True, output_attentions=True)
            loss, terms = spd_loss(s_out, t_out, batch["labels"], self.td.task, cfg.loss,
                                   batch["attention_mask"])
        names = [*terms, "total"]
        stacked = torch.stack([t.detach().float() for t in [*terms.values(), loss]]).cpu()
        means = self.world.mean(stacked)
        values = dict(zip(names, means.tolist()))  # over the global batch, on every rank
        resume.check_loss(values, step + 1, progress)
        # When every drawn layer is the teacher's and the rest is frozen, nothing can learn
        # from this batch (AdamW then skips every parameter); the step still counts, so the
        # schedules stay functions of the step.
        if loss.requires_grad:
            loss.backward()
            resume.clip_gradients(self.trainable, cfg.optim.grad_clip, step + 1, progress)
            if self.movement:  # the gradient the optimizer is about to use
                pruning.accumulate_movement(self.linears)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        progress.sums = {k: progress.sums.get(k, 0.0) + v for k, v in values.items()}
        progress.n_sum += 1
        progress.step = step + 1
        return p

    def evaluate(self, p: float) -> dict:
        """Dev and train-subset metrics of the pure student; the module errors and statement
        D's bound at the current p (float64 copies: the run is not perturbed)."""
        set_layers(self.model, torch.ones(self.n_layers, dtype=torch.bool))
        batch_size = self.cfg.data.eval_batch_size
        precision = self.cfg.precision
        out = {"dev": evaluate_dev(self.model, self.td, self.device, batch_size, precision)}
        if self.td.train_subset:
            out["train_subset"] = evaluate(self.model, self.td.train_subset, self.td.task,
                                           self.device, batch_size, self.pad_id,
                                           precision=precision)
        if self.probe_inputs is not None:
            out["theory"] = {**probe(self.teacher, export_student(self.model), self.probe_inputs, p),
                             "examples": len(self.probe_inputs["input_ids"])}
        self.model.train()
        return out

    def record(self, progress: Progress, elapsed: float, evaluate_now: bool) -> dict:
        """The realised schedules and mean loss terms since the last record (+ metrics)."""
        done, ends = progress.step, self.plan.stage_ends
        p = replace_p_at(done - 1, self.cfg, self.plan)  # the p of the step just taken
        rec = {"step": done, "epoch": done / self.plan.steps_per_epoch,
               "stage": ("prune", "graft", "finetune")[sum(done - 1 >= e for e in ends[:2])],
               "sparsity": progress.sparsity,
               "realised_sparsity": pruning.overall_sparsity(self.linears),
               "replace_p": p, "lr": self.scheduler.get_last_lr()[0],
               "loss": {k: v / progress.n_sum for k, v in progress.sums.items()},
               "elapsed_s": elapsed, **(self.evaluate(p) if evaluate_now else {})}
        progress.records.append(rec)
        progress.sums, progress.n_sum = {}, 0
        if evaluate_now:
            keep_best(progress, rec, self.td.task.main_metric)
        return rec

    def postfix(self, rec: dict) -> dict:
        main = self.td.task.main_metric
        return {main: f"{rec['dev'][main]:.4f}", "s": f"{rec['sparsity']:.3f}",
                "p": f"{rec['replace_p']:.2f}"}

    def state(self) -> dict:
        return resume.training_state(self.model, self.optimizer, self.scheduler, self.device)

    def load_state(self, ckpt: dict) -> None:
        """Weights, masks, optimizer and scheduler; restore the RNG after skipping data."""
        resume.load_training_state(ckpt, self.model, self.optimizer, self.scheduler)

    def export(self, out_dir: Path, tokenizer) -> dict:
        """Save the pure student as a plain model, pruned weights baked in; its sparsity."""
        plain = export_student(self.model)
        plain_linears = pruning.prunable_linears(pruning.encoder_layers(plain))
        pruning.bake(plain_linears)
        sparsity = {"overall": pruning.overall_sparsity(plain_linears),
                    "per_matrix": pruning.sparsity_table(plain_linears)}
        p = self.cfg.prune  # recorded in the model's own config.json (extra keys load fine)
        plain.config.spd_sparsity = {"overall": sparsity["overall"], "target": p.sparsity,
                                     "pattern": p.pattern, "scope": p.scope,
                                     "criterion": p.criterion}
        rundir.save_model(plain, tokenizer, out_dir)
        rundir.write_json(out_dir / SPARSITY_FILE, sparsity)
        return sparsity


def train_spd(cfg: SPDConfig, out_dir: Path, data_dir: Path | None, device: torch.device,
              overwrite: bool = False, command: list[str] | None = None,
              resume: bool = False, tensorboard: bool = False) -> dict:
    """Run SPD from the fine-tuned `cfg.teacher` and write the run directory `out_dir`
    (`tensorboard`: mirror its metrics into TensorBoard event files there too).

    With `resume`, an interrupted run continues from its last checkpoint and ends with the same
    weights and metrics as an uninterrupted one (bitwise on the CPU).
    """
    lock = OutputLock(out_dir)  # taken by rank 0 only, just before it first writes
    with process_wide_speed_settings(device):
        world = parallel.setup(device)  # one process unless launched by torchrun
        tb = Scalars(out_dir, tensorboard and world.is_main)
        try:
            return _train_spd(cfg, Path(out_dir), data_dir, device, overwrite, command, resume,
                              world, lock, tb)
        finally:
            tb.close()
            lock.release()
            world.close()


def _train_spd(cfg, out_dir, data_dir, device, overwrite, command, resume_run, world, lock,
               tb) -> dict:
    task = get_task(cfg.task)
    check_pattern_fits(teacher_path(cfg.teacher), cfg.prune.pattern)
    opened = open_run(out_dir, cfg, overwrite, resume_run, lock, world,
                      check=lambda found, verb: records.check_teacher(
                          found["teacher_dev"], cfg.teacher, out_dir, verb))
    if opened.done:
        return opened.done
    seed_everything(cfg.seed)
    tokenizer, td, teacher = load_inputs(task, teacher_path(cfg.teacher), cfg.data, data_dir)
    loader = train_loader(td, cfg, device)
    plan = make_plan(cfg, len(loader), len(td.train))
    teacher.to(device).eval()
    student = Student(cfg, plan, teacher, td, tokenizer, device, world)
    sizes = {name: lin.weight.numel() for name, lin in student.linears.items()}
    for warning in audit(cfg, plan, sizes):
        log.warning("audit: %s", warning)
    batches = data.epochs(loader)
    progress, env = start_or_resume(opened, out_dir, cfg, lock, device, batches,
                                    student.load_state, Progress, {"world_size": world.size},
                                    world)
    if opened.ckpt is not None:
        teacher_dev = opened.ckpt["teacher_dev"]
    elif world.is_main:  # in the teacher's own precision: its dev metrics are its identity
        # (`final.json`), which a student of another precision must still recognise
        teacher_dev = evaluate_dev(teacher, td, device, cfg.data.eval_batch_size,
                                   teacher_precision(cfg.teacher))
    else:
        teacher_dev = {task.main_metric: math.nan}
    log.info("%s on %s: teacher dev %s %.4f; %d steps (stages end at %s), device %s%s",
             method_name(to_dict(cfg)), task.name, task.main_metric,
             teacher_dev[task.main_metric], plan.total, plan.stage_ends, describe(device),
             f"; resuming at step {progress.step}" if progress.step else "")
    student.model.train()
    eval_every = cfg.eval_every or plan.steps_per_epoch
    wall = run_steps(student, batches, progress, plan.total, out_dir, cfg, env,
                     f"spd {task.name}", eval_every, cfg.log_every,
                     {"teacher_dev": teacher_dev}, tb, world)
    if not world.is_main:
        world.barrier()  # rank 0 exports and writes final.json
        return rundir.read_json(out_dir / rundir.FINAL)

    sparsity = student.export(out_dir, tokenizer)
    evals = [r for r in progress.records if "dev" in r]
    final = {**run_summary(cfg, td, evals, progress.best, plan.total, plan.steps_per_epoch, wall,
                           env, command),
             "teacher": cfg.teacher, "stage_ends": list(plan.stage_ends), "teacher_dev": teacher_dev,
             "sparsity": sparsity["overall"], "target_sparsity": cfg.prune.sparsity,
             "resumed_at_steps": progress.resumed_at_steps}
    finish(out_dir, final, write_run_report)
    world.barrier()
    return final
