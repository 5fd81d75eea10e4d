"""Perturbed inputs for distillation (`spd.augment`): what changes, what never does, and that
the draws are a function of (seed, step) alone."""
import pytest
import torch
from hypothesis import given, strategies as st

from spd.augment import Noise, swap_segments, unigram
from spd.presets import spd_config
from spd.errors import SpdError
from spd.tasks import get_task

CLS, SEP, PAD = 101, 102, 0
SPECIAL = (PAD, CLS, SEP, 100, 103)


def pair(a: list[int], b: list[int]) -> dict:
    return {"input_ids": [CLS, *a, SEP, *b, SEP],
            "token_type_ids": [0] * (len(a) + 2) + [1] * (len(b) + 1), "label": 1}


def batch_of(examples: list[dict]) -> dict:
    from spd.data import collate

    return collate(examples, PAD)


EXAMPLES = [pair([1000 + i, 2000 + i, 3000], [4000 + i, 5000]) for i in range(6)] + [
    pair([7000], [7001, 7002, 7003, 7004])]


def noise(task="mrpc", rate=1.0, tokens=0.15, swap=True, seed=0):
    return Noise(EXAMPLES, SPECIAL, 30522, get_task(task), rate, tokens, swap, seed)


def test_unigram_counts_real_tokens_and_never_draws_a_special_one():
    probs = unigram(EXAMPLES, SPECIAL, 30522)
    assert probs.sum().item() == pytest.approx(1.0)
    assert all(probs[i] == 0 for i in SPECIAL)
    assert probs[3000] == pytest.approx(6 / sum(len(e["input_ids"]) - 3 for e in EXAMPLES))


def test_rate_zero_is_the_identity():
    batch = batch_of(EXAMPLES)
    out = noise(rate=0.0)(batch, step=3)
    assert all(torch.equal(out[k], batch[k]) for k in batch)


@given(step=st.integers(0, 10_000), tokens=st.floats(0, 1))
def test_specials_padding_lengths_and_labels_never_change(step, tokens):
    batch = batch_of(EXAMPLES)
    out = noise(tokens=tokens, swap=False)(batch, step)
    assert torch.equal(out["attention_mask"], batch["attention_mask"])
    assert torch.equal(out["labels"], batch["labels"])
    special = torch.isin(batch["input_ids"], torch.tensor(SPECIAL))
    assert torch.equal(torch.isin(out["input_ids"], torch.tensor(SPECIAL)), special)
    assert torch.equal(out["input_ids"][special], batch["input_ids"][special])
    # every token is a token of the training set (replacements come from its unigram)
    seen = {t for e in EXAMPLES for t in e["input_ids"]}
    assert set(out["input_ids"].flatten().tolist()) <= seen
    swapped = noise(tokens=tokens)(batch, step)
    assert torch.equal(swapped["attention_mask"], batch["attention_mask"])
    assert torch.equal(torch.isin(swapped["input_ids"], torch.tensor(SPECIAL)).sum(1),
                       special.sum(1))


def test_every_token_is_redrawn_at_tokens_one_and_none_at_zero():
    batch = batch_of(EXAMPLES)
    real = batch["attention_mask"].bool() & ~torch.isin(batch["input_ids"], torch.tensor(SPECIAL))
    kept = noise(tokens=0.0, swap=False)(batch, 5)
    assert torch.equal(kept["input_ids"], batch["input_ids"])
    redrawn = noise(tokens=1.0, swap=False)(batch, 5)["input_ids"]
    # the draws are from the unigram, so some equal the token they replace; most do not
    assert (redrawn[real] != batch["input_ids"][real]).float().mean() > 0.5


def test_swap_exchanges_the_two_sentences_with_their_token_types():
    e = pair([11, 12, 13], [21, 22])
    swapped = swap_segments(batch_of([e]), 0)
    assert swapped["input_ids"][0].tolist() == [CLS, 21, 22, SEP, 11, 12, 13, SEP]
    assert swapped["token_type_ids"][0].tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    padded = batch_of([e, pair([31], [41, 42, 43, 44, 45])])
    swap_segments(padded, 0)
    assert padded["input_ids"][0].tolist() == [CLS, 21, 22, SEP, 11, 12, 13, SEP, PAD]
    assert padded["token_type_ids"][0].tolist() == [0, 0, 0, 0, 1, 1, 1, 1, 0]


def test_symmetric_pair_tasks_swap_about_half_and_others_never():
    batch = batch_of(EXAMPLES * 20)
    out = noise("mrpc", tokens=0.0)(batch, 1)
    swapped = (out["input_ids"] != batch["input_ids"]).any(1).float().mean().item()
    assert 0.3 < swapped < 0.7
    assert get_task("stsb").symmetric and not get_task("rte").symmetric
    rte = noise("rte", tokens=0.0)(batch, 1)
    assert torch.equal(rte["input_ids"], batch["input_ids"])


def test_the_draws_depend_on_seed_and_step_only():
    batch = batch_of(EXAMPLES * 5)
    a, b = noise()(batch, 7), noise()(batch, 7)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(noise()(batch, 8)["input_ids"], a["input_ids"])
    assert not torch.equal(noise(seed=1)(batch, 7)["input_ids"], a["input_ids"])
    assert torch.equal(batch["input_ids"], batch_of(EXAMPLES * 5)["input_ids"])  # not in place


@pytest.mark.parametrize("task, overrides, named", [
    ("mrpc", ["augment.rate=0.5", "loss.hard=1"], "loss.hard"),
    ("stsb", ["augment.rate=0.5"], "loss.regression_target"),
    ("mrpc", ["augment.rate=1.5"], "augment.rate"),
    ("mrpc", ["augment.tokens=-0.1"], "augment.tokens"),
])
def test_settings_that_need_gold_labels_are_refused_in_one_line(task, overrides, named):
    with pytest.raises(SpdError) as e:
        spd_config(task, "teacher", "cpu2", overrides)
    assert named in str(e.value) and "\n" not in str(e.value)


def test_an_augmented_stsb_run_distils_the_teachers_score():
    cfg = spd_config("stsb", "teacher", "cpu2",
                     ["augment.rate=0.5", "loss.regression_target=teacher"])
    assert cfg.augment.rate == 0.5
