"""Run an ablation grid: one run folder per cell, resumable, shardable, safe to run twice at once.

    python -m ablations.run NAME [--tasks T ...] [--seeds N] [--profile cpu|official|smoke]
                                [--methods M ...] [--dry-run] [--shard I/N] [--model M]
                                [--data-dir D] [--results DIR]

Cells (registry.py) run one after another through spd's Python API (`spd.spd_train.train_spd` for SPD
cells, `spd.finetune.finetune` for dense cells and the teachers), each configuration built once
(`cell_config`), resuming once a cell's run has started, so a killed
grid continues each unfinished cell from its last checkpoint. A finished cell (its
`final.json` holds the same configuration) is skipped, so running the command again
continues the grid; one finished from a teacher since replaced (its recorded teacher dev
metrics differ from the teacher's by more than float rounding) is reported stale, neither
rerun nor counted in tables, until it is moved away. Each cell is claimed with an exclusive
`flock` on `<cell>/.lock`: a second runner on the same folder skips a claimed cell, and the
kernel frees the lock of a runner that dies, so a stale lock never blocks (on network
filesystems this needs working `flock`, as on NFSv4). `--shard I/N` keeps every N-th cell
starting at I (0 <= I < N) of the grid's fixed order, for cluster job arrays.
Each cell's `runner.jsonl` records every time a runner started it (host, pid, time, command).
A finished cell gets its `record.json` (spd.records) with the row it fills in this grid; tables
and RESULTS.md read those records alone. A cell whose exact configuration (teacher included) a
finished run of another cell folder holds (e.g. `spd` under cpu3 is the budget study's
`budget-e10-rest-lr1e-3-aug`) is not trained again: its result files are copied, with
`reused_from.json` naming the run. A committed teacher whose weights are missing (they are
never in git: a fresh clone) is fit again from its recorded config first, and used only if it
is the same teacher (`refit_teacher`).
"""
import argparse
import fcntl
import json
import logging
import os
import socket
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from ablations.registry import Cell, build_parser, grid, teacher_dir
from spd import records, rundir
from spd.arguments import EXIT_BAD_INPUT, data_dir_from
from spd.distil_config import SPDConfig
from spd.presets import finetune_config, spd_config
from spd.errors import SpdError, output_folder
from spd.interrupt import Stopped

LOCK, RUNNER_LOG, REUSED = ".lock", "runner.jsonl", "reused_from.json"
# What a reused cell copies from the run it reuses: the result files, not the weights
# (model/), the checkpoint, the locks, the runner's log or the record (rewritten for the row).
NOT_COPIED = {LOCK, RUNNER_LOG, records.RECORD, rundir.CHECKPOINT, ".spd.lock"}


@contextmanager
def claim(folder: Path, wait: bool = False):
    """Yield True while this process holds the folder's exclusive lock; False if another does
    (with `wait`, block until it is free instead)."""
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        os.ftruncate(fd, 0)
        os.write(fd, f"{socket.gethostname()} {os.getpid()}\n".encode())
        yield True
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def finished_state(folder: Path, config) -> str | None:
    """"done" for a finished run of exactly `config` (of any when None: another configuration
    is spd's to refuse); "stale" when it distilled from another teacher than the one now at
    `config.teacher` (its recorded teacher dev metrics differ beyond float rounding: the
    teacher was replaced);
    None otherwise."""
    if not ((folder / rundir.FINAL).is_file()
            and (config is None or rundir.holds_config(folder, config))):
        return None
    teacher = getattr(config, "teacher", None)
    if teacher is None:
        return "done"
    recorded = rundir.read_json(folder / rundir.FINAL).get("teacher_dev") or {}
    return "done" if records.teacher_matches(recorded, teacher) else "stale"


def is_finished(folder: Path, config) -> bool:
    return finished_state(folder, config) == "done"


def cell_config(cell: Cell, results: Path, model: str | None):
    """The configuration (a config dataclass) that `spd_args(cell)` runs."""
    if cell.kind == "finetune":
        return finetune_config(cell.task, model, cell.preset(), cell.overrides())
    return spd_config(cell.task, str(teacher_dir(cell.task, cell.profile, results)),
                      cell.preset(), [f"prune.sparsity={cell.sparsity:g}", *cell.overrides()])


def spd_args(cell: Cell, results: Path, data_dir: str | None, model: str | None) -> list[str]:
    """The `spd` command line that runs `cell`."""
    common = ["--task", cell.task, "--output", str(cell.path(results)), "--preset", cell.preset(),
              *[a for o in cell.overrides() for a in ("--set", o)],
              *(["--data-dir", data_dir] if data_dir else [])]
    if cell.kind == "finetune":
        return ["finetune", *common, *(["--model", model] if model else [])]
    return ["prune", *common, "--teacher", str(teacher_dir(cell.task, cell.profile, results)),
            "--sparsity", f"{cell.sparsity:g}"]


