"""The SPD (TinyBERT-style) loss terms, as pure functions of model outputs.

L = a_hid * sum_l MSE(H_S^l, H_T^l) + a_att * sum_l MSE(A_S^l, A_T^l) + a_pred * L_pred
    + a_ce * CE(z_S, y)
"""
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from spd.tasks import Task


def _masked_mean(sq: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """The mean of `sq` over the entries where `weight` (broadcast to it) is 1."""
    return (sq * weight).sum() / (weight.expand_as(sq).sum())


def hidden_mse(student: Sequence[torch.Tensor], teacher: Sequence[torch.Tensor],
               mask: torch.Tensor | None = None) -> torch.Tensor:
    """Sum over the L+1 hidden states (embedding output and every layer) of the mean squared
    error; with an attention `mask` ([B, T]), the mean over real tokens only."""
    if mask is None:
        return sum(F.mse_loss(s, t) for s, t in zip(student, teacher, strict=True))
    weight = mask[:, :, None].to(student[0].dtype)
    return sum(_masked_mean((s - t) ** 2, weight) for s, t in zip(student, teacher, strict=True))


def attention_mse(student: Sequence[torch.Tensor], teacher: Sequence[torch.Tensor],
                  mask: torch.Tensor | None = None) -> torch.Tensor:
    """Sum over the L layers of the MSE between attention probabilities; with an attention
    `mask` ([B, T]), the mean over (real query, real key) pairs only."""
    if mask is None:
        return sum(F.mse_loss(s, t) for s, t in zip(student, teacher, strict=True))
    m = mask.to(student[0].dtype)
    weight = (m[:, :, None] * m[:, None, :])[:, None]  # [B, 1, T, T]
    return sum(_masked_mean((s - t) ** 2, weight) for s, t in zip(student, teacher, strict=True))


def soft_cross_entropy(z_s: torch.Tensor, z_t: torch.Tensor, tau: float,
                       classes: str = "sum") -> torch.Tensor:
    """-sum_c softmax(z_T / tau)_c * log_softmax(z_S / tau)_c, averaged over the batch.

    No tau^2 factor, as in the official SPD code. `classes="mean"` averages over the classes
    instead of summing, as the official code's `.mean()` over the whole [batch, classes] tensor
    does (the term divided by the number of classes).
    """
    per_class = -(F.softmax(z_t / tau, dim=-1) * F.log_softmax(z_s / tau, dim=-1))
    if classes == "mean":
        return per_class.mean()
    return per_class.sum(-1).mean()


def prediction_loss(z_s: torch.Tensor, z_t: torch.Tensor, target: torch.Tensor, tau: float,
                    regression: bool, classes: str = "sum") -> torch.Tensor:
    """L_pred: soft cross-entropy to the teacher, or for regression (STS-B) the MSE to `target`
    (the official code regresses on the gold score; pass the teacher's score to distil it)."""
    if regression:
        return F.mse_loss(z_s.squeeze(-1), target.to(z_s.dtype))
    return soft_cross_entropy(z_s, z_t, tau, classes)


def spd_loss(s_out, t_out, labels: torch.Tensor, task: Task, cfg,
             attention_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
    """The weighted SPD loss and each term (unweighted), from both models' outputs; with
    `cfg.padding == "exclude"` the hidden-state and attention terms see real tokens only."""
    mask = attention_mask if cfg.padding == "exclude" else None
    target = labels if cfg.regression_target == "gold" else t_out.logits.squeeze(-1)
    hard = (F.mse_loss(s_out.logits.squeeze(-1), labels.to(s_out.logits.dtype))
            if task.is_regression else F.cross_entropy(s_out.logits, labels))
    terms = {
        "hidden": hidden_mse(s_out.hidden_states, t_out.hidden_states, mask),
        "attention": attention_mse(s_out.attentions, t_out.attentions, mask),
        "prediction": prediction_loss(s_out.logits, t_out.logits, target, cfg.temperature,
                                      task.is_regression, cfg.soft_ce_classes),
        "hard": hard,
    }
    total = sum(getattr(cfg, name) * term for name, term in terms.items())
    return total, terms
