"""The `spd` command line. Bad input: one line on stderr, exit code 2, no traceback."""
import argparse
import json
import logging
import os
import sys
from pathlib import Path

from spd import records
from spd.errors import SpdError, bad_value, output_folder
from spd.interrupt import Stopped

EXIT_BAD_INPUT = 2


class OneLineParser(argparse.ArgumentParser):
    """argparse, but its usage errors are one line like every other spd refusal."""

    def error(self, message):
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def data_dir_from(arg: str | None) -> Path | None:
    """`--data-dir`, else `SPD_DATA_DIR`, else None (the Hugging Face hub)."""
    value = arg if arg is not None else os.environ.get("SPD_DATA_DIR") or None
    if value is None:
        return None
    path = Path(value)
    if not path.is_dir():
        source = "--data-dir" if arg is not None else "SPD_DATA_DIR"
        raise bad_value(f"{source}: no such folder", value,
                        "a folder holding <task>/{train,validation}.jsonl[.gz], or unset to use the hub")
    return path


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", required=True, help="GLUE task: cola sst2 mrpc stsb qqp mnli qnli rte wnli")
    p.add_argument("--data-dir", help="local GLUE folder <dir>/<task>/<split>.jsonl[.gz] "
                   "(default: $SPD_DATA_DIR, else the hub dataset nyu-mll/glue)")
    p.add_argument("--device", default="auto", help="auto (CUDA if present), cpu or cuda")


def _add_run(p: argparse.ArgumentParser, example: str) -> None:
    """The arguments of commands that write a run directory."""
    p.add_argument("--output", required=True, help="run directory to write")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help=f"override a config field, e.g. {example} (repeatable)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a run of another configuration in --output")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run in --output from its last checkpoint")
    p.add_argument("--tensorboard", action="store_true",
                   help="also write the run's scalars as TensorBoard events to OUTPUT/tensorboard "
                   "(needs the tensorboard extra)")


def _add_model(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="minilm (packaged default), a hub id or a local folder")


def _add_preset(p: argparse.ArgumentParser) -> None:
    from spd.presets import DEFAULT_PRESET

    p.add_argument("--preset", default=DEFAULT_PRESET,
                   help=f"{DEFAULT_PRESET} (default: the recipe that keeps a 90%%-sparse MiniLM "
                   f"near its teacher on a 2-core CPU), cpu (the recipe before it), official, "
                   f"official_readme, smoke")


def _add_spd(p: argparse.ArgumentParser) -> None:
    """The arguments every SPD command shares."""
    p.add_argument("--sparsity", required=True, help="target sparsity s_f in [0, 1)")
    p.add_argument("--compress", metavar="FORMAT", help="also export the student compressed "
                   "with compressed-tensors into OUTPUT/model-compressed: sparse-bitmask or "
                   "sparse-24-bitmask (as spd export)")
    _add_preset(p)
    _add_run(p, "replace.p_0=0.8")


def check_agreement(args) -> None:
    """Refuse, before any work, what contradicts itself: a flag and a `--set` of the same key
    with different values, `--resume` with `--overwrite`, and empty paths or model names."""
    if getattr(args, "resume", False) and getattr(args, "overwrite", False):
        raise SpdError("--resume and --overwrite together: --resume continues the run in --output, "
                       "--overwrite replaces it; allowed: one of them")
    for flag in ("output", "model", "teacher", "data_dir"):
        value = getattr(args, flag, None)
        if value is not None and not value.strip():
            raise bad_value(f"--{flag.replace('_', '-')}", value, "a non-empty path or name")
    flags = {"task": getattr(args, "task", None), "model": getattr(args, "model", None),
             "teacher": getattr(args, "teacher", None),
             "prune.sparsity": getattr(args, "sparsity", None)}
    for item in getattr(args, "overrides", []):
        key, _, value = item.partition("=")
        key, value = key.strip(), value.strip()
        flag = flags.get(key)
        if flag is None or value == flag:
            continue
        if key == "prune.sparsity" and _same_number(value, flag):
            continue
        name = "--sparsity" if key == "prune.sparsity" else f"--{key}"
        raise SpdError(f"--set {key}={value} contradicts {name} {flag}; allowed: the flag alone, "
                       f"or a --set of the same value")


def _same_number(a: str, b: str) -> bool:
    try:
        return float(a) == float(b)
    except ValueError:
        return False


