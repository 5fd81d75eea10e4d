"""Schedules as pure functions of the step: no counters, no side effects.

The plan of a run (`make_plan`: its stage edges and mask-update grid, from the config and the
epoch length) and each `*_at(step, cfg, plan)` built on the functions below.
"""
from dataclasses import dataclass

from spd.distil_config import SPDConfig
from spd.errors import SpdError


def warmup_linear_decay(step: int, total_steps: int, warmup_steps: int) -> float:
    """Learning-rate multiplier: 0 -> 1 linearly over `warmup_steps`, then 1 -> 0 at `total_steps`.

    Args:
        step: optimizer steps taken so far (0 before the first).
        total_steps: steps in the whole run.
        warmup_steps: steps of linear warm-up (0: start at the full rate).
    """
    if step < warmup_steps:
        return step / warmup_steps
    return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))


def cubic_sparsity(step: int, s_i: float, s_f: float, start: int, window: int,
                   interval: int) -> float:
    """Cubic sparsity schedule (Zhu and Gupta, 2017), changing only at update steps.

    s(t) = s_f + (s_i - s_f) * (1 - (t' - t_0) / window)^3, where t' is the last update step
    at or before t. Update steps are t_0, t_0 + dt, ... (below t_0 + window) and t_0 + window,
    from which on the sparsity is exactly s_f. Before t_0 it is s_i. A window of 0 prunes to
    s_f at t_0 in one shot.

    Args:
        step: the training step.
        s_i: initial sparsity.
        s_f: final (target) sparsity.
        start: t_0, the first step of the pruning window.
        window: length of the window in steps.
        interval: dt, steps between mask updates (>= 1).
    """
    if step < start:
        return s_i
    if step >= start + window:
        return s_f
    last_update = start + (step - start) // interval * interval
    frac = (last_update - start) / window
    # The same formula, written so that frac = 0 gives s_i exactly.
    return min(s_f, s_i + (s_f - s_i) * (1.0 - (1.0 - frac) ** 3))


def constant_rate(step: int, p_0: float) -> float:
    """Replacing probability p(t) = p_0 (the `official_readme` preset is this with p_0 = 0.8)."""
    return p_0


def linear_rate(step: int, p_0: float, k: float) -> float:
    """BERT-of-Theseus curriculum: p(t) = min(1, p_0 + k t)."""
    return min(1.0, p_0 + k * step)


def three_stage_rate(step: int, p_0: float, prune_end: int, graft_end: int) -> float:
    """The paper's schedule: p_0 while pruning, a linear ramp to 1 while grafting, then 1.

    Args:
        step: the training step.
        p_0: replacing probability during the pruning stage.
        prune_end: first step of the graft stage.
        graft_end: first step of the final (pure student) stage.
    """
    if step < prune_end:
        return p_0
    if step >= graft_end:
        return 1.0
    return p_0 + (1.0 - p_0) * (step - prune_end) / (graft_end - prune_end)


def stage_ends(prune: int, graft: int, finetune: int) -> tuple[int, int, int]:
    """(prune_end, graft_end, total): the first step after each of the three stages."""
    return prune, prune + graft, prune + graft + finetune


def staged_lr(step: int, ends: tuple[int, ...], restart: bool, warmup: int | float = 0) -> float:
    """Learning-rate multiplier over stages.

    `restart`: within each non-empty segment [previous bound, bound), a linear warm-up over
    round(warmup * segment length) steps, then a linear decay to 0 at the segment's end,
    restarting at each segment end (the official code's two decays when its ends are prune | rest;
    it passes the same warm-up to both of its schedules). Otherwise one warm-up of `warmup`
    steps and one decay over the whole run.

    Args:
        step: optimizer steps taken so far.
        ends: increasing segment ends; the last is the total number of steps.
        restart: restart the schedule at each bound.
        warmup: warm-up steps of the whole-run schedule, or with `restart` the fraction of
            each segment spent warming up (a number in [0, 1)).
    """
    if not restart:
        return warmup_linear_decay(step, ends[-1], int(warmup))
    start = 0
    for end in ends:
        if step < end:
            return warmup_linear_decay(step - start, end - start, round(warmup * (end - start)))
        start = end
    return 0.0


