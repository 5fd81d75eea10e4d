"""Masks applied to a Hugging Face encoder from outside: a parametrization holding a mask buffer.

`W -> mask * W` through `torch.nn.utils.parametrize`: pruned weights read as zero in every
forward pass, gradients to them are zero, the mask is in the state_dict, and baking
(`remove_parametrizations(..., leave_parametrized=True)`) leaves a plain model with zeros.
"""
import torch
from torch import nn
from torch.nn.utils import parametrize

from spd.errors import SpdError, bad_value
from spd.masks import (CRITERIA, SCOPES, global_masks, nm_mask, nm_pruned_per_group,
                       parse_pattern, update_mask)

# The six linear weight matrices of a BERT encoder layer; biases, LayerNorms, embeddings,
# pooler and classifier stay dense.
PRUNABLE = ("attention.self.query", "attention.self.key", "attention.self.value",
            "attention.output.dense", "intermediate.dense", "output.dense")


class WeightMask(nn.Module):
    """Parametrization `W -> mask * W`; `mask` is a bool buffer updated in place. With
    `movement`, a float buffer `movement` holds the movement scores (`accumulate_movement`),
    so that they travel with the masks in the state_dict and checkpoints."""

    def __init__(self, weight: torch.Tensor, movement: bool = False):
        super().__init__()
        self.register_buffer("mask", torch.ones_like(weight, dtype=torch.bool))
        if movement:
            self.register_buffer("movement", torch.zeros_like(weight, dtype=torch.float32))

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight * self.mask


def encoder_layers(model) -> nn.ModuleList:
    """`model.<base>.encoder.layer`, the list SPD grafts and prunes."""
    base = getattr(model, "base_model", model)
    layers = getattr(getattr(base, "encoder", None), "layer", None)
    if not isinstance(layers, nn.ModuleList):
        raise bad_value("model has no encoder layer list to graft or prune",
                        type(model).__name__, "a BERT-family model with base_model.encoder.layer")
    return layers


def prunable_linears(layers: nn.ModuleList) -> dict[str, nn.Linear]:
    """`{"<layer>.<path>": nn.Linear}` for the six prunable matrices of every layer."""
    try:
        return {f"{i}.{path}": layer.get_submodule(path)
                for i, layer in enumerate(layers) for path in PRUNABLE}
    except AttributeError as e:
        raise SpdError(f"encoder layer lacks a prunable linear ({e}); allowed: BERT-style layers "
                       f"with {', '.join(PRUNABLE)}") from None


def attach_masks(linears: dict[str, nn.Linear], movement: bool = False) -> None:
    """Register an all-ones mask parametrization on every weight (outputs unchanged); with
    `movement`, zero movement scores beside each mask."""
    for lin in linears.values():
        if not parametrize.is_parametrized(lin, "weight"):
            parametrize.register_parametrization(lin, "weight", WeightMask(lin.weight, movement))


def mask_of(lin: nn.Linear) -> torch.Tensor:
    return lin.parametrizations.weight[0].mask


def movement_of(lin: nn.Linear) -> torch.Tensor:
    scores = getattr(lin.parametrizations.weight[0], "movement", None)
    if scores is None:
        raise SpdError("pruning criterion movement needs movement scores; allowed: masks "
                       "attached with attach_masks(..., movement=True)")
    return scores


@torch.no_grad()
def accumulate_movement(linears: dict[str, nn.Linear]) -> None:
    """Movement pruning's importance (Sanh et al. 2020): S -= W * dL/dW, after a backward
    pass, for every matrix that has a gradient (a pruned weight's is zero; a teacher-drawn
    layer's is absent)."""
    for lin in linears.values():
        w = lin.parametrizations.weight.original
        if w.grad is not None:
            movement_of(lin).sub_(w.detach() * w.grad)


def _scores(lin: nn.Linear, criterion: str, seed: int, index: int) -> torch.Tensor:
    if criterion == "magnitude":
        return lin.parametrizations.weight.original.detach().abs()
    if criterion == "movement":
        return movement_of(lin)
    # Random scores are a function of (seed, matrix), the same at every update: masks nest.
    g = torch.Generator().manual_seed(seed * 1_000_003 + index)
    return torch.rand(lin.weight.shape, generator=g).to(lin.weight.device)


@torch.no_grad()
def prune_to(linears: dict[str, nn.Linear], sparsity: float, scope: str = "per_matrix",
             criterion: str = "magnitude", seed: int = 0, pattern: str = "unstructured") -> None:
    """Update every mask in place to `sparsity`, monotonically (pruned weights stay pruned).

    Args:
        linears: the prunable matrices, from `prunable_linears`, with masks attached.
        sparsity: target fraction of zeros, per matrix or over all of them (`scope`).
        scope: `per_matrix` (every matrix at the same sparsity) or `global` (one threshold).
        criterion: `magnitude` (|w|), `random` (a floor for ablations) or `movement` (the
            accumulated -W * dL/dW; masks attached with `movement=True`).
        seed: seeds the random criterion's scores.
        pattern: `unstructured`, or `N:M`: in every group of M weights of a row, the
            `nm_pruned_per_group(sparsity)` lowest-scoring are pruned (per matrix only).
    """
    if scope not in SCOPES:
        raise bad_value("pruning scope", scope, ", ".join(SCOPES))
    if criterion not in CRITERIA:
        raise bad_value("pruning criterion", criterion, ", ".join(CRITERIA))
    scores = {k: _scores(lin, criterion, seed, i) for i, (k, lin) in enumerate(linears.items())}
    old = {k: mask_of(lin) for k, lin in linears.items()}
    nm = parse_pattern(pattern)
    if nm:
        n, m = nm
        keep = m - nm_pruned_per_group(sparsity, n, m)
        for k, lin in linears.items():
            if lin.in_features % m:
                raise bad_value(f"prune.pattern={pattern}: {k} has in_features", lin.in_features,
                                f"a multiple of M={m}")
        new = {k: nm_mask(scores[k], keep, m, old[k]) for k in linears}
    elif scope == "global":
        new = global_masks(scores, sparsity, old)
    else:
        new = {k: update_mask(old[k], scores[k], sparsity) for k in linears}
    for k in linears:
        old[k].copy_(new[k])


def bake(linears: dict[str, nn.Linear]) -> None:
    """Remove the parametrizations, leaving plain weights whose pruned entries are zeros."""
    for lin in linears.values():
        if parametrize.is_parametrized(lin, "weight"):
            parametrize.remove_parametrizations(lin, "weight", leave_parametrized=True)


def sparsity_table(linears: dict[str, nn.Linear]) -> dict[str, float]:
    """Fraction of zeros in each (masked) weight matrix."""
    return {k: float((lin.weight == 0).sum()) / lin.weight.numel() for k, lin in linears.items()}


def overall_sparsity(linears: dict[str, nn.Linear]) -> float:
    """Fraction of zeros over the whole prunable set."""
    zeros = sum(int((lin.weight == 0).sum()) for lin in linears.values())
    return zeros / sum(lin.weight.numel() for lin in linears.values())
