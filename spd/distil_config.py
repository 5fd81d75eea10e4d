"""SPD's config tree: the run section (`spd.config.RunConfig`) plus the teacher, stages,
pruning, replacing, loss, augmentation and optimizer sections. Frozen, validated on
construction."""
import math
from dataclasses import dataclass, field

from spd.config import RunConfig
from spd.masks import CRITERIA, SCOPES, parse_pattern
from spd.tasks import get_task
from spd.validate import check, positive, nonneg, choice


STAGE_UNITS = ("epochs", "steps")
REPLACE_SCHEDULES = ("constant", "linear", "three_stage")
REGRESSION_TARGETS = ("gold", "teacher")
UPDATE_GRIDS = ("even", "official")
RESTART_POINTS = ("every_stage", "prune_end")
SOFT_CE_CLASSES = ("sum", "mean")
PADDINGS = ("include", "exclude")




@dataclass(frozen=True)
class StagesConfig:
    """Lengths of SPD's three stages, in epochs or steps.

    prune: masks follow the cubic schedule to the target sparsity, p stays p_0 (three_stage);
    graft: p ramps to 1; finetune: the pure student trains (p = 1). max_steps: a cap on the
    whole run (0: none); a longer plan has every stage scaled down in proportion, so that a
    recipe given in epochs fits a large task (SST-2) in the same budget.
    """

    unit: str = "epochs"
    prune: float = 2.0
    graft: float = 1.0
    finetune: float = 1.0
    max_steps: int = 0

    def __post_init__(self):
        choice("stages.unit", self.unit, STAGE_UNITS)
        for name in ("prune", "graft", "finetune"):
            nonneg(f"stages.{name}", getattr(self, name))
        total = self.prune + self.graft + self.finetune
        check("stages (prune + graft + finetune)", total, total > 0, "a total length > 0")
        check("stages.max_steps", self.max_steps, self.max_steps >= 0, "an integer >= 0 (0: no cap)")


@dataclass(frozen=True)
class PruneConfig:
    """Magnitude (or random) pruning of the six linears of every student layer.

    Attributes:
        sparsity: s_f, the target fraction of zeros (also `--sparsity`).
        initial: s_i, the sparsity at the start of the window.
        updates: mask updates after the first; the prune stage is cut into updates + 1 equal
            intervals and s_f is reached at the last update (10: s_f at 10/11 of the stage).
            0 prunes to s_f in one shot at the first step.
        grid: where the updates fall. even: every prune_steps // (updates + 1) steps. official:
            the official code's grid, every int(n_train / batch_size * prune_epochs /
            (updates + 1)) steps (with updates = 11: 11 updates 286 steps apart on MRPC's 30
            pruning epochs); needs stages.unit=epochs.
        scope: per_matrix (every matrix at the same sparsity) or global (one threshold).
        criterion: magnitude, random (a floor for ablations), or movement (Sanh et al. 2020:
            the accumulated -W * dL/dW over the steps so far).
        pattern: unstructured, or N:M (e.g. 2:4): keep N of every M consecutive weights of a
            row, the pattern sparse tensor cores run; sparsity must then be 1 - N/M, reached
            in whole weights per group as the schedule passes 1/M, 2/M, ...
    """

    sparsity: float = 0.9
    initial: float = 0.0
    updates: int = 10
    scope: str = "per_matrix"
    criterion: str = "magnitude"
    pattern: str = "unstructured"
    grid: str = "even"

    def __post_init__(self):
        check("prune.sparsity", self.sparsity,
               math.isfinite(self.sparsity) and 0 <= self.sparsity < 1, "a number in [0, 1)")
        check("prune.initial", self.initial,
               math.isfinite(self.initial) and 0 <= self.initial <= self.sparsity,
               f"a number in [0, prune.sparsity={self.sparsity}]")
        check("prune.updates", self.updates, self.updates >= 0, "an integer >= 0")
        choice("prune.scope", self.scope, SCOPES)
        choice("prune.criterion", self.criterion, CRITERIA)
        choice("prune.grid", self.grid, UPDATE_GRIDS)
        try:
            nm = parse_pattern(self.pattern)
        except ValueError:
            nm = None
            check("prune.pattern", self.pattern, False, "unstructured, or N:M with 0 < N < M")
        if nm:
            target = 1 - nm[0] / nm[1]
            check("prune.sparsity", self.sparsity, abs(self.sparsity - target) < 1e-9,
                   f"{target:g} with prune.pattern={self.pattern} (1 - N/M)")
            check("prune.scope", self.scope, self.scope == "per_matrix",
                   f"per_matrix with prune.pattern={self.pattern}")


