"""Lipschitz constants: certified ones for toy stacks, local estimates for real layers.

Certified (float64): a linear map x -> W x + b has Lip = ||W||_2 (largest singular value, by
SVD); ReLU and tanh have 1; GELU has max_x |GELU'(x)| (computed below, about 1.1289); a
residual block x + g(x) has at most 1 + Lip(g); a composition at most the product.

Local (real Transformer layers, which are not globally Lipschitz): the largest spectral norm of
the Jacobian found by power iteration, with Jacobian-vector and vector-Jacobian products, at
points on the segment between the two inputs an inequality compares. By the mean-value
inequality ||f(a) - f(b)|| <= sup_{z in [a, b]} ||J_f(z)||_2 ||a - b||, so the supremum over the
segment is the constant the bounds need; sampling a few points and iterating a few times only
estimates it from below. A check that uses it is numerical evidence, not a certificate.
"""
import math
from collections.abc import Callable

import torch
from scipy import optimize, special

RELU = 1.0
TANH = 1.0


def _gelu_derivative(x: float) -> float:
    # d/dx [x Phi(x)] = Phi(x) + x phi(x)
    return 0.5 * (1 + special.erf(x / math.sqrt(2))) + x * math.exp(-x * x / 2) / math.sqrt(2 * math.pi)


def gelu_lipschitz() -> float:
    """max_x |GELU'(x)|: GELU' rises from 0 to its maximum at x = sqrt(2), then falls to 1."""
    res = optimize.minimize_scalar(lambda x: -_gelu_derivative(x), bounds=(0.0, 4.0),
                                   method="bounded", options={"xatol": 1e-12})
    return -res.fun


GELU = gelu_lipschitz()
ACTIVATIONS = {"relu": RELU, "tanh": TANH, "gelu": GELU}


def linear(weight: torch.Tensor) -> float:
    """||W||_2 in float64: the Lipschitz constant of x -> W x + b (rows of x: tokens)."""
    return float(torch.linalg.matrix_norm(weight.double(), ord=2))


def residual(lip_branch: float) -> float:
    """x -> x + g(x): at most 1 + Lip(g)."""
    return 1.0 + lip_branch


def jacobian_spectral_norm(f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                           iters: int = 30, seed: int = 0) -> float:
    """||J_f(x)||_2 by power iteration on J^T J (jvp then vjp), an estimate from below."""
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(x.shape, generator=g, dtype=x.dtype).to(x.device)
    v = v / v.norm()
    sigma = 0.0
    _, vjp_fn = torch.func.vjp(f, x)  # the backward graph at x, built once
    for _ in range(iters):
        _, jv = torch.func.jvp(f, (x,), (v,))
        (jtjv,) = vjp_fn(jv)
        sigma = float(jv.norm())
        norm = jtjv.norm()
        if norm == 0:
            return 0.0
        v = jtjv / norm
    return sigma


def local_lipschitz(f: Callable[[torch.Tensor], torch.Tensor], a: torch.Tensor, b: torch.Tensor,
                    points: int = 3, iters: int = 20) -> float:
    """max of the Jacobian spectral norm at `points` points on the segment [a, b] (both ends
    included when points >= 2): the local constant for comparing f(a) with f(b)."""
    ts = [0.5] if points == 1 else [i / (points - 1) for i in range(points)]
    return max(jacobian_spectral_norm(f, a + t * (b - a), iters, seed=i) for i, t in enumerate(ts))
