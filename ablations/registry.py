"""Named ablations: each a function from (tasks, seeds, profile) to the cells it needs.

A cell is one run: a task, a method (a named set of `--set` overrides on top of the profile's
preset), a target sparsity and a seed. Its folder is a function of those alone, so two
ablations that need the same run (full SPD at 0.9 appears in several) share one folder and it
runs once. Every SPD cell of a task distils from the same teacher, `teacher_dir(task,
profile)`, so differences between rows come from the method.
"""
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from spd.arguments import OneLineParser
from spd.overrides import overrides_between
from spd.presets import distil_recipe, finetune_config, spd_config
from spd.errors import bad_value
from spd.tasks import get_task

RESULTS = Path("ablations/results")  # relative, run from the repository root: no machine's
# absolute path goes into a committed config.json
# smoke: a few dozen steps per cell, for tests
PROFILES = ("cpu", "cpu2", "cpu3", "official", "smoke")
SHARED_TEACHERS = ("cpu", "cpu2", "cpu3")  # profiles whose teachers are `teachers/` (one recipe)
SPD_REFERENCE = "SPD"


@dataclass(frozen=True)
class Cell:
    """One run of an ablation grid.

    label: the row it fills in the table; reference: the label it is compared with (paired by
    seed), None for the reference row itself.
    """

    task: str
    method: str
    sparsity: float | None  # None: dense fine-tuning
    seed: int
    profile: str
    label: str
    reference: str | None = SPD_REFERENCE

    @property
    def kind(self) -> str:
        return "finetune" if self.sparsity is None else "prune"

    @property
    def key(self) -> str:
        return self.method if self.sparsity is None else f"{self.method}-s{self.sparsity:g}"

    def path(self, results: Path = RESULTS) -> Path:
        return results / "cells" / self.profile / self.task / self.key / f"seed{self.seed}"

    def overrides(self) -> list[str]:
        return [*METHODS[self.method](self.task, self.profile), f"seed={self.seed}"]

    def preset(self) -> str:
        return ("official_readme" if self.method == "official_readme" and self.profile == "official"
                else self.profile)


def teacher_dir(task: str, profile: str, results: Path = RESULTS) -> Path:
    """The task's one teacher (seed 42 of the profile's fine-tuning preset)."""
    return results / ("teachers" if profile in SHARED_TEACHERS else f"teachers-{profile}") / task


# Methods: name -> function(task, profile) -> `--set` overrides after the profile's preset.
METHODS: dict[str, Callable[[str, str], list[str]]] = {}

PURE_STUDENT = ["replace.schedule=constant", "replace.p_0=1"]
# No teacher: no teacher-labelled perturbed copies either (a profile with augmentation on).
HARD_LABELS_ONLY = ["loss.hidden=0", "loss.attention=0", "loss.prediction=0", "loss.hard=1",
                    "augment.rate=0"]


def method(name: str, overrides: list[str] | None = None):
    """Register a method by its overrides, or (as a decorator) by a function computing them."""
    if overrides is not None:
        METHODS[name] = lambda task, profile: list(overrides)
        return None

    def register(fn):
        METHODS[name] = fn
        return fn
    return register


method("spd", [])
method("no_replacing", PURE_STUDENT)
# Gradual magnitude pruning during fine-tuning: the same schedule, the student alone, labels only.
method("gmp", [*PURE_STUDENT, *HARD_LABELS_ONLY])
# GMP and movement at learning rates of their own (the `gmp_lr` and `movement_lr` grids): cpu3's
# 1e-3 was chosen for SPD, and at it both end at the constant prediction for most of the run.
GMP_LRS = MOVEMENT_LRS = ("3e-4", "1e-4")
# The lr each grid chose, by profile (STS-B dev at 0.9, seed 0; ablations/LOG.md): the other
# grids' rows of that method run at it; a profile without one runs the method at its own lr.
GMP_LR = {"cpu3": "3e-4"}
# Movement: every lr ends at the constant prediction (STS-B seed 0: dev Pearson 0.000 at all
# three; 5 seeds at 3e-4 and 1e-4 on MRPC and STS-B, the same), so dev cannot choose; the tie
# goes to GMP's lr, the one chosen for the other student trained without hidden-state terms.
MOVEMENT_LR = {"cpu3": "3e-4"}


def _at(method_key: str, lr: str) -> str:
    """The method key of `method_key` (gmp, movement) at learning rate `lr`."""
    return f"{method_key}_lr{lr}"


def _chosen(method_key: str, profile: str) -> str:
    """The method of the grids' `method_key` rows (gmp, movement) under `profile`: at the lr
    its lr grid chose, or at the profile's own where none was chosen."""
    chosen = {"gmp": GMP_LR, "movement": MOVEMENT_LR}[method_key]
    return _at(method_key, chosen[profile]) if profile in chosen else method_key