@dataclass(frozen=True)
class ReplaceConfig:
    """Replacing probability p(t): constant p_0, linear min(1, p_0 + slope * t), three_stage."""

    schedule: str = "three_stage"
    p_0: float = 0.5
    slope: float = 0.0

    def __post_init__(self):
        choice("replace.schedule", self.schedule, REPLACE_SCHEDULES)
        check("replace.p_0", self.p_0, math.isfinite(self.p_0) and 0 <= self.p_0 <= 1,
               "a number in [0, 1]")
        nonneg("replace.slope", self.slope)


@dataclass(frozen=True)
class LossConfig:
    """Weights of the loss terms (official: all 1, hard-label 0) and the temperature.

    soft_ce_classes: the soft cross-entropy sums over classes (sum, the textbook KD loss) or
    averages over them (mean: the official code's `.mean()` over batch and classes, which
    divides the term by the number of classes).
    padding: the hidden-state and attention terms average over every position of the padded
    batch (include, the official code) or over real tokens only (exclude; needed by the
    teacher cache, which keeps the teacher's outputs at real lengths).
    """

    hidden: float = 1.0
    attention: float = 1.0
    prediction: float = 1.0
    hard: float = 0.0
    temperature: float = 1.0
    regression_target: str = "gold"
    soft_ce_classes: str = "sum"
    padding: str = "include"

    def __post_init__(self):
        for name in ("hidden", "attention", "prediction", "hard"):
            nonneg(f"loss.{name}", getattr(self, name))
        positive("loss.temperature", self.temperature)
        choice("loss.regression_target", self.regression_target, REGRESSION_TARGETS)
        choice("loss.soft_ce_classes", self.soft_ce_classes, SOFT_CE_CLASSES)
        choice("loss.padding", self.padding, PADDINGS)


@dataclass(frozen=True)
class AugmentConfig:
    """Distillation on perturbed copies of the training examples, labelled by the teacher
    (`spd.augment`).

    Attributes:
        rate: the probability that a training example is replaced by a perturbed copy; 0: off.
        tokens: the probability that each real, non-special token of a copy is replaced by a
            draw from the training set's unigram distribution.
        swap: swap the two sentences of a copy with probability 1/2 on symmetric pair tasks
            (MRPC, STS-B, QQP).
    """

    rate: float = 0.0
    tokens: float = 0.15
    swap: bool = True

    def __post_init__(self):
        for name in ("rate", "tokens"):
            value = getattr(self, name)
            check(f"augment.{name}", value, math.isfinite(value) and 0 <= value <= 1,
                   "a number in [0, 1]")


