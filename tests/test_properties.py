"""Properties of the machinery around masks and schedules: parametrizations, stage plans,
layer draws at the extremes, batching and configuration round trips (Hypothesis)."""
import json

import pytest
import torch
from hypothesis import example, given
from hypothesis import strategies as st

from spd import data, pruning
from spd.distil_config import SPDConfig
from spd.presets import SPD_PRESETS, spd_config
from spd.overrides import config_hash, from_dict, to_dict
from spd.schedules import make_plan
from spd.errors import SpdError
from spd.grafting import draw_layers
from spd.masks import kept_count
from tests.strategies import sparsities


def _stack(widths: list[int], seed: int) -> torch.nn.Sequential:
    torch.manual_seed(seed)
    layers = []
    for a, b in zip(widths, widths[1:]):
        layers += [torch.nn.Linear(a, b), torch.nn.Tanh()]
    return torch.nn.Sequential(*layers).double()


def _linears(model) -> dict:
    return {str(i): m for i, m in enumerate(model) if isinstance(m, torch.nn.Linear)}


stacks = st.lists(st.integers(1, 7), min_size=2, max_size=4)


@given(stacks, sparsities, st.sampled_from(["per_matrix", "global"]),
       st.sampled_from(["sgd", "adamw"]), st.floats(1e-4, 1.0), st.integers(1, 4),
       st.integers(0, 2 ** 16))