for _lr in GMP_LRS:
    method(_at("gmp", _lr), [*PURE_STUDENT, *HARD_LABELS_ONLY, f"optim.lr={_lr}"])
method("logits_only", ["loss.hidden=0", "loss.attention=0"])
# Movement pruning with logit distillation (Sanh et al. 2020), the paper's main competitor:
# the student alone, top-k of the accumulated -W * dL/dW per matrix on the same schedule.
MOVEMENT = [*PURE_STUDENT, "loss.hidden=0", "loss.attention=0", "prune.criterion=movement"]
method("movement", MOVEMENT)
for _lr in MOVEMENT_LRS:
    method(_at("movement", _lr), [*MOVEMENT, f"optim.lr={_lr}"])
method("one_shot", ["prune.updates=0"])
method("constant_p0.5", ["replace.schedule=constant", "replace.p_0=0.5"])
method("constant_p0.8", ["replace.schedule=constant", "replace.p_0=0.8"])
method("global", ["prune.scope=global"])
method("random", ["prune.criterion=random"])


def _steps_per_epoch(task: str, batch_size: int) -> int:
    return math.ceil(get_task(task).sizes["train"] / batch_size)


@method("dense")
def _dense(task: str, profile: str) -> list[str]:
    """Dense fine-tuning (overrides of the FinetuneConfig), evaluated at least ten times so
    that the overfitting curves have as many points as the pruned runs' ten epochs."""
    cfg = finetune_config(task, None, profile)
    steps = cfg.optim.epochs * _steps_per_epoch(task, cfg.data.batch_size)
    steps = min(steps, cfg.optim.max_steps or steps)
    return [f"eval_every={max(1, steps // 10)}"]


@method("official_readme")
def _official_readme(task: str, profile: str) -> list[str]:
    """The official README's schedule (p = 0.8 throughout, pruning and grafting at once, no
    pure-student stage, two decays) at the profile's length: under `official` its own preset."""
    if profile == "official":
        return []
    st = spd_config(task, "", profile).stages
    return [f"stages.graft={st.graft + st.finetune:g}", "stages.finetune=0",
            "replace.schedule=linear", "replace.p_0=0.8", "replace.slope=0",
            "optim.lr_restart=true"]


@method("linear")
def _linear(task: str, profile: str) -> list[str]:
    """p from p_0 = 0.5 rising linearly to 1 at the end of the graft stage (three_stage's end
    points, one straight line instead of flat-then-ramp)."""
    cfg = spd_config(task, "", profile)
    steps_per_epoch = _steps_per_epoch(task, cfg.data.batch_size)
    st = cfg.stages
    graft_end = st.prune + st.graft if st.unit == "steps" else round(
        (st.prune + st.graft) * steps_per_epoch)
    return ["replace.schedule=linear", "replace.p_0=0.5", f"replace.slope={0.5 / graft_end:.6g}"]


# The budget study's recipes, each a named method (its folder name says what it varies).
BUDGET_VARIANTS = {
    "budget-e5": dict(epochs=5), "budget-e10": dict(epochs=10), "budget-e20": dict(epochs=20),
    "budget-e10-rest": dict(epochs=10, head="rest"),
    "budget-e5-rest": dict(epochs=5, head="rest"), "budget-e20-rest": dict(epochs=20, head="rest"),
    "budget-e10-lr5e-5": dict(epochs=10, lr=5e-5), "budget-e10-lr2e-4": dict(epochs=10, lr=2e-4),
    "budget-e10-frozen": dict(epochs=10, head="frozen"), "budget-e10-t1": dict(epochs=10, temperature=1),
    "budget-e10-onedecay": dict(epochs=10, restart=False),
    "budget-e10-coarse": dict(epochs=10, updates=10),
    "budget-e5-fp32": dict(epochs=5, head="rest", precision="fp32"),  # bf16 parity: budget-e5-rest
    "budget-e10-lr5e-4": dict(epochs=10, lr=5e-4), "budget-e10-hard": dict(epochs=10, hard=1.0),
    "budget-e10-nodrop": dict(epochs=10, dropout=False),
    "budget-e10-rest-logits": dict(epochs=10, head="rest", logits_only=True),
    "budget-e10-rest-lr3e-4": dict(epochs=10, head="rest", lr=3e-4),
    "budget-e10-rest-lr3e-4-aug": dict(epochs=10, head="rest", lr=3e-4, augment=0.5),
    "budget-e10-rest-lr1e-3-aug": dict(epochs=10, head="rest", lr=1e-3, augment=0.5),
    # the default recipe (cpu3) along its budget: what more epochs buy on MRPC's accuracy
    "budget-e5-rest-lr1e-3-aug": dict(epochs=5, head="rest", lr=1e-3, augment=0.5),
    "budget-e20-rest-lr1e-3-aug": dict(epochs=20, head="rest", lr=1e-3, augment=0.5),
}
# A cap for tasks whose epochs are too long for the CPU budget (SST-2: 2105 steps an epoch,
# 10 epochs would take hours here): every stage scaled down in proportion (stages.max_steps),
# so that one SST-2 run fits the 45 minutes issue 22 allows on the 2-core machine.
BUDGET_CAPS = {"sst2": ["stages.max_steps=5000"]}


