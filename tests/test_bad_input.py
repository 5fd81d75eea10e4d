"""The bad-input catalogue: every case runs the real command line in a subprocess and must exit
with code 2, print one line naming the problem (with the bad value and what is allowed where
there is one), print no traceback, and leave the output folder as it found it: absent when it
was absent, byte for byte the same when it held a run.

`pytest tests/test_bad_input.py -s | grep CATALOGUE` prints each case with the message it gives."""
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

# The tiny runs' settings (tests.test_cli.TINY and the smoke preset).
FINETUNE = ["finetune", "--task", "rte", "--model", "{model}", "--data-dir", "{glue}",
            "--output", "{out}", "--set", "optim.max_steps=4", "--set", "data.max_length=64"]
PRUNE = ["prune", "--task", "rte", "--teacher", "{teacher}", "--data-dir", "{glue}",
         "--output", "{out}", "--sparsity", "0.75", "--preset", "smoke",
         "--set", "data.batch_size=8", "--set", "checkpoint_every=6"]


def replace(argv: list[str], flag: str, value: str) -> list[str]:
    i = argv.index(flag)
    return [*argv[:i + 1], value, *argv[i + 2:]]


# name: (argv, the state of {out} before the command, expected fragment of the one line)
CATALOGUE = {
    "sparsity below 0": (replace(PRUNE, "--sparsity", "-0.1"), None, "prune.sparsity: got -0.1"),
    "sparsity 1.0": (replace(PRUNE, "--sparsity", "1.0"), None, "prune.sparsity: got 1.0"),
    "sparsity not a number": (replace(PRUNE, "--sparsity", "abc"), None,
                              "prune.sparsity: got 'abc'"),
    "N:M pattern with another sparsity": (PRUNE + ["--set", "prune.pattern=2:4"], None,
                                          "0.5 with prune.pattern=2:4"),
    "N:M pattern whose M does not divide the layer width": (
        replace(PRUNE, "--sparsity", "0.5") + ["--set", "prune.pattern=3:6"], None,
        "M = 6 does not divide the row length 128"),
    "unknown task": (replace(FINETUNE, "--task", "mnlii"), None, "unknown task: got 'mnlii'"),
    "missing data folder": (replace(FINETUNE, "--data-dir", "{tmp}/nowhere"), None,
                            "--data-dir: no such folder"),
    "task missing from the data folder": (replace(FINETUNE, "--task", "cola"), None,
                                          "no cola train file"),
    "malformed JSON line": (replace(FINETUNE, "--data-dir", "{glue_broken_json}"), None,
                            "train.jsonl:41: not valid JSON"),
    "label outside the task's set": (replace(FINETUNE, "--data-dir", "{glue_bad_label}"), None,
                                     "label 7 is outside rte's label set"),
    "row missing a field": (replace(FINETUNE, "--data-dir", "{glue_no_field}"), None,
                            "missing field 'sentence2'"),
    "empty training file": (replace(FINETUNE, "--data-dir", "{glue_empty}"), None,
                            "train.jsonl: no rows"),
    "corrupted .gz": (replace(FINETUNE, "--data-dir", "{glue_bad_gz}"), None,
                      "train.jsonl.gz: cannot be read"),
    "lone surrogate in a text field": (replace(FINETUNE, "--data-dir", "{glue_surrogate}"), None,
                                       "train.jsonl:4: field 'sentence1' holds '\\ud800'"),
    "missing model folder": (replace(FINETUNE, "--model", "{tmp}/nomodel"), None,
                             "nomodel' does not exist; allowed: a run folder"),
    "teacher folder without a model": (replace(PRUNE, "--teacher", "{tmp}/empty"), None,
                                       "empty' holds no model (no config.json)"),
    "teacher of another architecture than the checkpointed student": (
        [*PRUNE, "--resume"], "other_arch", "does not fit the model"),
    "model with no encoder layer list to graft": (replace(PRUNE, "--teacher", "{distilbert}"),
                                                  None, "no encoder layer list to graft"),
    "max length above the model's limit": (FINETUNE + ["--set", "data.max_length=512"], None,
                                           "data.max_length: got 512; allowed: at most 128"),
    "zero epochs": (FINETUNE + ["--set", "optim.epochs=0"], None, "optim.epochs: got 0"),
    "stages that add up to no step": (PRUNE + ["--set", "stages.prune=0.2", "--set",
                                               "stages.graft=0", "--set", "stages.finetune=0"],
                                      None, "round to 0 steps"),
    "negative learning rate": (FINETUNE + ["--set", "optim.lr=-1e-5"], None, "optim.lr: got -1e-05"),
    "unknown --set key": (FINETUNE + ["--set", "optim.learning_rate=1"], None,
                          "unknown --set key: got 'optim.learning_rate'"),
    "--set value of the wrong type": (FINETUNE + ["--set", "seed=abc"], None, "seed: got 'abc'"),
    "--set without =": (FINETUNE + ["--set", "seed"], None, "--set expects key=value"),
    "unknown preset": (FINETUNE + ["--preset", "gpu"], None, "--preset: got 'gpu'"),
    "unknown device": (FINETUNE + ["--device", "tpu"], None, "--device: got 'tpu'"),
    "unwritable output folder": (replace(FINETUNE, "--output", "{tmp}/afile/run"), None,
                                 "not writable"),
    "output is a file": (replace(FINETUNE, "--output", "{tmp}/afile"), None, "is a file"),
    "--resume of a folder with no run": (FINETUNE + ["--resume"], None, "holds no run to resume"),
    "unfinished run without --resume": (PRUNE, "interrupted", "holds an unfinished run"),
    "run of another configuration": (PRUNE + ["--set", "seed=7"], "interrupted",
                                     "different configuration"),
    "damaged checkpoint": ([*PRUNE, "--resume"], "damaged", "is damaged"),
    "evaluate with a too short max length": (["evaluate", "--task", "rte", "--model", "{model}",
                                              "--data-dir", "{glue}", "--max-length", "4"],
                                             None, "--max-length: got 4"),
    "unknown ablation": (["@ablations", "component", "--results", "{out}"], None,
                         "ablation: got 'component'"),
    "bad --shard": (["@ablations", "components", "--shard", "3/2", "--results", "{out}"], None,
                    "--shard: got '3/2'"),
    "a folder of someone else's files as --output": (FINETUNE, "foreign",
                                                     "holds files spd did not write (model)"),
    "a folder of someone else's files as --output, with --overwrite": (
        FINETUNE + ["--overwrite"], "foreign", "holds files spd did not write (model)"),
    "teacher with a regression head for a classification task": (
        replace(PRUNE, "--teacher", "{regression_model}"), None,
        "its head has 1 outputs (regression) where rte needs 2"),
    "teacher run folder of another task with the same label count": (
        replace(PRUNE, "--teacher", "{mrpc_teacher}"), None,
        "its spd run folder records task 'mrpc'"),
    "evaluate a model whose head does not fit the task": (
        ["evaluate", "--task", "rte", "--model", "{regression_model}", "--data-dir", "{glue}"],
        None, "does not fit task rte"),
    "evaluate with a max length above the model's limit": (
        ["evaluate", "--task", "rte", "--model", "{teacher}", "--data-dir", "{glue}",
         "--max-length", "100000"], None, "--max-length: got 100000; allowed: at most 128"),
    "evaluate with batch size 0": (
        ["evaluate", "--task", "rte", "--model", "{teacher}", "--data-dir", "{glue}",
         "--batch-size", "0"], None, "--batch-size: got 0"),
    "bench with a length above the model's limit": (
        ["bench", "--model", "{model}", "--task", "rte", "--length", "100000", "--repeats", "1"],
        None, "--length: got 100000; allowed: at most 128"),
    "bench output that is a file": (["bench", "--model", "{model}", "--output", "{tmp}/afile"],
                                    None, "afile' is a file; allowed: a folder"),
    "theory output that is a file": (["theory", "{finished_run}", "--output", "{tmp}/afile"],
                                     None, "afile' is a file; allowed: a folder"),
    "ablation tables --out that is a file": (["@tables", "components", "--out", "{tmp}/afile"],
                                             None, "afile' is a file; allowed: a folder"),
    "ablation results folder that is a file": (["@ablations", "components", "--results",
                                                "{tmp}/afile"], None, "afile' is a file"),
    "mistyped local teacher path": (replace(PRUNE, "--teacher", "teachr/rte"), None,
                                    "'teachr/rte': no local folder has that name, and as a hub id"),
    "report --write on a run without metrics.jsonl": (
        ["report", "{out}", "--write"], "bare_run", "lacks metrics.jsonl"),
    "spd run with --set task contradicting --task": (
        ["run", "--task", "rte", "--model", "{model}", "--sparsity", "0.5", "--data-dir", "{glue}",
         "--output", "{out}", "--preset", "smoke", "--set", "task=mrpc"], None,
        "--set task=mrpc contradicts --task rte"),
    "bench with a model whose head does not fit the task": (
        ["bench", "--model", "{regression_model}", "--task", "rte", "--repeats", "1"], None,
        "does not fit task rte"),
    "a byte that is not UTF-8 in a data file": (replace(FINETUNE, "--data-dir", "{glue_latin1}"),
                                                None, "train.jsonl:6: not UTF-8 (byte b'\\xe9')"),
    "checkpoint of another configuration": ([*PRUNE, "--resume"], "foreign_checkpoint",
                                            "written by a run of another configuration"),
    "hub id with the hub offline": (replace(PRUNE, "--teacher", "owner/model"), None,
                                    "the hub is offline (HF_HUB_OFFLINE=1); allowed:"),
    "--set task contradicting --task": (FINETUNE + ["--set", "task=mrpc"], None,
                                        "--set task=mrpc contradicts --task rte"),
    "--set prune.sparsity contradicting --sparsity": (PRUNE + ["--set", "prune.sparsity=0.8"],
                                                      None, "contradicts --sparsity 0.75"),
    "--resume with --overwrite": ([*PRUNE, "--resume", "--overwrite"], "damaged",
                                  "--resume and --overwrite together"),
    "empty --model": (replace(FINETUNE, "--model", ""), None, "--model: got ''"),
    "empty --output": (replace(FINETUNE, "--output", ""), None, "--output: got ''"),
    "theory check of a teacher of another architecture": (
        ["theory", "{out}", "--data-dir", "{glue}"], "theory_other_arch",
        "does not have the student's architecture"),
}