def _version() -> str:
    from spd import __version__, rundir

    commit = rundir.git_commit()
    sha = commit.get("git_commit") or "unknown commit"
    return f"spd {__version__} ({sha}{', dirty' if commit.get('git_dirty') else ''})"


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="spd",
                           description="Sparse Progressive Distillation research suite.")
    parser.add_argument("--version", action="store_true",
                        help="print the package version and git commit, then exit")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)

    ft = sub.add_parser("finetune", help="fine-tune a dense teacher on a GLUE task")
    _add_common(ft)
    _add_model(ft)
    _add_preset(ft)
    _add_run(ft, "optim.lr=3e-5")

    pr = sub.add_parser("prune", help="SPD: prune a student while the fine-tuned teacher distils into it")
    _add_common(pr)
    pr.add_argument("--teacher", required=True, help="the fine-tuned teacher: run folder, model "
                    "folder or hub id (the student starts as its copy: this is prune's model)")
    _add_spd(pr)

    rn = sub.add_parser("run", help="fine-tune the teacher (reusing OUTPUT/teacher), then SPD")
    _add_common(rn)
    _add_model(rn)
    _add_spd(rn)
    rn.add_argument("--teacher-set", dest="teacher_overrides", action="append", default=[],
                    metavar="KEY=VALUE", help="override a field of the teacher's fine-tuning "
                    "config, e.g. optim.lr=3e-5 (repeatable)")

    rp = sub.add_parser("report", help="print a Markdown table of finished runs' final.json "
                        "(teacher vs student when all are SPD runs)")
    rp.add_argument("runs", nargs="+", help="run directories")
    rp.add_argument("--write", action="store_true",
                    help="(re)write report.md and its plots in each SPD run instead")

    be = sub.add_parser("bench", help="time an SPD step's parts against the minimum, and sparse "
                        "inference against dense; print a table, write bench.json")
    _add_model(be)
    be.add_argument("--task", default="mrpc", help="task whose head the model gets (default mrpc)")
    be.add_argument("--batch", type=int, default=32, help="training batch (default 32)")
    be.add_argument("--length", type=int, default=128, help="sequence length (default 128)")
    be.add_argument("--repeats", type=int, default=5, help="timed runs per figure, median (default 5)")
    be.add_argument("--output", help="folder for bench.json and bench.md")
    be.add_argument("--device", default="auto", help="auto (CUDA if present), cpu or cuda")
    be.add_argument("--epoch-steps", type=int, default=0, metavar="N",
                    help="instead: time N real SPD steps of --task per variant (fp32 vs bf16, "
                    "shuffled vs length-grouped batches) and estimate an epoch of each")
    be.add_argument("--data-dir", help="local GLUE folder for --epoch-steps (default: "
                    "$SPD_DATA_DIR, else the hub)")
    ex = sub.add_parser("export", help="save a finished SPD run's student compressed with "
                        "compressed-tensors, load it back and check it bit for bit")
    ex.add_argument("run", metavar="RUN_DIR", help="an SPD run folder (spd prune / spd run)")
    ex.add_argument("--format", required=True, help="sparse-bitmask (unstructured) or "
                    "sparse-24-bitmask (a 2:4 student)")
    ex.add_argument("--output", help="folder to write (default: RUN_DIR/model-compressed)")
    ex.add_argument("--data-dir", help="local GLUE folder: also check the loaded-back model's "
                    "dev metrics against final.json (default: $SPD_DATA_DIR, else skipped)")
    th = sub.add_parser("theory", help="check the error-bound statements A to D on a finished "
                        "SPD run against its teacher; write theory.json, theory.md and plots")
    th.add_argument("run", metavar="RUN_DIR", help="an SPD run folder (spd prune / spd run)")
    th.add_argument("--output", help="folder for theory.json, theory.md and plots (default: the "
                    "run)")
    th.add_argument("--examples", type=int, default=32, help="dev examples, one batch (default 32)")
    th.add_argument("--data-dir", help="local GLUE folder (default: $SPD_DATA_DIR, else the hub)")
    ev = sub.add_parser("evaluate", help="print a model's GLUE dev metrics as JSON")
    _add_common(ev)
    ev.add_argument("--model", required=True, help="a run's model/ folder, a run folder or a hub id")
    ev.add_argument("--batch-size", type=int, help="evaluation batch size (default: the run's "
                    "data.eval_batch_size, else 128)")
    ev.add_argument("--max-length", type=int, help="truncation length in tokens (default: the "
                    "run's data.max_length, else 128)")
    ev.add_argument("--precision", help="auto, fp32 or bf16 (default: the run's precision, else "
                    "auto): a run's own settings reproduce its final.json")
    return parser


def _record(folder: Path, preset: str) -> None:
    """The finished run's record.json (spd.records), written once: by rank 0 under torchrun."""
    if int(os.environ.get("RANK", "0")) == 0:
        records.write(folder, recipe=preset)