def _budget_method(kw: dict):
    """The `--set` list that turns the profile's preset into the recipe `kw` (and its cap)."""
    def overrides(task: str, profile: str) -> list[str]:
        base = spd_config(task, "", profile)
        return [*overrides_between(base, distil_recipe(base, **kw)), *BUDGET_CAPS.get(task, [])]
    return overrides


for _name, _kw in BUDGET_VARIANTS.items():
    METHODS[_name] = _budget_method(_kw)


ABLATIONS: dict[str, Callable[[list[str], list[int], str], list[Cell]]] = {}
DEFAULT_TASKS: dict[str, list[str]] = {}
# The grids answer the paper's questions at the default recipe (cpu3); the budget study's
# recipes are whole recipes on top of the `cpu` preset, so its cells live under `cpu`.
DEFAULT_PROFILE = "cpu3"
DEFAULT_PROFILES: dict[str, str] = {}


def ablation(name: str, tasks: list[str], profile: str = DEFAULT_PROFILE):
    """Register a grid under `name`, with the tasks and profile it runs on by default."""
    def register(fn):
        ABLATIONS[name], DEFAULT_TASKS[name], DEFAULT_PROFILES[name] = fn, tasks, profile
        return fn
    return register


def _cells(rows, tasks, seeds, profile) -> list[Cell]:
    """rows: (label, method, sparsity, reference); one cell per row, task and seed."""
    return [Cell(t, m, s, seed, profile, label, ref)
            for t in tasks for seed in seeds for label, m, s, ref in rows]


@ablation("components", ["mrpc", "stsb"])
def components(tasks, seeds, profile) -> list[Cell]:
    """Full SPD at 0.9 against SPD with one component taken away."""
    rows = [(SPD_REFERENCE, "spd", 0.9, None),
            ("no progressive replacing (p = 1)", "no_replacing", 0.9, SPD_REFERENCE),
            ("no distillation (GMP, hard labels)", _chosen("gmp", profile), 0.9, SPD_REFERENCE),
            ("logits-only distillation", "logits_only", 0.9, SPD_REFERENCE),
            ("movement + logit distillation", _chosen("movement", profile), 0.9, SPD_REFERENCE),
            ("one-shot pruning", "one_shot", 0.9, SPD_REFERENCE),
            ("official README schedule", "official_readme", 0.9, SPD_REFERENCE)]
    return _cells(rows, tasks, seeds, profile)


@ablation("replacing_schedule", ["mrpc"])
def replacing_schedule(tasks, seeds, profile) -> list[Cell]:
    rows = [("three_stage", "spd", 0.9, None),
            ("constant p = 0.5", "constant_p0.5", 0.9, "three_stage"),
            ("constant p = 0.8", "constant_p0.8", 0.9, "three_stage"),
            ("linear", "linear", 0.9, "three_stage")]
    return _cells(rows, tasks, seeds, profile)


SPARSITIES = (0.5, 0.7, 0.8, 0.9, 0.95)


@ablation("sparsity", ["stsb"])
def sparsity(tasks, seeds, profile) -> list[Cell]:
    """SPD and GMP at each target sparsity; GMP is compared with SPD at the same sparsity."""
    rows = [row for s in SPARSITIES
            for row in ((f"SPD s{s:g}", "spd", s, None),
                        (f"GMP s{s:g}", _chosen("gmp", profile), s, f"SPD s{s:g}"))]
    return _cells(rows, tasks, seeds, profile)


def profile_lr(profile: str) -> float:
    """The learning rate of the profile's SPD recipe (the same for every task)."""
    return spd_config("stsb", "", profile).optim.lr


def _lr_rows(name: str, base: str, lrs, profile: str) -> list[tuple]:
    """An lr grid's rows: `base` at the profile's lr (the reference), then at each of `lrs`."""
    reference = f"{name} lr {profile_lr(profile):g} (the profile's)"
    return [(reference, base, 0.9, None),
            *[(f"{name} lr {float(lr):g}", _at(base, lr), 0.9, reference) for lr in lrs]]


@ablation("gmp_lr", ["stsb"])
def gmp_lr(tasks, seeds, profile) -> list[Cell]:
    """GMP's learning rate chosen on STS-B dev at 0.9 as the profile's was chosen for SPD: at
    cpu3's lr (1e-3) GMP sits at the constant prediction for most of the run."""
    return _cells(_lr_rows("GMP", "gmp", GMP_LRS, profile), tasks, seeds, profile)