def teacher_args(task: str, profile: str, results: Path, data_dir: str | None,
                 model: str | None) -> list[str]:
    return ["finetune", "--task", task, "--output", str(teacher_dir(task, profile, results)),
            "--preset", profile, *(["--data-dir", data_dir] if data_dir else []),
            *(["--model", model] if model else [])]


def run_job(folder: Path, config, args: list[str], data_dir: str | None, resume: bool) -> str:
    """Run `config` (built once, by `cell_config` or for a teacher) in `folder` through spd's
    Python API; `args` is the equivalent `spd` command line, recorded as the run's command.
    Errors map to cell states: a refusal (SpdError, printed in spd's one line) is "failed"; a
    signal (the run checkpointed) stops the grid too."""
    from spd.device import resolve_device
    from spd.finetune import finetune
    from spd.spd_train import train_spd

    loop = train_spd if isinstance(config, SPDConfig) else finetune
    try:
        loop(config, folder, data_dir_from(data_dir), resolve_device("auto"), resume=resume,
             command=["spd", *args, *(["--resume"] if resume else [])])
    except SpdError as e:
        print(f"spd: error: {e}", file=sys.stderr)
        return "failed"
    except Stopped as e:
        print(f"spd: stopped: {e}", file=sys.stderr)
        raise KeyboardInterrupt from e
    return "ran"


def same_run(cell: Cell, config, results: Path) -> Path | None:
    """A finished run of exactly `config` (same teacher) in another cell folder of the task
    and seed, under any profile: the same configuration is one run, whatever grid named it."""
    for folder in sorted(results.glob(f"cells/*/{cell.task}/*/seed{cell.seed}")):
        if folder != cell.path(results) and not (folder / REUSED).is_file() \
                and finished_state(folder, config) == "done":
            return folder
    return None


def reusable(cell: Cell, config, results: Path) -> Path | None:
    """The run `same_run` finds, for a cell where nothing started (one that did resumes)."""
    if (cell.path(results) / rundir.CONFIG).is_file():
        return None
    return same_run(cell, config, results)


def reuse(folder: Path, source: Path, results: Path) -> str:
    """Copy the result files of `source` into the cell `folder` (atomically, file by file),
    with reused_from.json naming it: "reused"; "locked" if another runner holds the cell."""
    with claim(folder) as mine:
        if not mine:
            return "locked"
        for f in sorted(source.iterdir()):
            if f.is_file() and f.name not in NOT_COPIED and f.name != rundir.FINAL:
                rundir.copy_file(f, folder / f.name)
        rundir.write_json(folder / REUSED, {"run": str(source.relative_to(results))})
        rundir.copy_file(source / rundir.FINAL, folder / rundir.FINAL)  # last: it marks the
    return "reused"  # cell finished


def run_claimed(folder: Path, config, args: list[str], data_dir: str | None,
                match: bool = True, wait: bool = False) -> str:
    """Run `config` in `folder` unless it is finished or claimed: done, stale, ran, locked or
    failed. `match`: a finished run counts only if it holds `config` (a teacher counts
    whatever its recipe). With `wait`, a claimed folder is waited for (a teacher that another
    runner is training). A stale cell (finished from a replaced teacher) is left for its owner
    to move."""
    wanted = config if match else None
    if state := finished_state(folder, wanted):
        return state
    with claim(folder, wait) as mine:
        if not mine:
            return "locked"
        if state := finished_state(folder, wanted):  # finished by another runner meanwhile
            return state
        resume = (folder / rundir.CONFIG).is_file()  # started before: continue it
        line = {"host": socket.gethostname(), "pid": os.getpid(), "start": time.time(),
                "command": ["spd", *args, *(["--resume"] if resume else [])]}
        with open(folder / RUNNER_LOG, "a", encoding="utf-8") as f:
            f.write(json.dumps(line) + "\n")
        return run_job(folder, config, args, data_dir, resume)


