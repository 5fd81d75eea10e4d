"""The `spd` command line's arguments: the parser (its usage errors one line, exit 2), where
the GLUE data comes from, and the check that flags and `--set` overrides agree."""
import argparse
import os
from pathlib import Path

from spd.errors import SpdError, bad_value

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
