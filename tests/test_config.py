"""Configuration: frozen, validated on construction, overridable with typed --set keys."""
import dataclasses

import pytest
from hypothesis import given, strategies as st

from spd.config import FinetuneConfig
from spd.overrides import apply_overrides, config_hash, from_dict, to_dict
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


from spd.distil_config import SPDConfig  # noqa: E402
from spd.presets import SPD_PRESETS, spd_config  # noqa: E402


@pytest.mark.parametrize("preset", sorted(SPD_PRESETS))
def test_every_preset_builds_a_valid_config(preset):
    cfg = spd_config("rte", "teacher-dir", preset)
    assert isinstance(cfg, SPDConfig) and cfg.task == "rte"
    assert from_dict(to_dict(cfg), SPDConfig) == cfg


def test_user_overrides_win_over_the_preset():
    cfg = spd_config("mrpc", "t", "official", ["optim.lr=1e-3"])
    assert cfg.optim.lr == 1e-3 and cfg.stages.prune == 30


def test_official_readme_preset_is_a_constant_0_8_in_practice():
    cfg = spd_config("mrpc", "t", "official_readme")
    assert (cfg.replace.schedule, cfg.replace.p_0, cfg.replace.slope) == ("linear", 0.8, 0.0)


@pytest.mark.parametrize("override,expect", [
    ("prune.sparsity=1.0", "prune.sparsity: got 1.0"),
    ("prune.sparsity=abc", "prune.sparsity: got 'abc'"),
    ("prune.sparsity=-0.1", "prune.sparsity"),
    ("replace.schedule=cosine", "replace.schedule: got 'cosine'"),
    ("stages.unit=minutes", "stages.unit"),
    ("replace.p_0=1.5", "replace.p_0"),
    ("loss.temperature=0", "loss.temperature"),
])
def test_bad_spd_values_are_refused(override, expect):
    with pytest.raises(SpdError) as err:
        spd_config("mrpc", "t", "cpu", [override])
    assert expect in str(err.value)


def test_unknown_preset_is_refused():
    with pytest.raises(SpdError, match="--preset: got 'fast'"):
        spd_config("mrpc", "t", "fast")


def test_nm_pattern_needs_its_own_sparsity_and_per_matrix_scope():
    import pytest

    from spd.presets import spd_config
    from spd.errors import SpdError

    assert spd_config("mrpc", "t", "cpu", ["prune.pattern=2:4", "prune.sparsity=0.5"]).prune.pattern == "2:4"
    for overrides, word in ((["prune.pattern=2:4"], "0.5"),
                            (["prune.pattern=2:4", "prune.sparsity=0.5", "prune.scope=global"], "per_matrix"),
                            (["prune.pattern=4:2"], "'4:2'")):
        with pytest.raises(SpdError, match=word):
            spd_config("mrpc", "t", "cpu", overrides)


# Presets are functions of the base config made with dataclasses.replace (typed: a misspelt
# field is a TypeError where the preset is written); a grid row's `--set` list is derived from a
# config by `overrides_between`, which must reproduce it exactly.
from spd import presets  # noqa: E402
from spd.overrides import overrides_between  # noqa: E402

TASKS = ["mrpc", "stsb", "sst2", "rte"]


@pytest.mark.parametrize("name", sorted(SPD_PRESETS))
def test_spd_presets_are_replacements_of_the_base_config(name):
    base = SPDConfig(task="mrpc", teacher="t")
    made = SPD_PRESETS[name](base)
    assert isinstance(made, SPDConfig) and dataclasses.replace(made) == made
    assert spd_config("mrpc", "t", name) == apply_overrides(made, [])


@pytest.mark.parametrize("name", sorted(presets.FINETUNE_PRESETS))
def test_finetune_presets_are_replacements_of_the_base_config(name):
    made = presets.FINETUNE_PRESETS[name](FinetuneConfig(task="rte"))
    assert isinstance(made, FinetuneConfig)
    assert presets.finetune_config("rte", None, name) == apply_overrides(made, [])


@given(st.sampled_from(sorted(SPD_PRESETS)), st.sampled_from(sorted(SPD_PRESETS)),
       st.sampled_from(TASKS))
def test_overrides_between_two_configs_turn_one_into_the_other(a, b, task):
    base, other = spd_config(task, "t", a), spd_config(task, "t", b)
    overrides = overrides_between(base, other)
    assert apply_overrides(base, overrides) == other
    assert config_hash(apply_overrides(base, overrides)) == config_hash(other)
    assert (overrides == []) == (base == other)


@given(st.floats(1e-7, 1.0), st.floats(0.5, 60), st.booleans(), st.sampled_from(TASKS))
def test_a_distillation_recipe_as_overrides_is_the_recipe(lr, epochs, restart, task):
    base = spd_config(task, "t", "cpu")
    recipe = presets.distil_recipe(base, epochs=epochs, lr=lr, restart=restart)
    assert apply_overrides(base, overrides_between(base, recipe)) == apply_overrides(recipe, [])
