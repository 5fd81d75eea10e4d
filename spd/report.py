"""Markdown tables from saved `final.json` files: pure functions, never scraped from logs."""
from pathlib import Path

from spd import rundir
from spd.errors import SpdError
from theory.bounds import slack_text


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


def _markdown(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table from its header and rows of cells."""
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def devices(env: dict) -> str:
    """Where a run ran: its first device, then each other one it resumed on, from that step."""
    text, last = env["device"], env["device"]
    for segment in env.get("resumed", []):
        if segment["device"] != last:
            text += f"; from step {segment['at_step']}: {segment['device']}"
            last = segment["device"]
    return text


def _tail(f: dict) -> list[str]:
    """The steps, wall time and device columns every run table ends with."""
    return [str(f["steps"]), f"{f['wall_time_s'] / 60:.1f} min", devices(f["environment"])]


def runs_table(finals: list[dict]) -> str:
    """One row per run: task, final dev metrics, best-during-training, steps, time, device."""
    rows = []
    for f in finals:
        best, m = f["best_dev_during_training"], f["main_metric"]
        # An SPD run records its teacher, not a model: name it as the student it is.
        model = f.get("model") or f"SPD student at {f.get('sparsity', 0):.2f}"
        rows.append([f["task"], model, str(f["seed"]), _metrics(f["dev"]),
                     f"{m} {best['dev'][m]:.4f} ({best['step']})",
                     _metrics(f["train_subset"] or {}) or "-", *_tail(f)])
    return _markdown(["task", "model", "seed", "dev (final)", "best dev during training (step)",
                      "train subset (final)", "steps", "wall time", "device"], rows)


def spd_table(finals: list[dict]) -> str:
    """One row per SPD run: teacher and student dev metrics, sparsity, steps, wall time."""
    rows = []
    for f in finals:
        m = f["main_metric"]
        rows.append([f["task"], str(f["target_sparsity"]), f"{f['sparsity']:.4f}",
                     _metrics(f["teacher_dev"]), _metrics(f["dev"]),
                     f"{m} {f['dev'][m] - f['teacher_dev'][m]:+.4f}", *_tail(f)])
    return _markdown(["task", "target sparsity", "sparsity (realised)", "teacher dev",
                      "SPD student dev", "student - teacher (main)", "steps", "wall time",
                      "device"], rows)


def table(finals: list[dict]) -> str:
    """The SPD table when every run is an SPD run, else the plain runs table."""
    return spd_table(finals) if all("teacher_dev" in f for f in finals) else runs_table(finals)


REPORT, PLOTS = "report.md", ("curves.png", "schedules.png", "losses.png", "layer_sparsity.png")
BOUNDS_PLOT = "bounds.png"
STAGES = ("prune", "graft", "finetune")


def stage_ends(final: dict) -> list[int]:
    """The steps at which the prune and graft stages and the run end (`stage_bounds` in the
    final.json of runs before the name changed)."""
    return final["stage_ends"] if "stage_ends" in final else final["stage_bounds"]


def _stage_lines(ax, ends) -> None:
    for b in ends[:2]:
        ax.axvline(b, color="grey", lw=0.8, ls=":")


def write_plots(run_dir: Path, final: dict, records: list[dict], per_matrix: dict) -> None:
    """The report's PNGs (seaborn), from the run's own files."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="paper")
    m, ends = final["main_metric"], stage_ends(final)
    evals = [r for r in records if "dev" in r]
    rows = [{"step": r["step"], "split": split, m: r[split][m]}
            for r in evals for split in ("dev", "train_subset") if r.get(split)]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    sns.lineplot(pd.DataFrame(rows), x="step", y=m, hue="split", marker="o", ax=ax)
    ax.axhline(final["teacher_dev"][m], color="black", ls="--", lw=1, label="teacher dev")
    if final.get("majority_dev", {}).get(m) is not None:
        ax.axhline(final["majority_dev"][m], color="firebrick", ls="-.", lw=1,
                   label="constant prediction (majority class / train mean)")
    _stage_lines(ax, ends)
    ax.set(xlabel="step (dotted: stage edges)")
    ax.legend(fontsize="small")
    ax.set_title(f"{final['task']}: student {m} (pure student at each evaluation)")
    fig.savefig(run_dir / PLOTS[0], dpi=90, bbox_inches="tight")

    fig, axes = plt.subplots(1, 3, figsize=(11, 3))
    for ax, key, label in zip(axes, ("sparsity", "replace_p", "lr"),
                              ("sparsity", "replacing probability p", "learning rate")):
        steps = [r["step"] for r in records]
        if key == "sparsity":
            ax.plot(steps, [r[key] for r in records], label="target (schedule)")
            ax.plot(steps, [r["realised_sparsity"] for r in records], ls="--",
                    label="realised (zeros in the masks)")
            ax.legend(fontsize="small")
        else:
            ax.plot(steps, [r[key] for r in records])
        ax.ticklabel_format(axis="y", useOffset=False, style="plain")  # no "1e-5+8.999e-1"
        _stage_lines(ax, ends)
        ax.set(xlabel="step (dotted: stage edges)", ylabel=label, title=label)
    fig.savefig(run_dir / PLOTS[1], dpi=90, bbox_inches="tight")

    # Only the terms the run trains on (a term at weight 0 is logged, not optimised), and the sum.
    weights = rundir.read_json(run_dir / rundir.CONFIG).get("loss", {})
    rows = [{"step": r["step"], "term": k, "loss": v} for r in records
            for k, v in r["loss"].items() if v > 0 and (k == "total" or weights.get(k, 1) != 0)]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    sns.lineplot(pd.DataFrame(rows), x="step", y="loss", hue="term", ax=ax)
    ax.set_yscale("log")
    _stage_lines(ax, ends)
    ax.set(xlabel="step (dotted: stage edges)", ylabel="loss (unweighted term)",
           title="loss terms with weight > 0 (mean over each logging window; log scale)")
    fig.savefig(run_dir / PLOTS[2], dpi=90, bbox_inches="tight")

    table = pd.DataFrame([{"layer": int(k.split(".", 1)[0]) + 1, "matrix": k.split(".", 1)[1],
                           "s": v} for k, v in per_matrix.items()])  # layers from 1, as bounds.png
    grid = table.pivot(index="layer", columns="matrix", values="s")
    fig, ax = plt.subplots(figsize=(7, 0.4 * len(grid) + 1.5))
    sns.heatmap(grid, annot=True, fmt=".3f", vmin=0, vmax=1, cmap="viridis", ax=ax)
    ax.set(title="sparsity per weight matrix", xlabel="matrix", ylabel="layer (from 1)")
    fig.savefig(run_dir / PLOTS[3], dpi=90, bbox_inches="tight")

    probes = [r for r in evals if "theory" in r]
    if probes:
        fig, axes = plt.subplots(1, 2, figsize=(11, 3.5))
        rows = [{"step": r["step"], "quantity": name, "error": r["theory"]["D"][key]}
                for r in probes for name, key in (("E_R ||f_R - f_T|| (exact)", "measured"),
                                                  ("D bound", "bound"))]
        sns.lineplot(pd.DataFrame(rows), x="step", y="error", hue="quantity", marker="o",
                     ax=axes[0])
        axes[0].set_title("statement D at the current p")
        if any(row["error"] > 0 for row in rows):  # p = 0 throughout: both sides are 0
            axes[0].set_yscale("log")
        rows = [{"step": r["step"], "layer": str(l + 1), "e_l": e} for r in probes
                for l, e in enumerate(r["theory"]["module_errors"]["teacher_inputs"])]
        sns.lineplot(pd.DataFrame(rows), x="step", y="e_l", hue="layer", marker="o", ax=axes[1])
        axes[1].set_title("module errors e_l on teacher inputs")
        for ax in axes:
            _stage_lines(ax, ends)
        fig.savefig(run_dir / BOUNDS_PLOT, dpi=90, bbox_inches="tight")
    plt.close("all")


def bounds_section(records: list[dict]) -> list[str]:
    """report.md lines: statement D at each evaluation's p (empty when it was not measured)."""
    probes = [r for r in records if "theory" in r]
    if not probes:
        return []
    first = probes[0]["theory"]
    lines = ["## Statement D during training", "",
             f"At each evaluation, on the first {first['examples']} dev examples (float64): the "
             f"expected error of the hybrid model over random replacement sets at the current p, "
             f"exact by enumeration of all sets, against statement D's bound (theory/README.md). "
             f"The teacher constants K_l are local estimates ({first['lip_iters']} power "
             f"iterations at {first['lip_points']} points between the teacher's and the student's "
             f"input to each layer): numerical evidence, not certificates. Full check: "
             f"`spd theory RUN_DIR`.", "",
             "| step | stage | p | E_R \\|\\|f_R - f_T\\|\\| | D bound | slack | holds | "
             "\\|\\|f_S - f_T\\|\\| | \\|\\|f_T\\|\\| |", "|---|---|---|---|---|---|---|---|---|"]
    for r in probes:
        t, d = r["theory"], r["theory"]["D"]
        lines.append(f"| {r['step']} | {r['stage']} | {t['p']:.3f} | {d['measured']:.4g} | "
                     f"{d['bound']:.4g} | {slack_text(d['slack'])} | "
                     f"{'yes' if d['holds'] else '**no**'} | "
                     f"{t['student_error']:.4g} | {t['output_norm_teacher']:.4g} |")
    return [*lines, "", f"![statement D and module errors during training]({BOUNDS_PLOT})", ""]


DISTILLATION_TERMS = ("hidden", "attention", "prediction")


def _replaced(config: dict) -> bool:
    r = config["replace"]
    return not (r["schedule"] == "constant" and r["p_0"] == 1)


def method_name(config: dict) -> str:
    """What a run of the pruning trainer was, from its config (`config.json`): SPD when the
    teacher is distilled from and student layers are grafted into it, else the criterion's
    pruning with or without distillation (GMP is magnitude pruning without distillation)."""
    distilled = any(config["loss"][t] for t in DISTILLATION_TERMS)
    replaced, criterion = _replaced(config), config["prune"]["criterion"]
    if distilled and replaced:
        return "SPD" if criterion == "magnitude" else f"SPD ({criterion} criterion)"
    return (f"{criterion.capitalize()} pruning {'with' if distilled else 'without'} distillation"
            f"{', with replacing' if replaced else ''}")


def method_line(config: dict) -> str:
    """The loss terms and the replacing schedule a run trained with, in one sentence."""
    loss, r = config["loss"], config["replace"]
    terms = " + ".join(f"{t} {loss[t]:g}" for t in (*DISTILLATION_TERMS, "hard") if loss[t])
    slope = f", slope {r['slope']:g}" if r["schedule"] == "linear" else ""
    replacing = (f"{r['schedule']} from p_0 {r['p_0']:g}{slope}" if _replaced(config)
                 else "none (the student alone, p = 1)")
    temperature = f" (temperature {loss['temperature']:g})" if loss["prediction"] else ""
    return (f"Loss: {terms}{temperature}; replacing: {replacing}; "
            f"pruning: {config['prune']['criterion']}, {config['prune']['scope']}.")


def run_report(final: dict, records: list[dict], config: dict) -> str:
    """report.md of a pruning run: teacher vs student, sparsity, the train/dev gap, the plots."""
    m = final["main_metric"]
    env = final["environment"]
    names = sorted(k for k in final["dev"] if not k.startswith("loss"))
    lines = [f"# {method_name(config)} on {final['task']}: target sparsity "
             f"{final['target_sparsity']}", "", method_line(config), "",
             f"Teacher `{final['teacher']}`; {final['steps']} steps "
             f"(stages end at steps {', '.join(map(str, stage_ends(final)))}), seed "
             f"{final['seed']}, {final['wall_time_s'] / 60:.1f} min on {devices(env)}; "
             f"spd {env['spd']} at commit {env.get('git_commit') or 'unknown'}"
             f"{' (dirty)' if env.get('git_dirty') else ''}.", "",
             "Generated from this run's `final.json`, `metrics.jsonl` and `sparsity.json` by "
             "`spd report --write RUN_DIR` (which `spd prune` runs when it finishes).", "",
             "| model | " + " | ".join(f"dev {n}" for n in names) + " | sparsity |",
             "|---" * (len(names) + 2) + "|",
             "| teacher (dense) | " + " | ".join(f"{final['teacher_dev'][n]:.4f}" for n in names)
             + " | 0 |",
             "| student | " + " | ".join(f"{final['dev'][n]:.4f}" for n in names)
             + f" | {final['sparsity']:.4f} |", "",
             f"Sparsity is over the prunable set (the six linear maps of every encoder layer); "
             f"per matrix in `sparsity.json` and below. Best dev {m} during training: "
             f"{final['best_dev_during_training']['dev'][m]:.4f} at step "
             f"{final['best_dev_during_training']['step']} (reported for comparison only; the "
             f"student above is the final one).", "",
             f"## Train/dev gap ({m}; train is a fixed subset of the training set)", "",
             "| step | stage | sparsity | p | train | dev | train - dev |", "|---|---|---|---|---|---|---|"]
    for r in records:
        if "dev" in r and r.get("train_subset"):
            tr, dv = r["train_subset"][m], r["dev"][m]
            lines.append(f"| {r['step']} | {r['stage']} | {r['sparsity']:.4f} | "
                         f"{r['replace_p']:.3f} | {tr:.4f} | {dv:.4f} | {tr - dv:+.4f} |")
    lines += ["", "## Plots", "",
              f"![learning curves]({PLOTS[0]})", "",
              f"![schedules: sparsity (dashed: realised), replacing probability, learning rate]"
              f"({PLOTS[1]})", "",
              f"![loss terms]({PLOTS[2]})", "",
              f"![sparsity per weight matrix]({PLOTS[3]})", "", *bounds_section(records)]
    return "\n".join(lines)


def write_run_report(run_dir: Path) -> Path:
    """(Re)write report.md and its plots for a finished SPD run, from its saved files only."""
    run_dir = Path(run_dir)
    final = load_finals([run_dir])[0]
    if "teacher_dev" not in final:
        raise SpdError(f"{str(run_dir)!r} is not an SPD run (no teacher_dev in final.json); "
                       f"allowed: a run folder written by spd prune or spd run")
    for name in (rundir.METRICS, "sparsity.json", rundir.CONFIG):
        if not (run_dir / name).is_file():
            raise SpdError(f"{str(run_dir)!r} lacks {name}, which report.md is made from; "
                           f"allowed: a complete run folder written by spd prune or spd run")
    records = rundir.read_jsonl(run_dir / rundir.METRICS)
    per_matrix = rundir.read_json(run_dir / "sparsity.json")["per_matrix"]
    write_plots(run_dir, final, records, per_matrix)
    path = run_dir / REPORT
    rundir.write_text(path, run_report(final, records, rundir.read_json(run_dir / rundir.CONFIG)))
    return path
