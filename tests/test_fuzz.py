"""Fuzzing: the config parser and the data loader, fed arbitrary strings, bytes and JSON values,
either accept the input or raise spd's own one-line error, never anything else."""
import json

from hypothesis import HealthCheck, given, settings, strategies as st

from spd import data
from spd.config import FinetuneConfig
from spd.distil_config import SPDConfig
from spd.presets import finetune_config, spd_config
from spd.overrides import apply_overrides, from_dict, to_dict
from spd.errors import SpdError
from spd.tasks import get_task

JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
                    lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.text(max_size=12), inner, max_size=4), max_leaves=12)
KEYS = st.sampled_from(["seed", "optim.lr", "data.max_length", "prune.sparsity", "prune.pattern",
                        "stages.unit", "stages.prune", "replace.p_0", "optim.lr_restart", "data",
                        "loss.temperature", "checkpoint_every", "nope", "prune.sparsity.x", ""])


def one_line_error(call) -> None:
    """`call()` succeeds or raises SpdError with a one-line message; nothing else."""
    try:
        call()
    except SpdError as e:
        assert "\n" not in str(e) and str(e)


@given(st.lists(st.text(max_size=40), max_size=4))
def test_any_override_strings_are_parsed_or_refused_cleanly(overrides):
    one_line_error(lambda: apply_overrides(SPDConfig(teacher="t"), overrides))


@given(st.lists(st.tuples(KEYS, st.text(max_size=20)), max_size=4))
def test_known_keys_with_any_value_are_parsed_or_refused_cleanly(pairs):
    overrides = [f"{k}={v}" for k, v in pairs]
    one_line_error(lambda: spd_config("mrpc", "t", "cpu", overrides))
    one_line_error(lambda: finetune_config("rte", None, "smoke", overrides))


@given(st.text(max_size=20), st.text(max_size=20), st.text(max_size=20))
def test_any_task_model_and_preset_names_are_refused_cleanly(task, model, preset):
    one_line_error(lambda: finetune_config(task, model, preset))
    one_line_error(lambda: spd_config(task, model, preset))


@given(JSON)
def test_any_json_value_as_a_saved_config_is_read_or_refused_cleanly(value):
    for cls in (SPDConfig, FinetuneConfig):
        one_line_error(lambda: from_dict(value, cls))


@given(st.dictionaries(st.sampled_from(["seed", "eval_every", "task", "data", "optim", "prune"]),
                       JSON, max_size=3))
def test_saved_configs_with_any_field_values_are_read_or_refused_cleanly(fields):
    base = to_dict(SPDConfig(teacher="t"))
    one_line_error(lambda: from_dict({**base, **fields}, SPDConfig))


def _load(tmp_path, content: bytes, task="mrpc"):
    path = tmp_path / task / "train.jsonl"
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(content)
    return data.load_split(get_task(task), "train", tmp_path)


FUZZ = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(st.binary(max_size=200))
def test_any_bytes_as_a_data_file_are_loaded_or_refused_cleanly(tmp_path, content):
    one_line_error(lambda: _load(tmp_path, content))


@FUZZ
@given(st.lists(JSON, min_size=1, max_size=4), st.sampled_from(["mrpc", "stsb", "cola"]))
def test_any_json_rows_are_loaded_or_refused_cleanly(tmp_path, rows, task):
    content = "".join(json.dumps(r) + "\n" for r in rows).encode()
    one_line_error(lambda: _load(tmp_path, content, task))


@FUZZ
@given(st.fixed_dictionaries({"sentence1": JSON, "sentence2": JSON, "label": JSON}))
def test_rows_with_the_right_fields_and_any_values_are_loaded_or_refused_cleanly(tmp_path, row):
    for task in ("mrpc", "stsb"):
        one_line_error(lambda: _load(tmp_path, (json.dumps(row) + "\n").encode(), task))


FLAGS = st.sampled_from(["--task", "--model", "--teacher", "--sparsity", "--output", "--preset",
                         "--set", "--teacher-set", "--data-dir", "--device", "--resume",
                         "--overwrite", "--batch-size", "--max-length", "--examples", "--write",
                         "--epoch-steps", "--length", "--repeats", "--seeds"])
ODD = st.sampled_from(["", " ", "-1", "0", "1e309", "nan", "mrpc", "rte", "0.9", "x=y",
                       "task=mrpc", "prune.sparsity=2", "model=", "--", "\u00e9", "a/b/c",
                       "./nowhere", "smoke", "cuda"]) | st.text(max_size=8)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None,
          max_examples=40)  # each draw is a whole command: kept small for the suite's time
@given(command=st.sampled_from(["finetune", "prune", "run", "evaluate", "report", "bench",
                                 "theory", ""]),
       pairs=st.lists(st.tuples(FLAGS, ODD), max_size=5))
def test_the_command_line_fails_in_one_line_whatever_it_is_given(command, pairs, tmp_path,
                                                                 capsys, monkeypatch):
    """argv lists of the real command line from its flags and odd values: exit 0, 2, 130 or
    143, at most one error line, no traceback. No draw can start real work: the data comes
    from the hub, which is offline here, and bench always gets a model that does not exist;
    the command runs in an empty folder."""
    from spd.cli import main

    monkeypatch.delenv("SPD_DATA_DIR", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    argv = [command] if command else []
    for flag, value in pairs:
        argv += [flag, value]
    if command == "bench":
        argv += ["--model", "./nowhere"]
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's own exits (--help, usage errors)
        code = e.code
    err = capsys.readouterr().err
    assert code in (0, 2, 130, 143), (argv, code, err[-500:])
    assert "Traceback" not in err, (argv, err[-2000:])
    errors = [line for line in err.splitlines() if "error" in line.lower()]
    assert len(errors) <= 1, (argv, err[-2000:])
