"""Adversarial attacks as plain functions.

Conventions shared by every attack here:

- Inputs ``x`` are images in [0, 1] of shape (B, C, H, W); the model normalises inside. ``eps`` and
  ``step_size`` are fractions of 1 (8/255 = 0.0313725), on the L-infinity norm.
- The attack never changes the model's train/eval mode or its knobs (lambda_n, lambda_th, width): the
  caller chooses them. The training algorithms in :mod:`hwsim.train.algorithms` generate training attacks in
  eval mode with parameter gradients off, as the OAT reference does (``ctx_noparamgrad_and_eval`` around
  ``PGD.attack``); see :func:`attack_context`.
- Parameter gradients are never accumulated: gradients are taken with ``torch.autograd.grad`` with respect
  to the input only.
- The attack loss is summed over the batch (as in the OAT reference) so that each sample's gradient does not
  depend on the batch size and does not underflow under float16 autocast; only its sign is used.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from hwsim.errors import HwsimError

LossName = Literal["ce", "cw"]
_LOSSES = ("ce", "cw")


def oat_step_size(eps: float, steps: int) -> float:
    """The OAT reference's PGD step size, ``min(1.25 eps, eps + 4/255) / steps`` (fraction of 1).

    >>> round(oat_step_size(8 / 255, 7) * 255, 4)
    1.4286
    """
    if steps < 1:
        raise HwsimError(f"attack steps must be >= 1, got {steps}")
    return min(1.25 * eps, eps + 4 / 255) / steps


def cw_margin_loss(logits: torch.Tensor, y: torch.Tensor, kappa: float = 50.0) -> torch.Tensor:
    """Per-sample Carlini-Wagner margin ``max_{j != y} z_j - z_y``, clamped below at ``-kappa``.

    Larger is more adversarial (the attack ascends it). ``kappa = 50`` follows the common PGD-CW setting.
    """
    true = logits.gather(1, y[:, None]).squeeze(1)
    others = logits.masked_fill(F.one_hot(y, logits.shape[1]).bool(), float("-inf"))
    return (others.max(dim=1).values - true).clamp(min=-kappa)


def _attack_loss(logits: torch.Tensor, y: torch.Tensor, loss: LossName) -> torch.Tensor:
    if loss == "ce":
        return F.cross_entropy(logits.float(), y, reduction="sum")
    return cw_margin_loss(logits.float(), y).sum()


def _check(eps: float, step_size: float, steps: int, loss: str) -> None:
    if not 0 <= eps <= 1:
        raise HwsimError(f"eps must be in [0, 1] (a fraction of 1, e.g. 8/255), got {eps}")
    if step_size < 0:
        raise HwsimError(f"step_size must be >= 0, got {step_size}")
    if steps < 0:
        raise HwsimError(f"attack steps must be >= 0, got {steps}")
    if loss not in _LOSSES:
        raise HwsimError(f"unknown attack loss {loss!r}; valid: {', '.join(_LOSSES)}")


def pgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float = 8 / 255,
    step_size: float = 2 / 255,
    steps: int = 7,
    random_start: bool = True,
    loss: LossName = "ce",
    trace: list[float] | None = None,
) -> torch.Tensor:
    """L-infinity PGD-k (Madry et al.): ``x_{t+1} = clip_[0,1](Proj_eps(x_t + step_size * sign(grad)))``.

    Args:
        model: the network, in whatever mode and knob setting the caller chose (not changed here).
        x: clean images in [0, 1], (B, C, H, W).
        y: integer labels, (B,).
        eps: L-infinity radius, fraction of 1.
        step_size: per-step size, fraction of 1 (:func:`oat_step_size` gives OAT's choice).
        steps: number of gradient steps k.
        random_start: start from a uniform point in the eps ball (clipped to [0, 1]).
        loss: ``"ce"`` (cross-entropy) or ``"cw"`` (CW margin).
        trace: if given, the summed attack loss at the start of each step is appended (for tests/diagnostics).

    Returns:
        Adversarial images, detached, within the eps ball around ``x`` and in [0, 1].
    """
    _check(eps, step_size, steps, loss)
    x = x.detach()
    if random_start:
        x_adv = (x + torch.empty_like(x).uniform_(-eps, eps)).clamp_(0, 1)
    else:
        x_adv = x.clone()
    for _ in range(steps):
        x_adv.requires_grad_(True)
        value = _attack_loss(model(x_adv), y, loss)
        if trace is not None:
            trace.append(float(value.detach()))
        (grad,) = torch.autograd.grad(value, x_adv)
        with torch.no_grad():
            x_adv = x_adv.detach() + step_size * grad.sign()
            x_adv = torch.min(torch.max(x_adv, x - eps), x + eps).clamp_(0, 1)
    return x_adv.detach()


def fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float = 8 / 255) -> torch.Tensor:
    """FGSM (Goodfellow et al.): one signed-gradient step of size ``eps`` from ``x`` (no random start).

    Identical to ``pgd(..., step_size=eps, steps=1, random_start=False)``.
    """
    return pgd(model, x, y, eps=eps, step_size=eps, steps=1, random_start=False, loss="ce")


def cw_pgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float = 8 / 255,
    step_size: float = 2 / 255,
    steps: int = 20,
    random_start: bool = True,
) -> torch.Tensor:
    """PGD on the CW margin loss (the "CW-k" attack of the robustness literature)."""
    return pgd(model, x, y, eps=eps, step_size=step_size, steps=steps, random_start=random_start, loss="cw")


@contextlib.contextmanager
def attack_context(model: nn.Module, mode: Literal["eval", "train"] = "eval") -> Iterator[nn.Module]:
    """Put ``model`` in ``mode`` with parameter gradients off for the duration; restore both on exit.

    This is how the trainer generates training attacks (OAT reference: eval mode, no parameter grads), so
    that BN running statistics are not updated by attack iterations and no parameter gradient is built.
    """
    was_training = model.training
    flags = [(p, p.requires_grad) for p in model.parameters()]
    model.train(mode == "train")
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield model
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        model.train(was_training)


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> int:
    """Number of correctly classified samples (argmax of the logits)."""
    return int((model(x).argmax(1) == y).sum())
