"""Perturbed training inputs for distillation, labelled by the teacher.

A student distilled on a small task fits its few thousand examples and little else (MRPC at
sparsity 0.9: train-subset F1 0.93 against dev 0.77 after 20 epochs). The teacher can label any
input, so the student can learn the teacher's function around the training examples too, as
TinyBERT does with its augmented data. Here, cheaply and on the fly: each training example of a
batch becomes, with probability `rate`, a perturbed copy of itself:
- each of its real, non-special tokens is replaced with probability `tokens` by a token drawn
  from the training set's unigram distribution (specials and padding never change);
- on a symmetric pair task (MRPC, STS-B, QQP), its two sentences are swapped with probability
  1/2, which leaves the meaning of the pair, and so the teacher's target, as it was.
The teacher's outputs on the perturbed input are the targets, so a run that augments has no
gold-label term (`SPDConfig` refuses one). The draws are a function of (seed, step) alone: a
resumed run draws the same, and the teacher's cost per step is unchanged.
"""
from collections.abc import Iterable

import torch

from spd.tasks import Task


def unigram(examples: list[dict], special_ids: Iterable[int], vocab_size: int) -> torch.Tensor:
    """The frequency of each token id among the examples' non-special tokens (sums to 1)."""
    ids = torch.tensor([t for e in examples for t in e["input_ids"]], dtype=torch.long)
    counts = torch.bincount(ids, minlength=vocab_size).double()
    counts[list(special_ids)] = 0
    return counts / counts.sum()


def swap_segments(batch: dict, row: int) -> dict:
    """Swap, in place, the two sentences of `row` ([CLS] A [SEP] B [SEP] -> [CLS] B [SEP] A
    [SEP]) with their token types; its length and padding stay as they were."""
    ids, types = batch["input_ids"][row], batch["token_type_ids"][row]
    n = int(batch["attention_mask"][row].sum())
    a_end = int((types[:n] == 0).sum()) - 1  # the first [SEP]
    a, b = ids[1:a_end].clone(), ids[a_end + 1:n - 1].clone()
    ids[1:1 + len(b)] = b
    ids[1 + len(b)] = ids[n - 1]  # [SEP]
    ids[2 + len(b):n - 1] = a
    types[:2 + len(b)] = 0
    types[2 + len(b):n] = 1
    return batch


class Noise:
    """`noise(batch, step)`: the batch with the perturbed copies of that step (a new batch;
    the input is not changed)."""

    def __init__(self, examples: list[dict], special_ids: Iterable[int], vocab_size: int,
                 task: Task, rate: float, tokens: float, swap: bool, seed: int):
        self.rate, self.tokens, self.seed = rate, tokens, seed
        self.special = torch.tensor(sorted(set(special_ids)), dtype=torch.long)
        # Counted only when copies are made: off, the noise is the identity and costs nothing.
        self.probs = unigram(examples, self.special.tolist(), vocab_size) if rate else None
        self.swap = swap and task.symmetric and task.is_pair

    def __call__(self, batch: dict, step: int) -> dict:
        if self.rate == 0:
            return batch
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + step)
        ids = batch["input_ids"]
        n = ids.shape[0]
        rows = torch.rand(n, generator=g) < self.rate
        real = batch["attention_mask"].bool() & ~torch.isin(ids, self.special)
        hit = rows[:, None] & real & (torch.rand(ids.shape, generator=g) < self.tokens)
        draws = torch.multinomial(self.probs, ids.numel(), replacement=True, generator=g)
        flips = rows & (torch.rand(n, generator=g) < 0.5)
        out = {k: v.clone() if k in ("input_ids", "token_type_ids") else v
               for k, v in batch.items()}
        out["input_ids"][hit] = draws.view(ids.shape)[hit]
        if self.swap:
            for row in flips.nonzero().flatten().tolist():
                swap_segments(out, row)
        return out
