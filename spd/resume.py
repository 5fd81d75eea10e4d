"""What the resumable training loops (fine-tuning and SPD) share: where a run resumes from,
the state its checkpoint holds, the per-step decision to checkpoint or stop, and the check
that keeps a non-finite step from reaching the weights.

A checkpoint is written every `checkpoint_every` steps and when SIGINT or SIGTERM arrives; it
holds the weights, optimizer, scheduler, RNG state and the loop's progress, so a resumed run
ends bitwise equal (on the CPU) to one never interrupted. It is deleted when the run finishes.
"""
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from spd import rundir
from spd.errors import SpdError
from spd.interrupt import Stopped

log = logging.getLogger(__name__)


@dataclass
class Progress:
    """What changes step by step besides the weights and the optimizer."""

    step: int = 0
    records: list = field(default_factory=list)
    best: dict | None = None
    elapsed_s: float = 0.0
    resumed_at_steps: list = field(default_factory=list)
    checkpoint_step: int | None = None  # the step of the last checkpoint written or resumed


def resume_point(out_dir: Path, overwrite: bool, resume: bool) -> dict | None:
    """The checkpoint to continue from, or None to start afresh.

    An unfinished run is never silently restarted: it needs --resume (or --overwrite to throw
    it away). --resume of a folder that holds no run at all is refused (a mistyped path);
    one whose run stopped before its first checkpoint starts again from step 0.
    """
    out_dir = Path(out_dir)
    if resume and not overwrite and not (out_dir / rundir.CONFIG).is_file():
        raise SpdError(f"--resume: {str(out_dir)!r} holds no run to resume (no {rundir.CONFIG}); "
                       f"allowed: the --output of an interrupted run, or drop --resume to start one")
    if overwrite:
        return None
    ckpt = rundir.load_checkpoint(out_dir)
    if ckpt is not None and not resume:
        raise SpdError(f"--output {str(out_dir)!r} holds an unfinished run (checkpoint at step "
                       f"{ckpt['progress']['step']}); allowed: --resume to continue it, or "
                       f"--overwrite to start again")
    if ckpt is None and resume:
        log.info("%s holds no checkpoint: starting from step 0", out_dir)
    return ckpt


def training_state(model, optimizer, scheduler, device: torch.device) -> dict:
    """Weights, optimizer, scheduler and RNG state: what a checkpoint holds besides progress."""
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
             "scheduler": scheduler.state_dict(), "rng": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda_rng"] = torch.cuda.get_rng_state(device)
    return state


def check_config(ckpt: dict, cfg) -> None:
    """Refuse a checkpoint written by a run of another configuration. Its `config`, read back
    through today's dataclasses, must equal `cfg`: a field added to spd since the checkpoint
    was written takes its default, as in `rundir.holds_config`, so an upgrade does not strand
    a run. Checkpoints from before that field compare their `config_hash`; those from before
    the hash carry neither and pass."""
    from spd.overrides import config_hash, from_dict, to_dict

    saved, mine = ckpt.get("config_hash"), config_hash(cfg)
    if "config" in ckpt:
        try:
            same = to_dict(from_dict(ckpt["config"], type(cfg))) == to_dict(cfg)
        except (ValueError, TypeError, SpdError):
            same = False
    else:
        same = saved is None or saved == mine
    if not same:
        raise SpdError(f"the checkpoint in --output was written by a run of another "
                       f"configuration (config hash {saved}, this run {mine}); allowed: the "
                       f"command that started it, or --overwrite to start again")


def load_training_state(ckpt: dict, model, optimizer, scheduler) -> None:
    """Weights, optimizer and scheduler; call `restore_rng` after skipping the data seen.
    Weights of another architecture (the teacher folder now holds another model) are refused."""
    # Checkpoints written before 2026-11-25 name the SPD student's weights "student".
    weights = ckpt["model"] if "model" in ckpt else ckpt["student"]
    try:
        model.load_state_dict(weights)
    except RuntimeError as e:
        detail = " ".join(str(e).split())
        raise SpdError(f"the checkpoint does not fit the model it resumes ({detail[:200]}...); "
                       f"allowed: the model (teacher) the run started from, or --overwrite to "
                       f"start again") from None
    optimizer.load_state_dict(ckpt["optimizer"])
    scheduler.load_state_dict(ckpt["scheduler"])


