"""Masks applied to a real (tiny, random) Hugging Face BERT through parametrizations."""
import pytest
import torch
from transformers import AutoModelForSequenceClassification

from spd import pruning
from spd.errors import SpdError
from spd.masks import kept_count, topk_mask


@pytest.fixture()
def model(tiny_model_dir):
    torch.manual_seed(0)
    return AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=2).eval()


@pytest.fixture()
def batch():
    g = torch.Generator().manual_seed(0)
    return {"input_ids": torch.randint(5, 1000, (3, 11), generator=g),
            "attention_mask": torch.ones(3, 11, dtype=torch.long)}


def test_prunable_set_is_the_six_linears_of_every_layer(model):
    linears = pruning.prunable_linears(pruning.encoder_layers(model))
    assert len(linears) == 6 * model.config.num_hidden_layers
    assert all(isinstance(m, torch.nn.Linear) for m in linears.values())
    assert "0.attention.self.query" in linears and "1.output.dense" in linears


def test_all_ones_masks_leave_outputs_unchanged(model, batch):
    before = model(**batch).logits
    pruning.attach_masks(pruning.prunable_linears(pruning.encoder_layers(model)))
    # Bitwise: multiplying by a mask of ones is exact.
    torch.testing.assert_close(model(**batch).logits, before, rtol=0, atol=0)


@pytest.mark.parametrize("scope", ["per_matrix", "global"])
def test_pruned_weights_read_zero_and_stay_zero_after_optimizer_steps(model, batch, scope):
    linears = pruning.prunable_linears(pruning.encoder_layers(model))
    pruning.attach_masks(linears)
    pruning.prune_to(linears, 0.7, scope=scope)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    model.train()
    for _ in range(3):
        model(**batch, labels=torch.tensor([0, 1, 1])).loss.backward()
        opt.step()
        opt.zero_grad()
    for name, lin in linears.items():
        mask = pruning.mask_of(lin)
        assert bool((lin.weight[~mask] == 0).all()), name
    total = sum(lin.weight.numel() for lin in linears.values())
    kept = sum(int(pruning.mask_of(lin).sum()) for lin in linears.values())
    if scope == "global":
        assert kept == kept_count(total, 0.7)
    else:  # every matrix within one weight of the target
        table = pruning.sparsity_table(linears)
        assert all(abs(table[k] - 0.7) <= 1 / linears[k].weight.numel() for k in linears)


def test_masks_are_monotone_across_updates(model):
    linears = pruning.prunable_linears(pruning.encoder_layers(model))
    pruning.attach_masks(linears)
    pruning.prune_to(linears, 0.5)
    first = {k: pruning.mask_of(m).clone() for k, m in linears.items()}
    with torch.no_grad():  # pruned weights grow large underneath the mask
        for lin in linears.values():
            lin.parametrizations.weight.original.add_(10.0)
    pruning.prune_to(linears, 0.8)
    assert all(bool((pruning.mask_of(m) <= first[k]).all()) for k, m in linears.items())


def test_random_criterion_is_seeded_and_exact(model):
    linears = pruning.prunable_linears(pruning.encoder_layers(model))
    pruning.attach_masks(linears)
    pruning.prune_to(linears, 0.6, criterion="random", seed=3)
    masks = {k: pruning.mask_of(m).clone() for k, m in linears.items()}
    assert all(int(m.sum()) == kept_count(m.numel(), 0.6) for m in masks.values())
    pruning.prune_to(linears, 0.6, criterion="random", seed=3)  # same seed: same masks
    assert all(torch.equal(pruning.mask_of(m), masks[k]) for k, m in linears.items())
    # A random floor, not magnitude pruning in disguise.
    by_magnitude = {k: topk_mask(m.parametrizations.weight.original.abs(), 0.6)
                    for k, m in linears.items()}
    assert all(not torch.equal(masks[k], by_magnitude[k]) for k in linears)


def test_baking_leaves_a_plain_model_with_the_same_outputs(model, batch, tmp_path):
    linears = pruning.prunable_linears(pruning.encoder_layers(model))
    pruning.attach_masks(linears)
    pruning.prune_to(linears, 0.9)
    masked = model(**batch).logits
    state_keys = set(model.state_dict())
    pruning.bake(linears)
    assert not any("parametrizations" in k for k in model.state_dict())
    assert any("parametrizations" in k for k in state_keys)
    torch.testing.assert_close(model(**batch).logits, masked, rtol=0, atol=0)
    model.save_pretrained(tmp_path)
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    torch.testing.assert_close(reloaded(**batch).logits, masked, rtol=0, atol=0)
    assert pruning.overall_sparsity(pruning.prunable_linears(pruning.encoder_layers(reloaded))) \
        == pytest.approx(0.9, abs=1e-3)


def test_a_model_without_an_encoder_layer_list_is_refused():
    with pytest.raises(SpdError, match="encoder layer list"):
        pruning.encoder_layers(torch.nn.Linear(2, 2))