def tiny_bert(out: Path, hidden: int = 128, kind: str = "bert") -> Path:
    from transformers import (AutoTokenizer, BertConfig, BertModel, DistilBertConfig,
                              DistilBertModel)

    from spd.models import resolve_model_path

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path("minilm"))
    if kind == "bert":
        BertModel(BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=hidden,
                             num_hidden_layers=2, num_attention_heads=2,
                             intermediate_size=2 * hidden, max_position_embeddings=128)
                  ).save_pretrained(out)
    else:
        DistilBertModel(DistilBertConfig(vocab_size=tokenizer.vocab_size, dim=hidden, n_layers=2,
                                         n_heads=2, hidden_dim=2 * hidden,
                                         max_position_embeddings=128)).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def broken_copy(small_glue: Path, out: Path, edit) -> Path:
    shutil.copytree(small_glue, out)
    path = out / "rte" / "train.jsonl"
    path.write_text(edit(path.read_text()))
    return out


def regression_head(model_dir: Path, out: Path) -> Path:
    """The tiny BERT saved with a one-output regression head (an STS-B model's shape)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    AutoModelForSequenceClassification.from_pretrained(
        model_dir, num_labels=1, problem_type="regression").save_pretrained(out)
    AutoTokenizer.from_pretrained(model_dir).save_pretrained(out)
    return out


def gz_copy(small_glue: Path, out: Path, damage: bool) -> Path:
    """The train split as .jsonl.gz; with `damage`, its compressed stream cut and filled with
    junk (a download that broke off)."""
    import gzip

    shutil.copytree(small_glue, out)
    path = out / "rte" / "train.jsonl"
    packed = gzip.compress(path.read_bytes())
    if damage:
        packed = packed[:40] + b"\xff" * 40
    (out / "rte" / "train.jsonl.gz").write_bytes(packed)
    path.unlink()
    return out


def latin1_copy(small_glue: Path, out: Path) -> Path:
    """The train split with one Latin-1 byte (0xe9, an e-acute) in its sixth line."""
    shutil.copytree(small_glue, out)
    path = out / "rte" / "train.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    lines[5] = lines[5].replace(b'"sentence1": "', b'"sentence1": "\xe9', 1)
    path.write_bytes(b"".join(lines))
    return out


def _surrogate(text: str) -> str:
    rows = text.splitlines(keepends=True)
    return "".join([*rows[:3], rows[3].replace('"sentence1": "', '"sentence1": "\\ud800', 1),
                    *rows[4:]])


def _relabel(text: str) -> str:
    rows = text.splitlines(keepends=True)
    row = json.loads(rows[5])
    return "".join([*rows[:5], json.dumps({**row, "label": 7}) + "\n", *rows[6:]])


def _drop_field(text: str) -> str:
    rows = text.splitlines(keepends=True)
    row = json.loads(rows[2])
    del row["sentence2"]
    return "".join([*rows[:2], json.dumps(row) + "\n", *rows[3:]])


@pytest.fixture(scope="module")
def places(tiny_model_dir, small_glue, tmp_path_factory):
    """Models, data folders and runs the cases point at (built once)."""
    from tests.test_distill import interrupt_at, _raise_interrupt
    from spd.cli import main

    base = tmp_path_factory.mktemp("catalogue")
    p = {"model": tiny_model_dir, "glue": small_glue,
         "glue_broken_json": broken_copy(small_glue, base / "g1",
                                         lambda t: t + '{"sentence1": "a", "sentence2": \n'),
         "glue_bad_label": broken_copy(small_glue, base / "g2", _relabel),
         "glue_no_field": broken_copy(small_glue, base / "g3", _drop_field),
         "glue_empty": broken_copy(small_glue, base / "g4", lambda t: "\n"),
         "glue_bad_gz": gz_copy(small_glue, base / "g5", damage=True),
         "glue_surrogate": broken_copy(small_glue, base / "g6", _surrogate),
         "glue_latin1": latin1_copy(small_glue, base / "g7"),
         "distilbert": tiny_bert(base / "distilbert", kind="distilbert"),
         "other_arch_model": tiny_bert(base / "hidden64", hidden=64),
         "regression_model": regression_head(tiny_model_dir, base / "regression")}
    teacher = base / "teacher"
    assert main(["finetune", "--task", "rte", "--model", str(tiny_model_dir), "--data-dir",
                 str(small_glue), "--output", str(teacher), "--set", "optim.max_steps=4",
                 "--set", "data.max_length=64"]) == 0
    p["teacher"] = teacher
    p["mrpc_teacher"] = base / "mrpc-teacher"  # the RTE teacher's folder, recording MRPC
    shutil.copytree(teacher, p["mrpc_teacher"])
    config = json.loads((p["mrpc_teacher"] / "config.json").read_text())
    (p["mrpc_teacher"] / "config.json").write_text(json.dumps({**config, "task": "mrpc"}))
    with pytest.MonkeyPatch.context() as mp:  # an SPD run stopped after its checkpoint at 12
        interrupt_at(mp, 13, _raise_interrupt)
        for name in ("interrupted", "other_arch"):
            run = base / name
            assert main([fill(a, p, base, run) for a in PRUNE]) == 130
            p[f"{name}_run"] = run
        seed7 = base / "seed7"  # the same run with another seed: another configuration
        assert main([fill(a, p, base, seed7) for a in PRUNE + ["--set", "seed=7"]]) == 130
        p["seed7_run"] = seed7
    finished = base / "finished"
    assert main([fill(a, p, base, finished) for a in PRUNE]) == 0
    p["finished_run"] = finished
    return p


def fill(arg: str, places: dict, tmp: Path, out: Path) -> str:
    return arg.format(tmp=tmp, out=out, **{k: v for k, v in places.items()})


def prepare(state: str | None, places: dict, tmp: Path) -> Path:
    """The output folder of a case, in the state the case starts from."""
    out = tmp / "out"
    if state in ("interrupted", "damaged", "other_arch"):
        shutil.copytree(places[f"{'other_arch' if state == 'other_arch' else 'interrupted'}_run"],
                        out)
    if state == "damaged":
        ckpt = out / "checkpoint.pt"
        data = bytearray(ckpt.read_bytes())
        data[len(data) // 2] ^= 0xFF
        ckpt.write_bytes(bytes(data))
    if state == "foreign_checkpoint":  # the interrupted run, its checkpoint from another config
        shutil.copytree(places["interrupted_run"], out)
        shutil.copy(places["seed7_run"] / "checkpoint.pt", out / "checkpoint.pt")
    if state == "bare_run":  # a finished SPD run's final.json alone
        out.mkdir()
        shutil.copy(places["finished_run"] / "final.json", out / "final.json")
    if state == "foreign":  # the issue's example: a folder that is not a run, holding a file
        (out / "model").mkdir(parents=True)
        (out / "model" / "important.txt").write_text("x\n")
    if state == "theory_other_arch":
        shutil.copytree(places["finished_run"], out)
        final = json.loads((out / "final.json").read_text())
        (out / "final.json").write_text(json.dumps({**final,
                                                    "teacher": str(places["other_arch_model"])}))
    return out


def snapshot(folder: Path) -> dict | None:
    """Every file under `folder` with its SHA-256, or None when the folder does not exist."""
    if not folder.exists():
        return None
    return {str(f.relative_to(folder)): hashlib.sha256(f.read_bytes()).hexdigest()
            for f in sorted(folder.rglob("*")) if f.is_file()}


def run_case(name: str, places: dict, tmp: Path) -> tuple[int, str, dict | None, dict | None]:
    argv, state, _ = CATALOGUE[name]
    (tmp / "afile").write_text("")
    (tmp / "empty").mkdir(exist_ok=True)
    out = prepare(state, places, tmp)
    if state == "other_arch":  # the teacher the run started from now holds another model
        teacher = tmp / "swapped-teacher"
        shutil.copytree(places["other_arch_model"], teacher / "model")
        argv = replace(argv, "--teacher", str(teacher))
        config = json.loads((out / "config.json").read_text())
        (out / "config.json").write_text(json.dumps({**config, "teacher": str(teacher)}))
    before = snapshot(out)
    args = [fill(a, places, tmp, out) for a in argv]
    program = {"@ablations": ["-m", "ablations.run"], "@tables": ["-m", "ablations.tables"]}.get(
        args[0], ["-m", "spd", args[0]])
    proc = subprocess.run([sys.executable, *program, *args[1:]], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    return proc.returncode, proc.stderr, before, snapshot(out)


@pytest.mark.parametrize("name", list(CATALOGUE))
def test_bad_input_is_one_line_exit_2_and_changes_nothing(name, places, tmp_path):
    code, stderr, before, after = run_case(name, places, tmp_path)
    assert code == 2, stderr[-3000:]
    assert "Traceback" not in stderr
    lines = [x for x in stderr.splitlines() if x.strip()]
    assert len(lines) == 1, stderr
    assert CATALOGUE[name][2] in lines[0], lines[0]
    print(f"\nCATALOGUE {name}: {lines[0]}")
    assert after == before  # no partial output, nothing lost


def test_the_catalogue_is_at_least_25_cases_and_covers_the_issue_list():
    assert len(CATALOGUE) >= 25