@ablation("movement_lr", ["stsb"])
def movement_lr(tasks, seeds, profile) -> list[Cell]:
    """Movement's learning rate chosen on STS-B dev at 0.9 as GMP's was: at cpu3's lr (1e-3)
    movement with the logit term alone ends at the constant prediction on MRPC and STS-B."""
    return _cells(_lr_rows("movement", "movement", MOVEMENT_LRS, profile), tasks, seeds, profile)


@ablation("criterion_scope", ["mrpc"])
def criterion_scope(tasks, seeds, profile) -> list[Cell]:
    rows = [("magnitude, per matrix", "spd", 0.9, None),
            ("magnitude, global", "global", 0.9, "magnitude, per matrix"),
            ("random", "random", 0.9, "magnitude, per matrix")]
    return _cells(rows, tasks, seeds, profile)


@ablation("overfitting", ["mrpc", "stsb"])
def overfitting(tasks, seeds, profile) -> list[Cell]:
    """Dense fine-tuning, GMP and SPD at 0.5 and 0.9: train and dev at every evaluation."""
    gmp = _chosen("gmp", profile)
    rows = [("dense fine-tuning", "dense", None, None),
            *[(f"{name} s{s:g}", m, s, "dense fine-tuning")
              for s in (0.5, 0.9) for name, m in (("GMP", gmp), ("SPD", "spd"))]]
    return _cells(rows, tasks, seeds, profile)


@ablation("budget", ["mrpc", "stsb", "sst2"], profile="cpu")
def budget(tasks, seeds, profile) -> list[Cell]:
    """The recipe study at 0.9: budget (epochs) and one knob at a time around 10 epochs, each
    cell a recipe (`BUDGET_VARIANTS`); compared with the 10-epoch base by seed."""
    base = "budget-e10"
    rows = [(name, name, 0.9, None if name == base else base) for name in BUDGET_VARIANTS]
    return _cells(rows, tasks, seeds, profile)


# Which cells a command means: the options the runner and the tables share.


def shard(cells: list[Cell], spec: str | None) -> list[Cell]:
    if spec is None:
        return cells
    try:
        i, n = (int(x) for x in spec.split("/"))
        ok = 0 <= i < n
    except ValueError:
        ok = False
    if not ok:
        raise bad_value("--shard", spec, "I/N with integers 0 <= I < N, e.g. 0/4")
    return cells[i::n]


def build_parser(prog: str = "python -m ablations.run",
                 description: str = "Run an ablation grid.") -> OneLineParser:
    """The grid options, shared by the runner and `ablations.tables`."""
    p = OneLineParser(prog=prog, description=description.split("\n")[0])
    p.add_argument("name", help=f"ablation: {', '.join(ABLATIONS)}")
    p.add_argument("--tasks", nargs="+", help="GLUE tasks (default: the ablation's own)")
    p.add_argument("--seeds", type=int, default=3, help="seeds 0 .. N-1 (default 3)")
    p.add_argument("--profile", help=f"{' or '.join(PROFILES)} (default: the ablation's own, "
                   f"{DEFAULT_PROFILE} but for budget: cpu)")
    p.add_argument("--dry-run", action="store_true", help="list the cells and their state only")
    p.add_argument("--shard", help="I/N: run every N-th cell starting at I (0-based)")
    p.add_argument("--methods", nargs="+", help="run only these methods (registry.METHODS)")
    p.add_argument("--model", help="the teachers' and dense cells' model (default: minilm)")
    p.add_argument("--data-dir", help="local GLUE folder (default: $SPD_DATA_DIR, else the hub)")
    p.add_argument("--results", default=str(RESULTS), help=f"results folder (default: "
                   f"{RESULTS}, from the repository root)")
    return p


def grid(args) -> list[Cell]:
    if args.name not in ABLATIONS:
        raise bad_value("ablation", args.name, ", ".join(ABLATIONS))
    args.profile = args.profile or DEFAULT_PROFILES[args.name]
    if args.profile not in PROFILES:
        raise bad_value("--profile", args.profile, ", ".join(PROFILES))
    if args.seeds < 1:
        raise bad_value("--seeds", args.seeds, "an integer >= 1")
    tasks = args.tasks or DEFAULT_TASKS[args.name]
    for t in tasks:
        get_task(t)
    cells = ABLATIONS[args.name](tasks, list(range(args.seeds)), args.profile)
    for m in args.methods or ():
        if m not in {c.method for c in cells}:
            raise bad_value("--methods", m, ", ".join(sorted({c.method for c in cells})))
    return shard([c for c in cells if not args.methods or c.method in args.methods], args.shard)
