"""Statements A to E of THEORY.md as functions returning both sides of each inequality.

Layers are callables from hidden states to hidden states; `teacher` and `student` are lists of
L of them. Norms are Frobenius over everything in the tensor (tokens x features, and examples
when a batch is passed: a per-example Lipschitz constant K is also one for the batch). K[l] >=
Lip(T_l) and Kp[l] >= Lip(S_l) on the states that occur. Each function returns the measured
quantity and the bound, so the slack (bound / measured) can be reported. Proofs are in
theory/README.md; this is spd's own formalization of the paper's "error-bound properties".
"""
import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

Layer = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Check:
    """One inequality `measured <= bound` on one instance."""

    statement: str
    measured: float
    bound: float

    @property
    def slack(self) -> float:
        """bound / measured (1 is tight; inf when nothing was measured)."""
        return self.bound / self.measured if self.measured > 0 else math.inf

    def holds(self, rtol: float = 1e-9, atol: float = 1e-12) -> bool:
        return self.measured <= self.bound * (1 + rtol) + atol

    def as_row(self) -> dict:
        """This check as JSON, both sides, the slack (null when nothing was measured: JSON has
        no infinity) and its table text."""
        slack = self.slack if math.isfinite(self.slack) else None
        return {"statement": self.statement, "measured": self.measured, "bound": self.bound,
                "slack": slack, "slack_cell": slack_text(slack), "holds": self.holds()}


def slack_text(slack: float | None) -> str:
    """A slack as a table cell: '-' when nothing was measured."""
    return "-" if slack is None else f"{slack:.3g}"


def norm(x: torch.Tensor) -> float:
    return float(torch.linalg.vector_norm(x.double()))


def states(layers: Sequence[Layer], x: torch.Tensor) -> list[torch.Tensor]:
    """[x, l_1(x), l_2(l_1(x)), ...]: the L + 1 hidden states."""
    out = [x]
    for layer in layers:
        out.append(layer(out[-1]))
    return out


def hybrid_states(teacher: Sequence[Layer], student: Sequence[Layer], replaced: set[int],
                  x: torch.Tensor) -> list[torch.Tensor]:
    """Hidden states of f_R: student layer at the (0-based) positions in `replaced`."""
    return states([student[i] if i in replaced else t for i, t in enumerate(teacher)], x)


def module_error(teacher: Layer, student: Layer, h: torch.Tensor) -> float:
    """e_l(h) = ||S_l(h) - T_l(h)||."""
    return norm(student(h) - teacher(h))


def tail_products(K: Sequence[float]) -> list[float]:
    """P[l] = prod_{k > l} K[k] (0-based), the amplification after layer l."""
    return [math.prod(K[l + 1:]) for l in range(len(K))]


def telescoping(teacher: Sequence[Layer], student: Sequence[Layer], x: torch.Tensor) -> Check:
    """A: f_S - f_T = sum_l (G_l - G_{l-1}) with G_l = T_L..T_{l+1} S_l..S_1.

    `measured` is the norm of the identity's residual (zero up to rounding), `bound` the scale
    ||f_S(x) - f_T(x)|| it is to be compared with.
    """
    s = states(student, x)
    g = [states(teacher[l:], s[l])[-1] for l in range(len(teacher) + 1)]  # G_0 = f_T, G_L = f_S
    total = sum(g[l] - g[l - 1] for l in range(1, len(g)))
    diff = g[-1] - g[0]
    return Check("A", norm(diff - total), norm(diff))


def student_inputs(teacher, student, x, K: Sequence[float]) -> Check:
    """B1: ||f_S - f_T|| <= sum_l e_l(s_{l-1}) prod_{k>l} K_k."""
    s = states(student, x)
    t_out = states(teacher, x)[-1]
    P = tail_products(K)
    bound = sum(module_error(teacher[l], student[l], s[l]) * P[l] for l in range(len(teacher)))
    return Check("B1", norm(s[-1] - t_out), bound)


def teacher_inputs(teacher, student, x, Kp: Sequence[float]) -> Check:
    """B2: ||f_S - f_T|| <= sum_l e_l(t_{l-1}) prod_{k>l} K'_k (the layer-wise distillation view)."""
    t = states(teacher, x)
    s_out = states(student, x)[-1]
    P = tail_products(Kp)
    bound = sum(module_error(teacher[l], student[l], t[l]) * P[l] for l in range(len(teacher)))
    return Check("B2", norm(s_out - t[-1]), bound)


def one_grafted(teacher, student, x, K: Sequence[float], layer: int) -> Check:
    """C: ||f_{l} - f_T|| <= e_l(t_{l-1}) prod_{k>l} K_k for the single replaced `layer`."""
    t = states(teacher, x)
    h = hybrid_states(teacher, student, {layer}, x)
    bound = module_error(teacher[layer], student[layer], t[layer]) * tail_products(K)[layer]
    return Check(f"C[{layer}]", norm(h[-1] - t[-1]), bound)


def fixed_set(teacher, student, x, K: Sequence[float], replaced: set[int]) -> Check:
    """D for one set R: ||f_R - f_T|| <= sum_{l in R} e_l(h^R_{l-1}) prod_{k>l} K_k."""
    h = hybrid_states(teacher, student, replaced, x)
    t_out = states(teacher, x)[-1]
    P = tail_products(K)
    bound = sum(module_error(teacher[l], student[l], h[l]) * P[l] for l in sorted(replaced))
    return Check(f"D{sorted(replaced)}", norm(h[-1] - t_out), bound)