@example([1, 1], 0.0, "per_matrix", "adamw", 0.1, 1, 0)  # one-element matrix, nothing pruned
@example([1, 1], 1 - 1e-9, "per_matrix", "adamw", 0.1, 1, 0)  # just below 1: all pruned
@example([3, 5, 2], 0.5, "global", "sgd", 1.0, 4, 1)
def test_parametrized_masks_read_zero_through_training_and_bake_exactly(
        widths, s, scope, opt_name, lr, steps, seed):
    model = _stack(widths, seed)
    linears = _linears(model)
    pruning.attach_masks(linears)
    pruning.prune_to(linears, s, scope=scope)
    masks = {k: pruning.mask_of(lin).clone() for k, lin in linears.items()}
    for k, lin in linears.items():  # binary, same shape, dtype and device as the weight
        assert masks[k].shape == lin.weight.shape and masks[k].device == lin.weight.device
        assert set(masks[k].unique().tolist()) <= {0.0, 1.0}
    n = sum(m.numel() for m in masks.values())
    kept = sum(int(m.sum()) for m in masks.values())
    if scope == "global":
        assert kept == kept_count(n, s)
    else:
        assert all(int(m.sum()) == kept_count(m.numel(), s) for m in masks.values())
    opt = (torch.optim.SGD(model.parameters(), lr=lr) if opt_name == "sgd"
           else torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.1))
    x = torch.randn(5, widths[0], dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    for _ in range(steps):
        model(x).pow(2).sum().backward()
        opt.step()
        opt.zero_grad()
        for k, lin in linears.items():  # the forward pass sees exact zeros where pruned
            assert bool((lin.weight[masks[k] == 0] == 0).all())
    before = model(x)
    pruning.bake(linears)
    assert not any(torch.nn.utils.parametrize.is_parametrized(m) for m in linears.values())
    torch.testing.assert_close(model(x), before, rtol=0, atol=0)
    for k, lin in linears.items():
        assert bool((lin.weight[masks[k] == 0] == 0).all())


@given(stacks, sparsities, sparsities, st.integers(0, 2 ** 16))
@example([2, 2], 0.0, 0.5, 0)
def test_state_dict_round_trip_keeps_masks_and_outputs(widths, s1, s2, seed):
    model = _stack(widths, seed)
    linears = _linears(model)
    pruning.attach_masks(linears)
    pruning.prune_to(linears, min(s1, s2))
    pruning.prune_to(linears, max(s1, s2))
    fresh = _stack(widths, seed + 1)
    pruning.attach_masks(_linears(fresh))
    fresh.load_state_dict(model.state_dict())
    x = torch.randn(3, widths[0], dtype=torch.float64)
    torch.testing.assert_close(fresh(x), model(x), rtol=0, atol=0)
    for k, lin in _linears(fresh).items():
        assert torch.equal(pruning.mask_of(lin), pruning.mask_of(linears[k]))


@given(st.sampled_from(["epochs", "steps"]), st.floats(0, 5), st.floats(0, 5), st.floats(0, 5),
       st.integers(1, 400), st.integers(0, 30))
@example("epochs", 1.5, 0.75, 0.75, 1, 10)  # one step per epoch
@example("steps", 1, 0, 0, 1, 0)  # a single step, no mask updates
@example("steps", 12, 8, 0, 5, 3)  # an empty final stage
def test_stage_plan_is_consistent_for_any_lengths(unit, prune, graft, final, per_epoch, updates):
    overrides = [f"stages.unit={unit}", f"stages.prune={prune}", f"stages.graft={graft}",
                 f"stages.finetune={final}", f"prune.updates={updates}"]
    try:
        cfg = spd_config("mrpc", "t", "cpu", overrides)
        plan = make_plan(cfg, per_epoch)
    except SpdError as e:  # lengths that round to no step at all are refused, in one line
        assert "\n" not in str(e)
        return
    a, b, total = plan.stage_ends
    assert 0 <= a <= b <= total == plan.total >= 1
    scale = per_epoch if unit == "epochs" else 1
    assert a == round(prune * scale)
    assert b - a == round(graft * scale) and total - b == round(final * scale)
    assert plan.interval >= 1
    if updates and a >= updates + 1:  # the cubic window ends inside the prune stage
        assert plan.window == plan.interval * updates <= a


@given(st.integers(0, 2 ** 32 - 1), st.integers(0, 10 ** 7), st.integers(1, 24))
def test_p_0_draws_all_teacher_layers_and_p_1_all_student_layers(seed, step, n_layers):
    assert not draw_layers(seed, step, 0.0, n_layers).any()
    assert draw_layers(seed, step, 1.0, n_layers).all()


@given(st.lists(st.integers(1, 20), min_size=1, max_size=8), st.integers(0, 5))
def test_collate_pads_random_lengths_and_masks_match(lengths, pad_id):
    examples = [{"input_ids": list(range(100, 100 + k)), "token_type_ids": [1] * k, "label": i % 2}
                for i, k in enumerate(lengths)]
    batch = data.collate(examples, pad_id)
    assert batch["input_ids"].shape == (len(lengths), max(lengths))
    assert batch["attention_mask"].sum(1).tolist() == lengths
    for i, k in enumerate(lengths):
        assert batch["input_ids"][i, :k].tolist() == examples[i]["input_ids"]
        assert bool((batch["input_ids"][i, k:] == pad_id).all())
        assert bool((batch["token_type_ids"][i, k:] == 0).all())
    assert batch["labels"].tolist() == [i % 2 for i in range(len(lengths))]


@given(st.sampled_from(sorted(SPD_PRESETS)), st.floats(0, 0.999), st.floats(1e-6, 1e-2),
       st.integers(0, 2 ** 32 - 1), st.sampled_from(["constant", "linear", "three_stage"]))
def test_any_valid_spd_config_survives_the_json_round_trip(preset, s, lr, seed, schedule):
    cfg = spd_config("rte", "teacher", preset, [f"prune.sparsity={s}", f"optim.lr={lr}",
                                                f"seed={seed}", f"replace.schedule={schedule}"])
    back = from_dict(json.loads(json.dumps(to_dict(cfg))), SPDConfig)
    assert back == cfg and config_hash(back) == config_hash(cfg)


@pytest.mark.parametrize("key", ["prune.sparsity", "replace.p_0", "optim.lr", "seed",
                                 "stages.prune", "loss.temperature", "log_every"])
@pytest.mark.parametrize("value", ["-1", "nan", "x"])
def test_invalid_values_are_refused_naming_the_field(key, value):
    with pytest.raises(SpdError) as e:
        spd_config("rte", "teacher", "cpu", [f"{key}={value}"])
    assert key in str(e.value) and value in str(e.value) and "\n" not in str(e.value)
