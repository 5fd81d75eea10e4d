"""record.json: what a table needs of one finished run, in one small file beside its run folder.

A record is built from the run folder alone (`final.json`, `config.json`, `metrics.jsonl`) after
the run ends: `spd` writes it for every run it finishes, and the ablation runner adds the grid
rows the run fills. Tables and figures read records only, so a new recipe adds rows and never
empties old ones: nothing downstream compares a run with today's presets.

Fields: task, kind (finetune or prune), seed, sparsity (target) and sparsity_realised, recipe
(the preset or grid profile it ran under) and config_hash, teacher (folder, dev metrics and
config hash, for distilled runs), main_metric, dev, train_subset, majority_dev, steps,
wall_time_s, evals (the dev and train-subset metrics at each evaluation), environment
(device, commit, resumed segments), command, and rows (grid, label, reference, method).
"""
import math
from pathlib import Path

from spd import rundir
from spd.errors import SpdError

RECORD = "record.json"
SCHEMA = 1
# Relative tolerance of `same_teacher`: a teacher's dev loss evaluated, or its recipe refit, on
# a CPU with other vector instructions differs in the 7th digit; another teacher differs by at
# least one dev example in accuracy (1/n, 1e-4 for 10k examples) and by far more in loss.
SAME_TEACHER_RTOL = 1e-5
_ENV = ("device", "git_commit", "git_dirty", "spd", "torch", "transformers", "world_size",
        "resumed")


def same_teacher(recorded: dict, current: dict) -> bool:
    """Whether a run's recorded teacher dev metrics are those of the teacher now in place: the
    same metrics, each equal up to float rounding (`SAME_TEACHER_RTOL`)."""
    return recorded.keys() == current.keys() and all(
        math.isclose(recorded[k], current[k], rel_tol=SAME_TEACHER_RTOL) for k in recorded)


def teacher_matches(recorded_dev: dict, teacher: str) -> bool | None:
    """Whether the teacher folder now holds the teacher of `recorded_dev` (its final.json dev
    metrics equal up to float rounding); None when it has no final.json (a plain model)."""
    final = Path(teacher) / rundir.FINAL
    if not final.is_file():
        return None
    return same_teacher(recorded_dev, rundir.read_json(final).get("dev") or {})


def check_teacher(recorded_dev: dict, teacher: str, run_dir: Path, what: str) -> None:
    """Refuse a run (to count a finished one, or to resume one) whose recorded teacher dev
    metrics are not those of the teacher now in the folder it names; a teacher folder without
    final.json (a plain model) has no identity to check."""
    if teacher_matches(recorded_dev, teacher) is False:
        current = rundir.read_json(Path(teacher) / rundir.FINAL).get("dev") or {}
        raise SpdError(
            f"--teacher: {str(teacher)!r} now holds another teacher than the one {str(run_dir)!r} "
            f"was distilled from (recorded dev {short_metrics(recorded_dev)}, now "
            f"{short_metrics(current)}), so "
            f"its run cannot be {what}; allowed: the teacher it was made from, or --overwrite to "
            f"distil again")


def short_metrics(metrics: dict) -> str:
    return ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())


def _evals(folder: Path) -> list[dict]:
    path = folder / rundir.METRICS
    if not path.is_file():
        return []
    return [{k: r[k] for k in ("step", "epoch", "sparsity", "p", "dev", "train_subset") if k in r}
            for r in rundir.read_jsonl(path) if "dev" in r]


def _teacher(final: dict) -> dict | None:
    if "teacher" not in final:
        return None
    folder = Path(final["teacher"])
    teacher_final = rundir.read_json(folder / rundir.FINAL) if (folder / rundir.FINAL).is_file() \
        else {}
    same = same_teacher(final["teacher_dev"], teacher_final.get("dev") or {})
    return {"folder": final["teacher"], "dev": final["teacher_dev"],
            "config_hash": teacher_final.get("config_hash") if same else None}


def build(folder: Path, recipe: str | None = None) -> dict:
    """The record of the finished run in `folder` (refused if it has no final.json)."""
    folder = Path(folder)
    final = rundir.read_json(folder / rundir.FINAL)
    config = rundir.read_json(folder / rundir.CONFIG) if (folder / rundir.CONFIG).is_file() \
        else {}
    env = final.get("environment") or {}
    distilled = "teacher" in final
    return {
        "schema": SCHEMA, "task": final.get("task"), "kind": "prune" if distilled else "finetune",
        "seed": final.get("seed"), "sparsity": final.get("target_sparsity"),
        "sparsity_realised": final.get("sparsity"), "recipe": recipe,
        "config_hash": final.get("config_hash"), "model": config.get("model"),
        "teacher": _teacher(final) if distilled else None,
        "main_metric": final["main_metric"], "dev": final["dev"],
        "train_subset": final.get("train_subset"), "majority_dev": final.get("majority_dev"),
        "steps": final.get("steps"), "wall_time_s": final.get("wall_time_s"),
        "evals": _evals(folder), "environment": {k: env[k] for k in _ENV if k in env},
        "command": final.get("command"), "rows": [],
    }


def read(folder: Path) -> dict | None:
    path = Path(folder) / RECORD
    return rundir.read_json(path) if path.is_file() else None


def write(folder: Path, recipe: str | None = None, row: dict | None = None) -> dict:
    """Write (atomically) the record of the finished run in `folder`, keeping the rows and recipe
    of the record already there and adding `row` ({grid, label, reference, method}) if new."""
    old = read(folder) or {}
    record = build(folder, recipe or old.get("recipe"))
    record["rows"] = list(old.get("rows") or [])
    if row is not None and row not in record["rows"]:
        record["rows"].append(row)
    rundir.write_json(Path(folder) / RECORD, record)
    return record


def teacher_is_current(record: dict) -> bool:
    """Whether a distilled run's teacher is still the one in the folder it names (its dev
    metrics equal the recorded ones); a dense run has no teacher and is always current."""
    teacher = record.get("teacher")
    return teacher is None or bool(teacher_matches(teacher["dev"], teacher["folder"]))


def under(folder: Path) -> list[tuple[Path, dict]]:
    """Every record below `folder`, in path order: (its run folder, the record)."""
    return [(p.parent, rundir.read_json(p)) for p in sorted(Path(folder).rglob(RECORD))]
