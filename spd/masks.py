"""Pruning masks as pure functions of scores and sparsity; applying them lives elsewhere.

A mask keeps exactly `kept_count(n, s)` entries: the highest scores, ties broken towards the
lower flat index, so the same scores always give the same mask.
"""
import math

import torch

# The allowed values of prune.scope and prune.criterion, stated once (config and pruning).
SCOPES = ("per_matrix", "global")
CRITERIA = ("magnitude", "random", "movement")


def kept_count(n: int, sparsity: float) -> int:
    """round(n * (1 - s)), halves rounded up (Python's `round` would round half to even)."""
    return min(n, max(0, math.floor(n * (1.0 - sparsity) + 0.5)))


def _topk_flat(scores: torch.Tensor, k: int) -> torch.Tensor:
    # A stable descending sort keeps equal scores in index order: deterministic tie-breaking.
    order = torch.argsort(scores.float() if scores.dtype == torch.bfloat16 else scores,
                          descending=True, stable=True)
    mask = torch.zeros(scores.numel(), dtype=torch.bool, device=scores.device)
    mask[order[:k]] = True
    return mask


def topk_mask(scores: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Boolean mask of `scores`' shape keeping the `kept_count` highest scores.

    Args:
        scores: importance of each weight (|w| for magnitude pruning).
        sparsity: fraction to prune, in [0, 1).
    """
    k = kept_count(scores.numel(), sparsity)
    return _topk_flat(scores.flatten(), k).view(scores.shape)


def update_mask(old: torch.Tensor, scores: torch.Tensor, sparsity: float) -> torch.Tensor:
    """A new mask at `sparsity` that never revives a weight `old` pruned (monotone).

    Pruned weights score -inf, and the kept count never exceeds what `old` kept.
    """
    k = min(kept_count(scores.numel(), sparsity), int(old.sum()))
    masked = scores.double().masked_fill(~old, -math.inf)
    return _topk_flat(masked.flatten(), k).view(scores.shape)


def global_masks(scores: dict[str, torch.Tensor], sparsity: float,
                 old: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """One threshold over all matrices: exactly `kept_count` of all entries kept overall.

    With `old` masks the update is monotone, as in `update_mask`.
    """
    names = list(scores)
    flat = torch.cat([scores[n].double().flatten() for n in names])
    k = kept_count(flat.numel(), sparsity)
    if old is not None:
        old_flat = torch.cat([old[n].flatten() for n in names])
        flat = flat.masked_fill(~old_flat, -math.inf)
        k = min(k, int(old_flat.sum()))
    mask = _topk_flat(flat, k)
    out, start = {}, 0
    for n in names:
        size = scores[n].numel()
        out[n] = mask[start:start + size].view(scores[n].shape)
        start += size
    return out


def parse_pattern(pattern: str) -> tuple[int, int] | None:
    """`unstructured` -> None; `N:M` (0 < N < M) -> (N, M): keep N of every M weights."""
    if pattern == "unstructured":
        return None
    try:
        n, m = (int(x) for x in pattern.split(":"))
        ok = 0 < n < m
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(f"pattern {pattern!r} is neither 'unstructured' nor N:M with integers "
                         f"0 < N < M (e.g. 2:4)")
    return n, m


def nm_pruned_per_group(sparsity: float, n: int, m: int) -> int:
    """How many weights of each group of m are pruned at `sparsity`: the whole weights the
    sparsity covers (floor(s m)), at most m - n."""
    return min(m - n, math.floor(sparsity * m + 1e-9))


def nm_mask(scores: torch.Tensor, n: int, m: int, old: torch.Tensor | None = None) -> torch.Tensor:
    """Keep the n highest scores in every group of m consecutive entries of each row (the last
    dimension, a multiple of m), ties towards the lower index. With `old`, weights it pruned
    stay pruned and each group keeps at most what it kept."""
    if scores.shape[-1] % m:
        raise ValueError(f"N:M masks need rows whose length is a multiple of M={m}; got "
                         f"{scores.shape[-1]}")
    groups = scores.double().reshape(-1, m)
    if old is not None:
        groups = groups.masked_fill(~old.reshape(-1, m), -math.inf)
    order = torch.argsort(groups, dim=1, descending=True, stable=True)[:, :n]
    mask = torch.zeros(groups.shape, dtype=torch.bool, device=scores.device)
    mask.scatter_(1, order, True)
    if old is not None:
        mask &= old.reshape(-1, m)
    return mask.view(scores.shape)
