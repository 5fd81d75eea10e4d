"""Sparse inference paths for a pruned model: CSR weights through `torch.sparse.mm` (MKL on the
CPU, cuSPARSE on CUDA), and for a 2:4 model on CUDA the semi-structured sparse tensor-core
kernels (fp16). `spd bench` times them against dense kernels."""
import copy
import warnings

import torch
from torch import nn

from spd import pruning


class CSRLinear(nn.Module):
    """y = x W^T + b with W stored as a CSR sparse matrix (the CPU sparse path)."""

    def __init__(self, lin: nn.Linear):
        super().__init__()
        with warnings.catch_warnings():  # "sparse CSR support is in beta"
            warnings.simplefilter("ignore", UserWarning)
            self.weight = lin.weight.detach().to_sparse_csr()
        self.bias = None if lin.bias is None else lin.bias.detach()
        self.in_features, self.out_features = lin.in_features, lin.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features)
        y = torch.sparse.mm(self.weight, flat.t()).t()
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*x.shape[:-1], self.out_features)


class SemiStructuredLinear(nn.Module):
    """y = x W^T + b with a 2:4 W in the semi-structured format of sparse tensor cores (CUDA,
    fp16; `torch.sparse.to_sparse_semi_structured`)."""

    def __init__(self, lin: nn.Linear):
        super().__init__()
        from torch.sparse import to_sparse_semi_structured

        self.weight = to_sparse_semi_structured(lin.weight.detach().half())
        self.bias = None if lin.bias is None else lin.bias.detach().half()
        self.in_features, self.out_features = lin.in_features, lin.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features)
        y = nn.functional.linear(flat, self.weight, self.bias)
        return y.reshape(*x.shape[:-1], self.out_features)


CSR_KERNEL = "CSR (torch.sparse.mm)"
SEMI_KERNEL = "2:4 semi-structured (torch.sparse, fp16)"


def sparse_path(model, pattern: str = "unstructured", device=None) -> tuple[nn.Module, str]:
    """A copy whose prunable linears use a sparse kernel, and the kernel's name: the 2:4
    semi-structured kernels for a 2:4 model on CUDA (the model is then fp16), else CSR."""
    out = copy.deepcopy(model)
    semi = pattern == "2:4" and device is not None and device.type == "cuda"
    layers = pruning.encoder_layers(out)
    for name, lin in pruning.prunable_linears(layers).items():
        parent, attr = name.rsplit(".", 1)
        setattr(layers.get_submodule(parent), attr,
                SemiStructuredLinear(lin) if semi else CSRLinear(lin))
    return (out.half(), SEMI_KERNEL) if semi else (out, CSR_KERNEL)
