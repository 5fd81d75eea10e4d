"""Movement pruning (Sanh et al., NeurIPS 2020): importance S = sum over steps of -W * dL/dW,
the top-k of S kept per matrix on the same schedule as magnitude pruning."""
import pytest
import torch
from transformers import AutoModelForSequenceClassification

from spd import pruning
from spd.cli import main
from spd.errors import SpdError
from spd.masks import kept_count
from tests.test_distill import (assert_resumes_to, pruned, read_metrics,  # noqa: F401
                               smoke_prune, tiny_teacher)


@pytest.fixture()
def model(tiny_model_dir):
    torch.manual_seed(0)
    return AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=2).eval()


def batch(seed: int):
    g = torch.Generator().manual_seed(seed)
    return {"input_ids": torch.randint(5, 1000, (4, 9), generator=g),
            "attention_mask": torch.ones(4, 9, dtype=torch.long),
            "labels": torch.randint(0, 2, (4,), generator=g)}


def movement_linears(model):
    linears = pruning.prunable_linears(pruning.encoder_layers(model))
    pruning.attach_masks(linears, movement=True)
    return linears


def test_scores_accumulate_minus_weight_times_gradient_over_steps(model):
    linears = movement_linears(model)
    pruning.prune_to(linears, 0.5, criterion="movement")  # zero scores: ties, still exact
    expect = {k: torch.zeros_like(lin.weight) for k, lin in linears.items()}
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model.train()
    for step in range(3):
        model(**batch(step)).loss.backward()
        for k, lin in linears.items():  # by hand, before the step changes W
            w = lin.parametrizations.weight.original
            expect[k] -= w.detach() * w.grad
        pruning.accumulate_movement(linears)
        opt.step()
        opt.zero_grad()
    for k, lin in linears.items():
        score = pruning.movement_of(lin)
        torch.testing.assert_close(score, expect[k], rtol=0, atol=0)
        assert bool((score[~pruning.mask_of(lin)] == 0).all()), k  # pruned: no gradient


def test_movement_keeps_the_top_k_scores_per_matrix_and_masks_nest(model):
    linears = movement_linears(model)
    g = torch.Generator().manual_seed(1)
    for lin in linears.values():  # scores chosen unlike the magnitudes
        pruning.movement_of(lin).copy_(torch.randn(lin.weight.shape, generator=g))
    last = None
    for s in (0.3, 0.6, 0.9):
        pruning.prune_to(linears, s, criterion="movement")
        for k, lin in linears.items():
            mask, score = pruning.mask_of(lin), pruning.movement_of(lin)
            assert int(mask.sum()) == kept_count(mask.numel(), s), k
            if last is None:  # the first update: exactly the k largest scores
                assert score[mask].min() > score[~mask].max(), k
            else:  # later ones: the largest among the weights still alive
                alive = last[k] & ~mask
                assert score[mask].min() >= score[alive].max() if alive.any() else True, k
                assert bool((mask <= last[k]).all()), k
        last = {k: pruning.mask_of(lin).clone() for k, lin in linears.items()}
    by_magnitude = {k: pruning.mask_of(lin) for k, lin in linears.items()}
    plain = pruning.prunable_linears(pruning.encoder_layers(
        AutoModelForSequenceClassification.from_pretrained(model.name_or_path, num_labels=2)))
    pruning.attach_masks(plain)
    pruning.prune_to(plain, 0.9)
    assert any(not torch.equal(by_magnitude[k], pruning.mask_of(plain[k])) for k in plain)


def test_movement_scores_are_kept_in_the_state_dict_only_when_movement_is_on(model):
    linears = movement_linears(model)
    keys = [k for k in model.state_dict() if k.endswith("movement")]
    assert len(keys) == len(linears)
    other = AutoModelForSequenceClassification.from_pretrained(model.name_or_path, num_labels=2)
    pruning.attach_masks(pruning.prunable_linears(pruning.encoder_layers(other)))
    assert not any(k.endswith("movement") for k in other.state_dict())


def test_movement_without_tracked_scores_is_refused_in_one_line(model):
    linears = pruning.prunable_linears(pruning.encoder_layers(model))
    pruning.attach_masks(linears)
    with pytest.raises(SpdError, match="movement"):
        pruning.prune_to(linears, 0.5, criterion="movement")


def test_a_movement_run_prunes_on_schedule_and_resumes_bitwise(pruned, tiny_teacher, small_glue,
                                                                tmp_path, monkeypatch):
    """An SPD run with prune.criterion=movement: the realised sparsity follows the same cubic
    schedule as the magnitude run, its masks differ, and a killed run resumes to the whole one
    (the scores travel in the checkpoint)."""
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    movement = ("--set", "prune.criterion=movement")
    assert main(smoke_prune(tiny_teacher, small_glue, whole, *movement)) == 0
    got, ref = read_metrics(whole), read_metrics(pruned)
    assert [r["sparsity"] for r in got] == [r["sparsity"] for r in ref]
    for r in got:
        assert abs(r["realised_sparsity"] - r["sparsity"]) < 1e-3, r["step"]
    assert [r["loss"] for r in got] != [r["loss"] for r in ref]
    assert_resumes_to(whole, smoke_prune(tiny_teacher, small_glue, killed, *movement),
                       monkeypatch)
