"""Losses and attacks of the TRADES and MART training algorithms, as plain functions.

Conventions as in :mod:`hwsim.train.attacks`: images in [0, 1], eps and step sizes fractions of 1, the model's
mode and knobs are the caller's, gradients are taken with respect to the input only.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

#: Std of the Gaussian start of the TRADES and MART attacks (both references: ``0.001 * randn``).
START_STD = 1e-3


def kl_clean_adv(clean_logits: torch.Tensor, adv_logits: torch.Tensor) -> torch.Tensor:
    """Per-sample ``KL(f(x) || f(x'))`` = sum_k p_k (log p_k - log p'_k), p = softmax of the clean logits."""
    p = F.softmax(clean_logits, dim=1)
    return (p * (F.log_softmax(clean_logits, dim=1) - F.log_softmax(adv_logits, dim=1))).sum(dim=1)


def gaussian_start_pgd(model: nn.Module, x: torch.Tensor, loss_fn: Callable[[torch.Tensor], torch.Tensor],
                       eps: float, step_size: float, steps: int) -> torch.Tensor:
    """L-inf PGD ascending ``loss_fn(model(x'))`` (a summed scalar) from ``x + 0.001 N(0, 1)``.

    After every step: projection onto the eps ball around ``x`` and clipping to [0, 1] (TRADES, MART).
    """
    x = x.detach()
    x_adv = x + START_STD * torch.randn_like(x)
    for _ in range(steps):
        x_adv.requires_grad_(True)
        (grad,) = torch.autograd.grad(loss_fn(model(x_adv)), x_adv)
        with torch.no_grad():
            x_adv = x_adv.detach() + step_size * grad.sign()
            x_adv = torch.min(torch.max(x_adv, x - eps), x + eps).clamp_(0, 1)
    return x_adv.detach()


def trades_attack(model: nn.Module, x: torch.Tensor, eps: float, step_size: float, steps: int) -> torch.Tensor:
    """TRADES's inner maximisation: PGD on ``KL(f(x) || f(x'))`` from a Gaussian start (one clean forward)."""
    with torch.no_grad():
        p_clean = F.softmax(model(x).float(), dim=1)

    def loss(logits: torch.Tensor) -> torch.Tensor:
        return F.kl_div(F.log_softmax(logits.float(), dim=1), p_clean, reduction="sum")

    return gaussian_start_pgd(model, x, loss, eps, step_size, steps)


def mart_attack(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, step_size: float,
                steps: int) -> torch.Tensor:
    """MART's inner maximisation: PGD on cross-entropy from a Gaussian start."""
    return gaussian_start_pgd(model, x, lambda logits: F.cross_entropy(logits.float(), y, reduction="sum"),
                              eps, step_size, steps)


def trades_loss(clean_logits: torch.Tensor, adv_logits: torch.Tensor, y: torch.Tensor,
                beta: float) -> torch.Tensor:
    """TRADES (Zhang et al. 2019): ``CE(f(x), y) + beta mean_i KL(f(x_i) || f(x'_i))``."""
    return F.cross_entropy(clean_logits, y) + beta * kl_clean_adv(clean_logits, adv_logits).mean()


def mart_loss(clean_logits: torch.Tensor, adv_logits: torch.Tensor, y: torch.Tensor,
              beta: float) -> torch.Tensor:
    """MART (Wang et al. 2020): boosted CE on x' plus ``beta`` KL weighted by the clean misclassification.

    ``BCE = CE(f(x'), y) - log(1 - max_{k != y} f_k(x'))`` and the regulariser
    ``mean_i KL(f(x_i) || f(x'_i)) (1 - f_y(x_i))``, with the reference's 1e-4 / 1e-12 / 1e-7 guards.
    """
    adv_probs = F.softmax(adv_logits, dim=1)
    top2 = torch.argsort(adv_probs, dim=1)[:, -2:]
    runner_up = torch.where(top2[:, -1] == y, top2[:, -2], top2[:, -1])
    boosted = F.cross_entropy(adv_logits, y) + F.nll_loss(torch.log(1.0001 - adv_probs + 1e-12), runner_up)
    clean_probs = F.softmax(clean_logits, dim=1)
    true_probs = clean_probs.gather(1, y[:, None]).squeeze(1)
    kl = (clean_probs * (torch.log(clean_probs + 1e-12) - torch.log(adv_probs + 1e-12))).sum(dim=1)
    return boosted + beta * (kl * (1.0000001 - true_probs)).mean()