def cmd_finetune(args) -> int:
    from spd.presets import finetune_config
    from spd.device import resolve_device
    from spd.finetune import finetune

    cfg = finetune_config(args.task, args.model, args.preset, args.overrides)
    data_dir, device = data_dir_from(args.data_dir), resolve_device(args.device)
    final = finetune(cfg, Path(args.output), data_dir, device, overwrite=args.overwrite,
                     command=args.argv, resume=args.resume,
                     tensorboard=args.tensorboard)
    _record(Path(args.output), args.preset)
    metric = final["main_metric"]
    print(f"{final['task']} dev {metric} {final['dev'][metric]:.4f} "
          f"({final['steps']} steps, {final['wall_time_s']:.0f} s); results in {args.output}")
    return 0


def _check_compress(fmt: str | None, cfg) -> None:
    """Refuse a --compress format before the run rather than after it."""
    if fmt is None:
        return
    from spd.export import check_format
    from spd.models import compressed_tensors_api

    compressed_tensors_api()
    check_format(fmt, cfg.prune.pattern, "--compress")


def _print_student(final: dict, output: str) -> None:
    metric = final["main_metric"]
    print(f"{final['task']} student dev {metric} {final['dev'][metric]:.4f} at sparsity "
          f"{final['sparsity']:.3f} (teacher {final['teacher_dev'][metric]:.4f}; "
          f"{final['steps']} steps, {final['wall_time_s']:.0f} s); results in {output}")


def cmd_prune(args) -> int:
    from spd.presets import spd_config
    from spd.device import resolve_device
    from spd.spd_train import train_spd

    cfg = spd_config(args.task, args.teacher, args.preset,
                     [f"prune.sparsity={args.sparsity}", *args.overrides])
    data_dir, device = data_dir_from(args.data_dir), resolve_device(args.device)
    _check_compress(args.compress, cfg)
    final = train_spd(cfg, Path(args.output), data_dir, device, overwrite=args.overwrite,
                  command=args.argv, resume=args.resume,
                  tensorboard=args.tensorboard)
    _record(Path(args.output), args.preset)
    _print_student(final, args.output)
    if args.compress:
        _export(args.output, args.compress, data_dir=data_dir)
    return 0


TEACHER_DIR = "teacher"


def cmd_run(args) -> int:
    """The teacher in OUTPUT/teacher (fine-tuned, or reused when already there), then SPD in OUTPUT."""
    from spd import rundir
    from spd.presets import finetune_config, spd_config
    from spd.device import resolve_device
    from spd.spd_train import train_spd
    from spd.finetune import finetune

    out = Path(args.output)
    teacher_dir = out / TEACHER_DIR
    tcfg = finetune_config(args.task, args.model, args.preset, args.teacher_overrides)
    cfg = spd_config(args.task, str(teacher_dir), args.preset,
                     [f"prune.sparsity={args.sparsity}", *args.overrides])
    data_dir, device = data_dir_from(args.data_dir), resolve_device(args.device)
    rundir.check_writable(out)
    rundir.check_existing(out, cfg, args.overwrite)  # refuse before the teacher's work
    from spd.models import check_pattern_fits

    check_pattern_fits(tcfg.model, cfg.prune.pattern)  # the student's matrices are the teacher's
    _check_compress(args.compress, cfg)
    command = args.argv
    # --resume continues whichever of the two runs had started; --overwrite replaces the
    # teacher only when it was fine-tuned with another configuration.
    started = {d: (d / rundir.CONFIG).is_file() for d in (teacher_dir, out)}
    if args.resume and not any(started.values()):
        raise SpdError(f"--resume: {str(out)!r} holds no run to resume (neither it nor "
                       f"{TEACHER_DIR}/ has a {rundir.CONFIG}); allowed: the --output of an "
                       f"interrupted run, or drop --resume to start one")
    retrain = args.overwrite and not rundir.holds_config(teacher_dir, tcfg)
    teacher = finetune(tcfg, teacher_dir, data_dir, device, overwrite=retrain, command=command,
                       resume=args.resume and started[teacher_dir], tensorboard=args.tensorboard)
    _record(teacher_dir, args.preset)
    metric = teacher["main_metric"]
    print(f"{args.task} teacher dev {metric} {teacher['dev'][metric]:.4f} "
          f"({teacher['wall_time_s']:.0f} s); in {teacher_dir}")
    final = train_spd(cfg, out, data_dir, device, overwrite=args.overwrite, command=command,
                  resume=args.resume and started[out], tensorboard=args.tensorboard)
    _record(out, args.preset)
    _print_student(final, args.output)
    if args.compress:
        _export(args.output, args.compress, data_dir=data_dir)
    return 0