@dataclass(frozen=True)
class Enumeration:
    """Every replacement set R of L layers with ||f_R - f_T|| and e_l(h^R_{l-1}) for every l.

    E_R over independent Bernoulli(p) draws is then a polynomial in p, exactly.
    """

    n_layers: int
    sets: tuple[frozenset, ...]
    errors: tuple[float, ...]  # ||f_R(x) - f_T(x)|| per set
    module_errors: tuple[tuple[float, ...], ...]  # e_l(h^R_{l-1}) per set, per layer
    tails: tuple[float, ...]  # prod_{k>l} K_k

    def weight(self, R: frozenset, p: float) -> float:
        return p ** len(R) * (1 - p) ** (self.n_layers - len(R))

    def expected_error(self, p: float) -> float:
        """E_R ||f_R - f_T||, exactly, by summing over all 2^L sets."""
        return sum(self.weight(R, p) * e for R, e in zip(self.sets, self.errors))

    def polynomial(self) -> list[float]:
        """c_k = sum over |R| = k of ||f_R - f_T||: E(p) = sum_k c_k p^k (1 - p)^(L - k)."""
        c = [0.0] * (self.n_layers + 1)
        for R, e in zip(self.sets, self.errors):
            c[len(R)] += e
        return c

    def mean_module_errors(self, p: float) -> list[float]:
        """ebar_l(p) = E_R e_l(h^R_{l-1}): depends only on R's layers below l."""
        return [sum(self.weight(R, p) * m[l] for R, m in zip(self.sets, self.module_errors))
                for l in range(self.n_layers)]

    def bound(self, p: float) -> float:
        """D: p * sum_l ebar_l(p) prod_{k>l} K_k."""
        return p * sum(e * P for e, P in zip(self.mean_module_errors(p), self.tails))

    def linear_bound(self, p: float) -> float:
        """D with max_R e_l in place of ebar_l: a looser bound, exactly linear in p."""
        worst = [max(m[l] for m in self.module_errors) for l in range(self.n_layers)]
        return p * sum(e * P for e, P in zip(worst, self.tails))

    def check(self, p: float) -> Check:
        return Check(f"D(p={p:g})", self.expected_error(p), self.bound(p))


MAX_ENUMERATED_LAYERS = 12


def enumerate_sets(teacher, student, x, K: Sequence[float]) -> Enumeration:
    """All 2^L replacement sets (L <= 12): per-set errors and module errors.

    Depth first over the layers: the 2^l sets that agree below layer l share the hidden state
    entering it, so both layers run once per prefix, 2 (2^L - 1) layer calls in all instead of
    3 L 2^L, with L states held at a time. Sets come in `itertools.product` order (layer 0 most
    significant).
    """
    L = len(teacher)
    if L > MAX_ENUMERATED_LAYERS:
        raise ValueError(f"exact enumeration is for at most {MAX_ENUMERATED_LAYERS} layers; "
                         f"got {L} (use monte_carlo)")
    t_out = states(teacher, x)[-1]
    sets, errors, modules = [], [], []

    def visit(l: int, replaced: tuple[int, ...], h: torch.Tensor, e: tuple[float, ...]) -> None:
        if l == L:
            sets.append(frozenset(replaced))
            errors.append(norm(h - t_out))
            modules.append(e)
            return
        t, s = teacher[l](h), student[l](h)
        e = (*e, norm(s - t))  # e_l(h^R_{l-1}): the same for both choices at layer l
        visit(l + 1, replaced, t, e)
        visit(l + 1, (*replaced, l), s, e)

    visit(0, (), x, ())
    return Enumeration(L, tuple(sets), tuple(errors), tuple(modules), tuple(tail_products(K)))


@dataclass(frozen=True)
class MonteCarlo:
    mean: float
    low: float
    high: float
    samples: int


def monte_carlo(teacher, student, x, p: float, samples: int, seed: int,
                z: float = 4.89) -> MonteCarlo:
    """E_R ||f_R - f_T|| from `samples` random sets, with a normal interval mean +- z * se
    (z = 4.89: two-sided 1 - 1e-6)."""
    g = torch.Generator().manual_seed(seed)
    t_out = states(teacher, x)[-1]
    draws = torch.rand(samples, len(teacher), generator=g, dtype=torch.float64) < p
    errs = torch.tensor([norm(hybrid_states(teacher, student, set(torch.nonzero(d).flatten().tolist()),
                                            x)[-1] - t_out) for d in draws], dtype=torch.float64)
    mean = float(errs.mean())
    se = float(errs.std(unbiased=True)) / math.sqrt(samples) if samples > 1 else math.inf
    return MonteCarlo(mean, mean - z * se, mean + z * se, samples)


def pruning_error(weight: torch.Tensor, mask: torch.Tensor, x: torch.Tensor) -> tuple[Check, Check]:
    """E: ||(W - M*W) X|| <= ||W - M*W||_2 ||X|| <= ||W - M*W||_F ||X|| (X: features x tokens)."""
    d = (weight - mask * weight).double()
    measured = norm(d @ x.double())
    spectral = float(torch.linalg.matrix_norm(d, ord=2)) * norm(x)
    frobenius = norm(d) * norm(x)
    return Check("E-spectral", measured, spectral), Check("E-frobenius", spectral, frobenius)


def best_mask_error(weight: torch.Tensor, kept: int) -> float:
    """min over all masks keeping `kept` weights of ||W - M*W||_F, by brute force."""
    flat = weight.double().flatten()
    best = math.inf
    for keep in itertools.combinations(range(flat.numel()), kept):
        m = torch.zeros_like(flat)
        m[list(keep)] = 1
        best = min(best, norm(flat - m * flat))
    return best