def restore_rng(ckpt: dict, device: torch.device) -> None:
    torch.set_rng_state(ckpt["rng"])  # dropout continues where it stopped
    if device.type == "cuda":
        torch.cuda.set_rng_state(ckpt["cuda_rng"], device)


def skip_seen(batches, steps: int) -> None:
    """Advance the endless batch iterator past the `steps` batches already trained on."""
    for _ in range(steps):
        next(batches)


def checkpoint_or_stop(stop, progress: Progress, total: int, every: int, out_dir: Path,
                       state) -> None:
    """After a step: every `every` steps, or when a stop was requested, write the checkpoint
    (`state()` builds it); on a request, raise `Stopped` saying how to resume. After the last
    step there is nothing to resume: the finished run replaces the checkpoint."""
    done = progress.step
    if done >= total:
        return
    if done % every == 0 or stop.requested:
        progress.checkpoint_step = done
        rundir.save_checkpoint(out_dir, state())
    if stop.requested:
        raise Stopped(stop.signum, f"{stop.name} at step {done} of {total}: checkpoint written in "
                                   f"{str(out_dir)!r}; run the same command with --resume to "
                                   f"continue")


def _kept(progress: Progress) -> str:
    if progress.checkpoint_step is None:
        return "no checkpoint was written yet"
    return (f"the checkpoint at step {progress.checkpoint_step} is kept: fix the cause and run "
            f"the same command with --resume")


def check_loss(values: dict, step: int, progress: Progress) -> None:
    """Refuse a step whose loss terms (name -> float) are not all finite, naming the first."""
    bad = [k for k, v in values.items() if not math.isfinite(v)]
    if bad:
        name = "training loss" if list(values) == ["loss"] else f"loss term {bad[0]} ="
        raise SpdError(f"non-finite {name} {values[bad[0]]} at step {step}; allowed: finite "
                       f"(lower optim.lr?); {_kept(progress)}")


def clip_gradients(named_params: list, max_norm: float, step: int, progress: Progress) -> None:
    """Refuse a non-finite gradient, naming the first parameter that has one, before it reaches
    the weights; then clip the global norm to `max_norm` (0: no clipping). The same arithmetic
    as `torch.nn.utils.clip_grad_norm_`."""
    grads = [p.grad for _, p in named_params if p.grad is not None]
    norm = torch.nn.utils.get_total_norm(grads)
    if not math.isfinite(norm.item()):
        first = next(n for n, p in named_params
                     if p.grad is not None and not torch.isfinite(p.grad).all())
        raise SpdError(f"non-finite gradient (norm {norm.item()}) at step {step}, first in "
                       f"{first}, though every loss term was finite; allowed: finite (lower "
                       f"optim.lr?); {_kept(progress)}")
    if max_norm:
        torch.nn.utils.clip_grads_with_norm_([p for _, p in named_params], max_norm, norm)


def resumed_progress(ckpt: dict, cls=Progress) -> Progress:
    """The progress a checkpoint holds, noting that the run resumed at its step."""
    progress = cls(**ckpt["progress"])
    progress.resumed_at_steps.append(progress.step)
    progress.checkpoint_step = progress.step
    return progress


def resumed_environment(ckpt: dict, device_text: str, step: int) -> dict:
    """The run's environment from its checkpoint (the first segment's), with one more entry in
    `resumed`: the step this segment starts at and where and from which code it runs."""
    env = dict(ckpt["env"])
    env["resumed"] = [*env.get("resumed", []),
                      {"at_step": step, **rundir.environment(device_text)}]
    return env


def progress_state(progress: Progress, start: float) -> dict:
    """The checkpoint's progress entry, with the time spent so far (`start`: the loop's
    perf_counter origin)."""
    progress.elapsed_s = time.perf_counter() - start
    return {"progress": asdict(progress)}