def cmd_evaluate(args) -> int:
    from spd import rundir
    from spd.device import resolve_device
    from spd.data import load_task_data
    from spd.evaluation import evaluate_dev
    from spd.models import load_classifier, load_tokenizer, max_positions, recorded_config
    from spd.tasks import get_task

    from spd.device import PRECISIONS

    task = get_task(args.task)
    run = recorded_config(rundir.model_source(args.model)) or {}
    data = run.get("data", {})
    batch_size = args.batch_size if args.batch_size is not None else data.get("eval_batch_size", 128)
    max_length = args.max_length if args.max_length is not None else data.get("max_length", 128)
    precision = args.precision or run.get("precision", "auto")
    if batch_size < 1:
        raise bad_value("--batch-size", batch_size, "an integer >= 1")
    if max_length < 8:
        raise bad_value("--max-length", max_length, "an integer >= 8")
    if precision not in PRECISIONS:
        raise bad_value("--precision", precision, ", ".join(PRECISIONS))
    name = rundir.model_source(args.model)
    data_dir, device = data_dir_from(args.data_dir), resolve_device(args.device)
    tokenizer = load_tokenizer(name)
    model = load_classifier(name, task).to(device)
    if max_length > max_positions(model):
        raise bad_value("--max-length", max_length,
                        f"at most {max_positions(model)}, the model's max_position_embeddings")
    td = load_task_data(task, tokenizer, data_dir, max_length, train_eval_size=0)
    print(json.dumps({"task": task.name, "model": args.model,
                      "settings": {"max_length": max_length, "batch_size": batch_size,
                                   "precision": precision},
                      "dev": evaluate_dev(model, td, device, batch_size, precision)}, indent=2))
    return 0


def cmd_bench(args) -> int:
    from spd import bench
    from spd.device import resolve_device
    from spd.tasks import get_task

    get_task(args.task)
    for name in ("batch", "length", "repeats"):
        if getattr(args, name) < 1:
            raise bad_value(f"--{name}", getattr(args, name), "an integer >= 1")
    if args.epoch_steps < 0:
        raise bad_value("--epoch-steps", args.epoch_steps, "an integer >= 1 (0: the step "
                        "breakdown instead)")
    output_folder("--output", args.output)
    if args.epoch_steps:
        from spd import bench_epoch

        result = bench_epoch.run(args.model or "minilm", args.task, data_dir_from(args.data_dir),
                                 resolve_device(args.device), args.epoch_steps)
        print(bench_epoch.render(result), end="")
        if args.output:
            from spd import rundir

            Path(args.output).mkdir(parents=True, exist_ok=True)
            rundir.write_json(Path(args.output) / "bench_epoch.json", result)
            rundir.write_text(Path(args.output) / "bench_epoch.md", bench_epoch.render(result))
        return 0
    result = bench.run(args.model or "minilm", args.task, args.batch, args.length, args.repeats,
                       resolve_device(args.device))
    print(bench.render(result), end="")
    if args.output:
        bench.write(result, Path(args.output))
    return 0


def _export(run, fmt: str, output=None, data_dir=None) -> None:
    from spd.export import export

    r = export(Path(run), fmt, Path(output) if output else None, data_dir)
    dev = ("" if "dev" not in r else f"; dev metrics {'equal' if r['dev_identical'] else 'NOT equal'}"
           f" to final.json's")
    print(f"{r['format']}: {r['compressed_bytes'] / 2 ** 20:.1f} MiB against "
          f"{r['dense_bytes'] / 2 ** 20:.1f} MiB dense (ratio {r['ratio']:.3f}); loaded back "
          f"bit for bit{dev}; in {r['output']}")


def cmd_export(args) -> int:
    output_folder("--output", args.output)
    _export(args.run, args.format, args.output, data_dir_from(args.data_dir))
    return 0


def cmd_theory(args) -> int:
    from spd.probe import check_run

    output_folder("--output", args.output)
    print(check_run(Path(args.run), args.output, args.examples, data_dir_from(args.data_dir),
                    " ".join(["spd", *sys.argv[1:]])))
    return 0


def cmd_report(args) -> int:
    from spd.report import load_finals, table, write_run_report

    if args.write:
        for run in args.runs:
            print(write_run_report(Path(run)))
        return 0
    print(table(load_finals([Path(r) for r in args.runs])), end="")
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="spd: %(message)s")
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["--version"]:
        print(_version())
        return 0
    args = build_parser().parse_args(argv)
    args.argv = ["spd", *argv]  # the command as given, recorded in final.json and record.json
    try:
        check_agreement(args)
        from spd.models import quiet_transformers

        quiet_transformers()
        return {"finetune": cmd_finetune, "prune": cmd_prune, "run": cmd_run,
                "evaluate": cmd_evaluate, "report": cmd_report, "bench": cmd_bench,
                "theory": cmd_theory, "export": cmd_export}[args.command](args)
    except SpdError as e:
        print(f"spd: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Stopped as e:
        print(f"spd: stopped: {e}", file=sys.stderr)
        return 128 + e.signum
    except KeyboardInterrupt:
        print("spd: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
