"""One frozen dataclass tree per experiment, validated on construction.

Overrides come as `--set section.field=value` strings; the value is parsed with the field's
type, unknown keys are errors, and every refusal names the field, the bad value and what is
allowed.
"""
import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field

from spd.errors import bad_value
from spd.models import DEFAULT_MODEL
from spd.tasks import get_task


def _check(name: str, value, ok: bool, allowed: str) -> None:
    if not ok:
        raise bad_value(name, value, allowed)


def _positive(name, value):
    _check(name, value, math.isfinite(value) and value > 0, "a finite number > 0")


def _nonneg(name, value):
    _check(name, value, math.isfinite(value) and value >= 0, "a finite number >= 0")


@dataclass(frozen=True)
class DataConfig:
    """Tokenisation and batching.

    Attributes:
        max_length: truncate each example (pair) to this many tokens; batches are padded only
            to their own longest example.
        batch_size: training batch size.
        eval_batch_size: batch size for evaluation.
        train_eval_size: examples in the fixed train subset evaluated beside dev (the train/dev
            gap is the overfitting signal); 0 turns it off.
    """

    max_length: int = 128
    batch_size: int = 32
    eval_batch_size: int = 128
    train_eval_size: int = 1000

    def __post_init__(self):
        _check("data.max_length", self.max_length, self.max_length >= 8, "an integer >= 8")
        _check("data.batch_size", self.batch_size, self.batch_size >= 1, "an integer >= 1")
        _check("data.eval_batch_size", self.eval_batch_size, self.eval_batch_size >= 1,
               "an integer >= 1")
        _check("data.train_eval_size", self.train_eval_size, self.train_eval_size >= 0,
               "an integer >= 0")


@dataclass(frozen=True)
class OptimConfig:
    """AdamW with linear warm-up and linear decay, gradient clipping.

    Attributes:
        lr: peak learning rate.
        weight_decay: AdamW weight decay (not applied to biases and LayerNorm weights).
        warmup_ratio: fraction of the steps spent warming up linearly from 0.
        grad_clip: maximum global gradient norm; 0 turns clipping off.
        epochs: passes over the training set.
        max_steps: stop after this many steps if > 0 (caps long tasks such as SST-2).
    """

    lr: float = 5e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    grad_clip: float = 1.0
    epochs: int = 4
    max_steps: int = 0

    def __post_init__(self):
        _positive("optim.lr", self.lr)
        _nonneg("optim.weight_decay", self.weight_decay)
        _check("optim.warmup_ratio", self.warmup_ratio,
               math.isfinite(self.warmup_ratio) and 0 <= self.warmup_ratio < 1, "a number in [0, 1)")
        _nonneg("optim.grad_clip", self.grad_clip)
        _check("optim.epochs", self.epochs, self.epochs >= 1, "an integer >= 1")
        _check("optim.max_steps", self.max_steps, self.max_steps >= 0, "an integer >= 0 (0: no cap)")


@dataclass(frozen=True)
class FinetuneConfig:
    """Dense fine-tuning of a teacher.

    Attributes:
        task: GLUE task name.
        model: `minilm` (the packaged all-MiniLM-L6-v2), a hub id or a local folder.
        seed: seeds data order, dropout and the classifier head's initialisation.
        eval_every: evaluate dev and the train subset every this many steps; 0 means once per
            epoch. The last step is always evaluated.
    """

    task: str = "mrpc"
    model: str = DEFAULT_MODEL
    seed: int = 42
    eval_every: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)

    def __post_init__(self):
        get_task(self.task)
        _check("model", self.model, bool(self.model), "a non-empty hub id or folder")
        _check("seed", self.seed, 0 <= self.seed < 2 ** 32, "an integer in [0, 2**32)")
        _check("eval_every", self.eval_every, self.eval_every >= 0, "an integer >= 0")


def to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


def from_dict(d: dict, cls):
    """Rebuild a config of class `cls` from `to_dict` output (validated again)."""
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in d:
            v = d[f.name]
            kwargs[f.name] = from_dict(v, f.type) if dataclasses.is_dataclass(f.type) else v
    return cls(**kwargs)


def config_hash(cfg) -> str:
    """A short stable hash of the resolved configuration."""
    text = json.dumps(to_dict(cfg), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _parse(key: str, text: str, typ):
    try:
        if typ is bool:
            if text.lower() not in ("true", "false", "1", "0"):
                raise ValueError
            return text.lower() in ("true", "1")
        if typ is int:
            return int(text)
        if typ is float:
            return float(text)
        return text
    except ValueError:
        raise bad_value(key, text, f"a value of type {typ.__name__}") from None


def _leaf_keys(cls, prefix="") -> list[str]:
    keys = []
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(f.type):
            keys += _leaf_keys(f.type, f"{prefix}{f.name}.")
        else:
            keys.append(prefix + f.name)
    return keys


def _set(cfg, path: list[str], value: str, key: str):
    fields = {f.name: f for f in dataclasses.fields(cfg)}
    f = fields.get(path[0])
    if f is None:
        raise bad_value("unknown --set key", key, ", ".join(_leaf_keys(type(cfg))))
    nested = dataclasses.is_dataclass(f.type)
    if nested and len(path) == 1:
        raise bad_value(f"--set key {key!r} is a section, not a field", key,
                        ", ".join(_leaf_keys(f.type, f"{key}.")))
    if not nested and len(path) > 1:
        raise bad_value("unknown --set key", key, ", ".join(_leaf_keys(type(cfg))))
    if nested:
        return dataclasses.replace(cfg, **{f.name: _set(getattr(cfg, f.name), path[1:], value, key)})
    return dataclasses.replace(cfg, **{f.name: _parse(key, value, f.type)})


def apply_overrides(cfg, overrides: list[str]):
    """Apply `key=value` strings (dotted keys for nested sections) to a frozen config."""
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise bad_value("--set expects key=value", item, "e.g. optim.lr=3e-5")
        cfg = _set(cfg, key.strip().split("."), value.strip(), key.strip())
    return cfg
