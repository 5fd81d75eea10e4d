"""Configuration: frozen, validated on construction, overridable with typed --set keys."""
import dataclasses

import pytest
from hypothesis import given, strategies as st

from spd.config import FinetuneConfig, apply_overrides, config_hash, from_dict, to_dict
from spd.errors import SpdError


def test_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        FinetuneConfig().seed = 1


def test_overrides_are_typed_and_nested():
    cfg = apply_overrides(FinetuneConfig(), ["optim.lr=1e-4", "seed=7", "data.max_length=64",
                                             "task=rte"])
    assert cfg.optim.lr == 1e-4 and cfg.seed == 7 and cfg.data.max_length == 64
    assert cfg.task == "rte"


@pytest.mark.parametrize("override,expect", [
    ("optim.lrr=1", "unknown --set key: got 'optim.lrr'"),
    ("nothing=1", "unknown --set key: got 'nothing'"),
    ("optim=1", "'optim' is a section"),
    ("seed=abc", "seed"),
    ("optim.lr=-0.1", "optim.lr"),
    ("optim.lr=nan", "optim.lr"),
    ("data.max_length=0", "data.max_length"),
    ("optim.epochs=0", "optim.epochs"),
    ("optim.warmup_ratio=1.5", "optim.warmup_ratio"),
    ("task=mnlii", "unknown task"),
    ("noequals", "key=value"),
])
def test_bad_overrides_are_one_line_errors(override, expect):
    with pytest.raises(SpdError) as err:
        apply_overrides(FinetuneConfig(), [override])
    assert expect in str(err.value) and "\n" not in str(err.value)


def test_round_trip_and_hash():
    cfg = apply_overrides(FinetuneConfig(), ["optim.lr=2e-5"])
    assert from_dict(to_dict(cfg), FinetuneConfig) == cfg
    assert config_hash(cfg) == config_hash(from_dict(to_dict(cfg), FinetuneConfig))
    assert config_hash(cfg) != config_hash(FinetuneConfig())


@given(st.floats(allow_nan=True, allow_infinity=True), st.integers(-5, 10 ** 6))
def test_any_number_is_accepted_or_refused_cleanly(lr, steps):
    try:
        cfg = apply_overrides(FinetuneConfig(), [f"optim.lr={lr}", f"optim.max_steps={steps}"])
    except SpdError:
        return
    assert cfg.optim.lr > 0 and cfg.optim.max_steps >= 0
