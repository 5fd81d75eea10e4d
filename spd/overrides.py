"""`--set key=value` overrides and config (de)serialisation, for any frozen dataclass tree.

Values are parsed with the field's type, unknown keys are errors, and every refusal names the
field, the bad value and what is allowed. `apply_overrides` parses every value first and
validates the whole config once, so fields that constrain each other can come in any order.
"""
import dataclasses
import hashlib
import json

from spd.errors import bad_value


def to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


def _typed(name: str, value, typ):
    """`value` as a field of type `typ` (an int is a float too), else a one-line error."""
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:
            pass
    elif isinstance(value, typ) and (typ is bool or not isinstance(value, bool)):
        return value
    raise bad_value(name, value, f"a value of type {typ.__name__}")


def from_dict(d: dict, cls, prefix: str = ""):
    """Rebuild a config of class `cls` from `to_dict` output (a saved config.json), checking
    every value's type and validating again. Missing fields take their defaults; unknown keys
    are ignored (a run saved by a newer spd)."""
    if not isinstance(d, dict):
        raise bad_value(f"config section {prefix or cls.__name__}", d, "a JSON object")
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in d:
            v, name = d[f.name], prefix + f.name
            kwargs[f.name] = (from_dict(v, f.type, f"{name}.") if dataclasses.is_dataclass(f.type)
                              else _typed(name, v, f.type))
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


def _set(cls, values: dict, path: list[str], value: str, key: str) -> None:
    """Parse `value` for the field `path` of `cls` into the nested dict `values`."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    f = fields.get(path[0])
    if f is None:
        raise bad_value("unknown --set key", key, ", ".join(_leaf_keys(cls)))
    nested = dataclasses.is_dataclass(f.type)
    if nested and len(path) == 1:
        raise bad_value(f"--set key {key!r} is a section, not a field", key,
                        ", ".join(_leaf_keys(f.type, f"{key}.")))
    if not nested and len(path) > 1:
        raise bad_value("unknown --set key", key, ", ".join(_leaf_keys(cls)))
    if nested:
        _set(f.type, values[f.name], path[1:], value, key)
    else:
        values[f.name] = _parse(key, value, f.type)


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {prefix + k: v})
    return out


def _text(value) -> str:
    return str(value).lower() if isinstance(value, bool) else repr(value) if isinstance(
        value, float) else str(value)


def overrides_between(base, cfg) -> list[str]:
    """The `--set` overrides that turn `base` into `cfg` (two configs of one class): one per
    field that differs, in field order, so that `apply_overrides(base, ...)` gives `cfg`."""
    old, new = _flat(to_dict(base)), _flat(to_dict(cfg))
    return [f"{k}={_text(v)}" for k, v in new.items() if v != old[k]]


def apply_overrides(cfg, overrides: list[str]):
    """Apply `key=value` strings (dotted keys for nested sections) to a frozen config.

    Every value is parsed first and the whole config validated once at the end, so fields
    that constrain each other (prune.pattern and prune.sparsity) can be set in any order.
    """
    values = to_dict(cfg)
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise bad_value("--set expects key=value", item, "e.g. optim.lr=3e-5")
        _set(type(cfg), values, key.strip().split("."), value.strip(), key.strip())
    return from_dict(values, type(cfg))
