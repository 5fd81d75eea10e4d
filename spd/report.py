"""Markdown tables from saved `final.json` files: pure functions, never scraped from logs."""
from pathlib import Path

from spd import rundir
from spd.errors import SpdError


def load_finals(run_dirs: list[Path]) -> list[dict]:
    finals = []
    for d in run_dirs:
        path = Path(d) / rundir.FINAL
        if not path.is_file():
            raise SpdError(f"no finished run in {str(d)!r}: {rundir.FINAL} is missing")
        finals.append(rundir.read_json(path))
    return finals


def _metrics(dev: dict) -> str:
    return ", ".join(f"{k} {v:.4f}" for k, v in sorted(dev.items()) if not k.startswith("loss"))


def runs_table(finals: list[dict]) -> str:
    """One row per run: task, final dev metrics, best-during-training, steps, time, device."""
    lines = ["| task | model | seed | dev (final) | best dev during training (step) | "
             "train subset (final) | steps | wall time | device |",
             "|---|---|---|---|---|---|---|---|---|"]
    for f in finals:
        best = f["best_dev_during_training"]
        m = f["main_metric"]
        train = f["train_subset"] or {}
        lines.append(
            f"| {f['task']} | {f['model']} | {f['seed']} | {_metrics(f['dev'])} | "
            f"{m} {best['dev'][m]:.4f} ({best['step']}) | {_metrics(train) or '-'} | "
            f"{f['steps']} | {f['wall_time_s'] / 60:.1f} min | {f['environment']['device']} |")
    return "\n".join(lines) + "\n"
