"""The `spd` command line. Bad input: one line on stderr, exit code 2, no traceback."""
import json
import logging
import os
import sys
from pathlib import Path

from spd import records
from spd.arguments import EXIT_BAD_INPUT, build_parser, check_agreement, data_dir_from
from spd.errors import SpdError, bad_value, output_folder
from spd.interrupt import Stopped

def _version() -> str:
    from spd import __version__, rundir

    commit = rundir.git_commit()
    sha = commit.get("git_commit") or "unknown commit"
    return f"spd {__version__} ({sha}{', dirty' if commit.get('git_dirty') else ''})"


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