@dataclass(frozen=True)
class SPDOptimConfig:
    """AdamW over the trainable student parameters.

    Attributes:
        lr: peak learning rate.
        weight_decay: AdamW weight decay (not on biases and LayerNorm weights).
        grad_clip: maximum global gradient norm; 0 turns clipping off.
        lr_restart: decay linearly to 0 within each segment, restarting at the full rate at
            each segment's start; otherwise one warm-up and decay over the whole run.
        restart_at: the segments of lr_restart. every_stage: one per stage (three decays);
            prune_end: the pruning stage, then the rest (two decays, the official code).
        warmup_ratio: warm-up fraction: of the whole run, or with lr_restart of each segment
            (the official code passes its warm-up steps to each of its two schedules).
    """

    lr: float = 1e-4
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    lr_restart: bool = True
    warmup_ratio: float = 0.0
    restart_at: str = "every_stage"

    def __post_init__(self):
        positive("optim.lr", self.lr)
        nonneg("optim.weight_decay", self.weight_decay)
        nonneg("optim.grad_clip", self.grad_clip)
        check("optim.warmup_ratio", self.warmup_ratio,
               math.isfinite(self.warmup_ratio) and 0 <= self.warmup_ratio < 1, "a number in [0, 1)")
        choice("optim.restart_at", self.restart_at, RESTART_POINTS)
        check("optim.restart_at", self.restart_at,
               self.lr_restart or self.restart_at == "every_stage",
               "every_stage unless optim.lr_restart=true (without restarts there is one decay)")


@dataclass(frozen=True)
class SPDConfig(RunConfig):
    """Sparse progressive distillation of a fine-tuned teacher into a pruned student (the run
    section, plus the teacher and the SPD sections).

    Attributes:
        teacher: the fine-tuned teacher (a run folder, its model/ folder or a hub id).
        log_every: log the realised schedules and loss terms every this many steps.
        train_rest: also train embeddings, pooler and classifier (official: frozen).
        train_head: also train the pooler and classifier, the embeddings staying the teacher's
            (so the error-bound statements, which assume shared embeddings, still apply).
        student_dropout: dropout in the student while it trains, at the model's own rates;
            off: none (a heavily pruned student underfits, where dropout only costs).
        theory_examples: at each evaluation, measure the module errors and statement D's
            bound at the current p (theory/README.md) on this many dev examples; 0: off.
        graft_teacher_dropout: run dropout in the teacher layers grafted into the student while
            it trains (the official code: its whole mixed model is in train mode); off: they
            run as the pure teacher does, in eval mode.
        teacher_cache: GiB of memory for the pure teacher's outputs on the training examples,
            computed once and reused every epoch (`spd.teacher_cache`); examples that do not
            fit, and perturbed copies, run through the teacher. 0: off. Needs
            loss.padding=exclude.
    """

    teacher: str = ""
    log_every: int = 10
    train_rest: bool = False
    train_head: bool = False
    student_dropout: bool = True
    theory_examples: int = 8
    graft_teacher_dropout: bool = False
    teacher_cache: float = 0.0
    optim: SPDOptimConfig = field(default_factory=SPDOptimConfig)
    stages: StagesConfig = field(default_factory=StagesConfig)
    prune: PruneConfig = field(default_factory=PruneConfig)
    replace: ReplaceConfig = field(default_factory=ReplaceConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def __post_init__(self):
        super().__post_init__()
        if self.augment.rate > 0:  # perturbed copies have no gold label: the teacher's only
            check("loss.hard", self.loss.hard, self.loss.hard == 0,
                   f"0 with augment.rate={self.augment.rate:g} (perturbed copies have no gold label)")
            check("loss.regression_target", self.loss.regression_target,
                   self.loss.regression_target == "teacher" or not get_task(self.task).is_regression,
                   f"teacher with augment.rate={self.augment.rate:g} on a regression task "
                   f"(perturbed copies have no gold score)")
        nonneg("teacher_cache", self.teacher_cache)
        check("teacher_cache", self.teacher_cache,
               self.teacher_cache == 0 or self.loss.padding == "exclude",
               "0 unless loss.padding=exclude (the cache keeps real tokens only)")
        check("log_every", self.log_every, self.log_every >= 1, "an integer >= 1")
        check("theory_examples", self.theory_examples, self.theory_examples >= 0,
               "an integer >= 0")
        if self.prune.grid == "official":
            check("prune.grid", self.prune.grid, self.stages.unit == "epochs",
                   "even with stages.unit=steps (the official grid is counted in epochs)")
