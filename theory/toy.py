"""Toy stacks with certified Lipschitz constants (float64): residual MLP blocks and scalar chains.

A block maps hidden states x (tokens x width) to x + act(x W1^T + b1) W2^T + b2, so
Lip <= 1 + ||W2||_2 Lip(act) ||W1||_2. A student is the teacher with its weights perturbed
(random noise) or magnitude-pruned, standing in for SPD's pruned and trained layers.
"""
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from theory.lipschitz import ACTIVATIONS, linear, residual

_ACT = {"relu": torch.relu, "tanh": torch.tanh, "gelu": F.gelu}


@dataclass(frozen=True)
class Block:
    w1: torch.Tensor
    b1: torch.Tensor
    w2: torch.Tensor
    b2: torch.Tensor
    act: str

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x + _ACT[self.act](x @ self.w1.T + self.b1) @ self.w2.T + self.b2

    def lipschitz(self) -> float:
        """Certified: 1 + ||W2||_2 Lip(act) ||W1||_2."""
        return residual(linear(self.w2) * ACTIVATIONS[self.act] * linear(self.w1))


def random_stack(depth: int, width: int, hidden: int, act: str, seed: int,
                 scale: float = 0.5) -> list[Block]:
    g = torch.Generator().manual_seed(seed)

    def w(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64) * scale / shape[-1] ** 0.5

    return [Block(w(hidden, width), w(hidden), w(width, hidden), w(width), act)
            for _ in range(depth)]


def perturbed(stack: list[Block], size: float, seed: int) -> list[Block]:
    """Every weight and bias moved by Gaussian noise of standard deviation `size`."""
    g = torch.Generator().manual_seed(seed)

    def move(t):
        return t + size * torch.randn(t.shape, generator=g, dtype=t.dtype)

    return [replace(b, w1=move(b.w1), b1=move(b.b1), w2=move(b.w2), b2=move(b.b2)) for b in stack]


def pruned(stack: list[Block], sparsity: float, mask_fn) -> list[Block]:
    """Both weight matrices of every block pruned to `sparsity` by `mask_fn(scores, sparsity)
    -> bool mask` on |w| (e.g. spd's `spd.masks.topk_mask`: theory takes it as an argument and
    imports nothing from spd)."""
    def prune(t):
        return t * mask_fn(t.abs(), sparsity)

    return [replace(b, w1=prune(b.w1), w2=prune(b.w2)) for b in stack]


@dataclass(frozen=True)
class Scale:
    """x -> a x: Lipschitz constant |a| exactly; chains of these make the bounds tight."""

    a: float

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.a * x

    def lipschitz(self) -> float:
        return abs(self.a)