def refit_teacher(tdir: Path, data_dir: str | None) -> str:
    """A committed teacher without its weights (never in git: a fresh clone): fit it again from
    its recorded config into `<task>.refit` beside it, and move the refit's model/ in only if it
    is the same teacher (its dev metrics equal the committed final.json's to float rounding);
    the committed files stay as they are. "ran", "done" (another runner refit it meanwhile) or
    "failed" (the refit failed, or is another teacher: it stays beside it, and cells distilled
    from the committed teacher would be stale with it)."""
    import shutil

    from spd.config import FinetuneConfig
    from spd.overrides import from_dict

    refit = tdir.with_name(tdir.name + ".refit")
    with claim(tdir, wait=True):
        if (tdir / rundir.MODEL).is_dir():
            return "done"
        config = from_dict(rundir.read_json(tdir / rundir.CONFIG), FinetuneConfig)
        command = list(rundir.read_json(tdir / rundir.FINAL).get("command") or ["spd"])[1:]
        if "--output" in command:
            command[command.index("--output") + 1] = str(refit)
        if run_claimed(refit, config, command or ["finetune", "--output", str(refit)],
                       data_dir) not in ("ran", "done"):
            return "failed"
        committed = rundir.read_json(tdir / rundir.FINAL).get("dev") or {}
        found = rundir.read_json(refit / rundir.FINAL).get("dev") or {}
        if not records.same_teacher(committed, found):
            print(f"spd: error: {tdir}: the refit in {refit} is another teacher (dev "
                  f"{records.short_metrics(found)} against the committed "
                  f"{records.short_metrics(committed)}); its cells would be stale: compare "
                  "the recipes, or move the committed teacher and its cells away",
                  file=sys.stderr, flush=True)
            return "failed"
        os.replace(refit / rundir.MODEL, tdir / rundir.MODEL)
        shutil.rmtree(refit)
        return "ran"


def parse(argv: list[str] | None):
    p = build_parser("python -m ablations.run", __doc__)
    p.add_argument("--records-only", action="store_true",
                   help="write the record.json of every finished cell; run nothing")
    return p.parse_args(argv)


def record(cell: Cell, name: str, results: Path) -> None:
    """Write the finished cell's record.json with the row it fills in grid `name`."""
    records.write(cell.path(results), recipe=cell.profile,
                  row={"grid": name, "label": cell.label, "reference": cell.reference,
                       "method": cell.method})


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    logging.basicConfig(level=logging.INFO, format="spd: %(message)s")  # as `spd` logs
    from spd.models import quiet_transformers

    quiet_transformers()
    try:
        output_folder("--results", args.results)
        cells = grid(args)
    except SpdError as e:
        print(f"ablations: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    results = Path(args.results)
    if args.dry_run or args.records_only:
        states = []
        for cell in cells:
            config = cell_config(cell, results, args.model)
            state = finished_state(cell.path(results), config)
            if state is None and reusable(cell, config, results):
                state = "reusable"
            states.append(state or "todo")
            if args.records_only:
                if state == "done":
                    record(cell, args.name, results)
                continue
            print(f"{states[-1]}  {cell.task}  {cell.label} (seed {cell.seed})  "
                  f"spd {' '.join(spd_args(cell, results, args.data_dir, args.model))}")
        print(summary(states))
        return 0
    states, refits = [], {}
    try:
        for i, cell in enumerate(cells, 1):
            if cell.kind == "prune":
                tdir = teacher_dir(cell.task, cell.profile, results)
                targs = teacher_args(cell.task, cell.profile, results, args.data_dir, args.model)
                tcfg = finetune_config(cell.task, args.model, cell.profile)
                if rundir.state(tdir)[:2] == (True, True) and not (tdir / rundir.MODEL).is_dir():
                    if tdir not in refits:  # once per teacher and runner
                        refits[tdir] = refit_teacher(tdir, args.data_dir)
                    print(f"[{i}/{len(cells)}] {cell.task}: teacher refit {refits[tdir]}",
                          flush=True)
                    if refits[tdir] == "failed":
                        states.append("failed")
                        continue
                # An existing teacher is used whatever its recipe (rte's has its own lr).
                if run_claimed(tdir, tcfg, targs, args.data_dir, match=False,
                               wait=True) == "failed":
                    print(f"[{i}/{len(cells)}] {cell.task} {cell.key} seed {cell.seed}: teacher "
                          f"{tdir} not ready", flush=True)
                    states.append("failed")
                    continue
                if records.read(tdir) is None:
                    records.write(tdir, recipe=cell.profile)
            config = cell_config(cell, results, args.model)
            source = reusable(cell, config, results)
            state = (reuse(cell.path(results), source, results) if source else
                     run_claimed(cell.path(results), config,
                                 spd_args(cell, results, args.data_dir, args.model),
                                 args.data_dir))
            states.append(state)
            if state in ("done", "ran", "reused"):
                record(cell, args.name, results)
            why = (" (from a replaced teacher: move the folder away to rerun it)"
                   if state == "stale" else "")
            print(f"[{i}/{len(cells)}] {cell.task} {cell.key} seed {cell.seed}: {state}{why}",
                  flush=True)
    except KeyboardInterrupt:
        print("ablations: interrupted; run the same command again to continue", file=sys.stderr)
        return 130
    print(summary(states))
    return 1 if {"failed", "stale"} & set(states) else 0


def summary(states: list[str]) -> str:
    """One line counting the cells in each state, e.g. 'ablations: 3 done, 1 ran'."""
    order = ("done", "stale", "ran", "reused", "reusable", "locked", "failed", "todo")
    return "ablations: " + ", ".join(f"{states.count(s)} {s}" for s in order if s in states)


if __name__ == "__main__":
    sys.exit(main())