@dataclass(frozen=True)
class Plan:
    """The step-level numbers of a run, derived once from its config and the epoch length."""

    steps_per_epoch: int
    stage_ends: tuple[int, int, int]  # prune_end, graft_end, total
    interval: int  # steps between mask updates
    window: int  # steps from the first mask update to s_f

    @property
    def total(self) -> int:
        return self.stage_ends[-1]


def make_plan(cfg: SPDConfig, steps_per_epoch: int, n_train: int | None = None) -> Plan:
    """The plan of a run of `cfg` at `steps_per_epoch`; `n_train` (training examples, by
    default steps_per_epoch * batch size) places the updates of prune.grid=official."""
    def steps(x: float) -> int:
        return round(x * steps_per_epoch) if cfg.stages.unit == "epochs" else round(x)

    lengths = [steps(cfg.stages.prune), steps(cfg.stages.graft), steps(cfg.stages.finetune)]
    cap = cfg.stages.max_steps
    if cap and sum(lengths) > cap:  # every stage in proportion; the last takes the rounding
        scale = cap / sum(lengths)
        prune, graft = round(lengths[0] * scale), round(lengths[1] * scale)
        lengths = [prune, graft, cap - prune - graft]
    ends = stage_ends(*lengths)
    if ends[-1] == 0:
        raise SpdError(f"stages: {cfg.stages} round to 0 steps at {steps_per_epoch} steps per "
                       f"epoch; allowed: a total of at least one step")
    if cfg.prune.updates == 0:
        return Plan(steps_per_epoch, ends, 1, 0)
    if cfg.prune.grid == "official":
        return _official_grid(cfg, steps_per_epoch, ends, n_train)
    interval = max(1, ends[0] // (cfg.prune.updates + 1))
    return Plan(steps_per_epoch, ends, interval, interval * cfg.prune.updates)


def _official_grid(cfg: SPDConfig, steps_per_epoch: int, ends, n_train: int | None) -> Plan:
    """The official code's update grid: `freq = int(n / 32 * prune_epochs / 12)` steps apart
    (its batch of 32 is spd's batch size, its 12 is updates + 1), and the cubic fraction
    k / (window // freq) with window = int(n / 32) * prune_epochs, so that on MRPC's 30
    pruning epochs 11 updates land at steps 286, 572, ..., 3146 and the last reaches s_f."""
    n = n_train if n_train is not None else steps_per_epoch * cfg.data.batch_size
    per_epoch = n / cfg.data.batch_size
    interval = max(1, int(per_epoch * cfg.stages.prune / (cfg.prune.updates + 1)))
    updates = int(int(per_epoch) * cfg.stages.prune) // interval
    return Plan(steps_per_epoch, ends, interval, interval * updates)


def sparsity_at(step: int, cfg: SPDConfig, plan: Plan) -> float:
    return cubic_sparsity(step, cfg.prune.initial, cfg.prune.sparsity, 0, plan.window, plan.interval)


def replace_p_at(step: int, cfg: SPDConfig, plan: Plan) -> float:
    r = cfg.replace
    if r.schedule == "constant":
        return constant_rate(step, r.p_0)
    if r.schedule == "linear":
        return linear_rate(step, r.p_0, r.slope)
    return three_stage_rate(step, r.p_0, plan.stage_ends[0], plan.stage_ends[1])


def lr_at(step: int, cfg: SPDConfig, plan: Plan) -> float:
    o = cfg.optim
    if not o.lr_restart:
        return staged_lr(step, plan.stage_ends, False, round(o.warmup_ratio * plan.total))
    segments = plan.stage_ends if o.restart_at == "every_stage" else (plan.stage_ends[0], plan.total)
    return staged_lr(step, segments, True, o.warmup_ratio)
