"""The manual fault check on real data: `spd run` SIGKILLed at random points, resumed each time
with --resume, ends with the same results as an uninterrupted run.

    python -m ablations.kill_resume --output DIR [--seed S] [--max-delay SECONDS]
                                    [--reference-teacher T --reference R] -- SPD_RUN_ARGS...

Runs `spd run SPD_RUN_ARGS --output DIR/killed` and SIGKILLs it twice: once while the teacher
fine-tunes and once during SPD, each at a random moment up to --max-delay seconds after that
phase's first checkpoint appeared (a kill before it would only restart the phase). After each
kill the same command runs again with --resume; the last one finishes. The uninterrupted run
is `--reference-teacher` and `--reference` when given (finished runs of the same
configurations), else `spd run` into DIR/uninterrupted. The teacher's and the student's
metrics at every evaluation, final metrics and weights (SHA-256 of model.safetensors) are
compared; DIR/kill_resume.json records the kill times, steps resumed at and the verdict.
Exit code 0 when everything is equal, 1 when not.
"""
import argparse
import hashlib
import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from spd import rundir
from spd.cli import TEACHER_DIR

SAME_KEYS = ("dev", "train_subset", "best_dev_during_training", "steps")


def spd_run(args: list[str], output: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "spd", "run", *args, "--output", str(output)])


def kill_after_checkpoint(proc: subprocess.Popen, checkpoint: Path, since: float,
                          max_delay: float, rng: random.Random) -> dict:
    """SIGKILL `proc` a random time after `checkpoint` is (re)written after `since`."""
    while not (checkpoint.is_file() and checkpoint.stat().st_mtime > since):
        if proc.poll() is not None:
            raise SystemExit(f"kill_resume: the run ended (code {proc.returncode}) before "
                             f"{checkpoint} appeared")
        time.sleep(1)
    delay = rng.uniform(0, max_delay)
    time.sleep(delay)
    if proc.poll() is not None:
        raise SystemExit("kill_resume: the run ended before the kill; lower --max-delay")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return {"checkpoint": checkpoint.name if checkpoint.parent.name != TEACHER_DIR
            else f"{TEACHER_DIR}/{checkpoint.name}", "delay_s": round(delay, 1)}


def weights_sha256(run: Path) -> str:
    return hashlib.sha256((run / rundir.MODEL / "model.safetensors").read_bytes()).hexdigest()


def compare(killed: Path, reference: Path) -> dict:
    """Per compared item, whether the killed-and-resumed run equals the reference. Records are
    compared on the fields both runs log (a reference made by an older spd may lack some, such
    as `theory`); the fields left out are listed."""
    rk, rr = (rundir.read_jsonl(r / rundir.METRICS) for r in (killed, reference))
    fk, fr = (rundir.read_json(r / rundir.FINAL) for r in (killed, reference))
    same = {key: fk[key] == fr[key] for key in SAME_KEYS}
    left_out = set()
    same["metrics.jsonl"] = len(rk) == len(rr)
    for a, b in zip(rk, rr):  # record by record, on the fields both logged
        common = (set(a) & set(b)) - {"elapsed_s"}
        left_out |= (set(a) ^ set(b))
        same["metrics.jsonl"] &= all(a[k] == b[k] for k in common)
    same["weights"] = weights_sha256(killed) == weights_sha256(reference)
    return {"resumed_at_steps": fk.get("resumed_at_steps"), "dev": fk["dev"],
            "reference_dev": fr["dev"], "same": same, "metrics_fields_not_compared": sorted(left_out),
            "commit": fk["environment"].get("git_commit"),
            "reference_commit": fr["environment"].get("git_commit")}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ablations.kill_resume",
                                description=__doc__.split("\n")[0])
    p.add_argument("--output", required=True, help="folder for the killed run and the record")
    p.add_argument("--seed", type=int, default=None, help="seed of the kill times (default: random)")
    p.add_argument("--max-delay", type=float, default=60.0,
                   help="the longest wait after a phase's first checkpoint (default 60 s)")
    p.add_argument("--reference-teacher", help="a finished teacher run of the same configuration")
    p.add_argument("--reference", help="a finished SPD run of the same configuration")
    p.add_argument("--compare-only", action="store_true",
                   help="no runs: compare OUTPUT/killed (finished) with the references")
    p.add_argument("spd_args", nargs=argparse.REMAINDER, help="-- then `spd run` arguments")
    args = p.parse_args(argv)
    spd_args = [a for a in args.spd_args if a != "--"]
    seed = args.seed if args.seed is not None else random.randrange(2 ** 32)
    rng, out = random.Random(seed), Path(args.output)
    killed = out / "killed"
    record = out / "kill_resume.json"
    kills = rundir.read_json(record)["kills"] if args.compare_only else []
    for checkpoint in (() if args.compare_only else
                       (killed / TEACHER_DIR / rundir.CHECKPOINT, killed / rundir.CHECKPOINT)):
        since = time.time()
        proc = spd_run([*spd_args, *(["--resume"] if kills else [])], killed)
        kills.append(kill_after_checkpoint(proc, checkpoint, since, args.max_delay, rng))
        print(f"kill_resume: killed {kills[-1]}", flush=True)
    if not args.compare_only and spd_run([*spd_args, "--resume"], killed).wait() != 0:
        return 1
    if args.reference and args.reference_teacher:
        reference, reference_teacher = Path(args.reference), Path(args.reference_teacher)
    else:
        reference = out / "uninterrupted"
        reference_teacher = reference / TEACHER_DIR
        if spd_run(spd_args, reference).wait() != 0:
            return 1
    if args.compare_only:
        seed = rundir.read_json(record)["kill_seed"]
    result = {"command": ["spd", "run", *spd_args], "kill_seed": seed, "kills": kills,
              "teacher": compare(killed / TEACHER_DIR, reference_teacher),
              "student": compare(killed, reference),
              "reference": [str(reference_teacher), str(reference)],
              "environment": rundir.environment("see the runs' final.json")}
    ok = all(all(part["same"].values()) for part in (result["teacher"], result["student"]))
    result["verdict"] = "equal" if ok else "different"
    rundir.write_json(record, result)
    print(json.dumps({k: result[k] for k in ("kills", "teacher", "student", "verdict")}, indent=1))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
