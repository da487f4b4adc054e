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
- Randomised models (a forward that draws noise, e.g. FLOAT with lambda_n > 0): ``eot=k`` averages the input
  gradient over k forwards, each with its own noise draw (expectation over transformation, Athalye et al.
  2018), as AutoAttack's 'rand' version does. ``eot=1`` is the plain attack. PGD's ``trace`` records the mean
  loss over the draws; APGD, as AutoAttack, uses the last draw's loss (see :func:`apgd`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from hwsim.errors import HwsimError
from hwsim.train._checks import check_count

LossName = Literal["ce", "cw", "dlr"]
_LOSSES = ("ce", "cw", "dlr")


def oat_step_size(eps: float, steps: int) -> float:
    """The OAT reference's PGD step size, ``min(1.25 eps, eps + 4/255) / steps`` (fraction of 1).

    >>> round(oat_step_size(8 / 255, 7) * 255, 4)
    1.4286
    """
    if steps < 1:
        raise HwsimError(f"attack steps must be >= 1, got {steps}")
    return min(1.25 * eps, eps + 4 / 255) / steps


def cw_margin_loss(logits: torch.Tensor, y: torch.Tensor, kappa: float = 50.0) -> torch.Tensor:
    """Per-sample Carlini-Wagner loss ``-max(z_y - max_{j != y} z_j + kappa, 0)`` (at most 0).

    Larger is more adversarial (the attack ascends it). Its gradient is that of ``max_{j != y} z_j - z_y`` for
    every sample until the sample is misclassified by a margin of ``kappa``, and zero beyond: a sample that
    is already wrong by ``kappa`` stops, a correctly classified one never does. ``kappa = 50`` is the common
    PGD-CW setting (e.g. Bag of Tricks for AT).

    >>> cw_margin_loss(torch.tensor([[2.0, 5.0, 1.0], [0.0, 60.0, 3.0]]), torch.tensor([1, 0])).tolist()
    [-53.0, 0.0]
    """
    true = logits.gather(1, y[:, None]).squeeze(1)
    others = logits.masked_fill(F.one_hot(y, logits.shape[1]).bool(), float("-inf"))
    return (others.max(dim=1).values - true - kappa).clamp(max=0)  # = -max(z_y - z_other + kappa, 0)


def dlr_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-sample difference-of-logits-ratio loss of Croce and Hein (2020), the loss of APGD-DLR.

    ``-(z_y - max_{j != y} z_j) / (z_(1) - z_(3) + 1e-12)`` with ``z_(k)`` the k-th largest logit; needs at
    least 3 classes. Invariant to shifting and scaling the logits.
    """
    ordered = logits.sort(dim=1).values
    true = logits.gather(1, y[:, None]).squeeze(1)
    others = logits.masked_fill(F.one_hot(y, logits.shape[1]).bool(), float("-inf"))
    return -(true - others.max(dim=1).values) / (ordered[:, -1] - ordered[:, -3] + 1e-12)


def _per_sample_loss(logits: torch.Tensor, y: torch.Tensor, loss: LossName) -> torch.Tensor:
    if loss == "ce":
        return F.cross_entropy(logits.float(), y, reduction="none")
    if loss == "cw":
        return cw_margin_loss(logits.float(), y)
    return dlr_loss(logits.float(), y)


def eot_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss: LossName = "ce",
                 eot: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Input gradient of the summed loss and the per-sample loss, both averaged over ``eot`` forwards.

    Every forward draws the model's noise afresh, so for a randomised model this is the Monte-Carlo estimate
    of ``grad E[loss]`` (EOT); for a deterministic model ``eot > 1`` only repeats the same gradient.
    """
    grad = torch.zeros_like(x)
    total = torch.zeros(len(x), device=x.device)
    for _ in range(eot):
        x_in = x.detach().requires_grad_(True)
        value = _per_sample_loss(model(x_in), y, loss)
        (g,) = torch.autograd.grad(value.sum(), x_in)
        grad += g
        total += value.detach()
    return grad / eot, total / eot


def _check(eps: float, step_size: float, steps: int, loss: str, eot: int = 1) -> None:
    if not 0 <= eps <= 1:
        raise HwsimError(f"eps must be in [0, 1] (a fraction of 1, e.g. 8/255), got {eps}")
    if step_size < 0:
        raise HwsimError(f"step_size must be >= 0, got {step_size}")
    if steps < 0:
        raise HwsimError(f"attack steps must be >= 0, got {steps}")
    if loss not in _LOSSES:
        raise HwsimError(f"unknown attack loss {loss!r}; valid: {', '.join(_LOSSES)}")
    check_count("eot (noise draws per gradient)", eot)


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
    eot: int = 1,
    snapshots: dict[int, torch.Tensor] | None = None,
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
        loss: ``"ce"`` (cross-entropy), ``"cw"`` (CW margin) or ``"dlr"``.
        trace: if given, the summed attack loss at the start of each step is appended (for tests/diagnostics;
            with ``eot > 1`` the mean over the draws).
        eot: noise draws whose gradients are averaged at every step (1: the plain attack).
        snapshots: if given, the iterate after ``j`` steps is stored under every key ``j`` it holds (1 <= j <=
            steps): PGD-j from the same start and draws is that iterate, so a longer attack yields a shorter one's
            result on the way (:mod:`hwsim.train.sanity` gets PGD-K from its PGD-5K run).

    Returns:
        Adversarial images, detached, within the eps ball around ``x`` and in [0, 1].
    """
    _check(eps, step_size, steps, loss, eot)
    x = x.detach()
    if random_start:
        x_adv = (x + torch.empty_like(x).uniform_(-eps, eps)).clamp_(0, 1)
    else:
        x_adv = x.clone()
    for step in range(steps):
        grad, value = eot_gradient(model, x_adv, y, loss, eot)
        if trace is not None:
            trace.append(float(value.sum()))
        with torch.no_grad():
            x_adv = x_adv.detach() + step_size * grad.sign()
            x_adv = torch.min(torch.max(x_adv, x - eps), x + eps).clamp_(0, 1)
        if snapshots is not None and step + 1 in snapshots:
            snapshots[step + 1] = x_adv.detach().clone()
    return x_adv.detach()


def fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float = 8 / 255, eot: int = 1) -> torch.Tensor:
    """FGSM (Goodfellow et al.): one signed-gradient step of size ``eps`` from ``x`` (no random start).

    Identical to ``pgd(..., step_size=eps, steps=1, random_start=False)``.
    """
    return pgd(model, x, y, eps=eps, step_size=eps, steps=1, random_start=False, loss="ce", eot=eot)


def cw_pgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float = 8 / 255,
    step_size: float = 2 / 255,
    steps: int = 20,
    random_start: bool = True,
    eot: int = 1,
) -> torch.Tensor:
    """PGD on the CW margin loss (the "CW-k" attack of the robustness literature)."""
    return pgd(model, x, y, eps=eps, step_size=step_size, steps=steps, random_start=random_start, loss="cw",
               eot=eot)


def apgd_checkpoints(steps: int) -> list[int]:
    """The iteration counts after which APGD decides whether to halve its step, as AutoAttack computes them.

    The paper (Croce and Hein 2020, Sec. 3.2) sets checkpoints at ``ceil(p_j N)`` with p_0 = 0, p_1 = 0.22,
    p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06); AutoAttack's ``autopgd_base.py`` (which this follows)
    uses whole iteration counts instead: a first window of ``max(floor(0.22 N), 1)`` iterations, each next
    window ``max(floor(0.03 N), 1)`` shorter, never shorter than ``max(floor(0.06 N), 1)``. Computed in
    integers, so no float sum moves a checkpoint (for N = 100: 22, 41, 57, 70, 80, 87, 93, 99).

    >>> apgd_checkpoints(100)
    [22, 41, 57, 70, 80, 87, 93, 99]
    >>> apgd_checkpoints(20)[:5]
    [4, 7, 9, 10, 11]
    """
    window, shortest, shrink = max(22 * steps // 100, 1), max(6 * steps // 100, 1), max(3 * steps // 100, 1)
    points, at = [], 0
    while at + window <= steps:
        at += window
        points.append(at)
        window = max(window - shrink, shortest)
    return points


def apgd_halve(loss_steps: torch.Tensor, end: int, window: int, rho: float, reduced_last: torch.Tensor,
               best_at_last: torch.Tensor, best: torch.Tensor) -> torch.Tensor:
    """APGD's step-halving rule at a checkpoint (Croce and Hein 2020, Eq. 4; AutoAttack's ``check_oscillation``).

    ``loss_steps`` (N, B) holds the loss after every iteration, rows not yet reached 0; the checkpoint closes
    the ``window`` iterations ending at row ``end``. A sample's step is halved when the loss rose over its row
    before at most ``rho * window`` times in the window (``<=``, as AutoAttack), or when its step was not
    halved at the last checkpoint and its best loss has not risen since (``best_at_last >= best``). The
    first window's first iteration is compared with row -1 of the table, which is still 0 there (not with
    the loss at the starting point), exactly as AutoAttack does.
    """
    rises = torch.zeros_like(best)
    for back in range(window):
        rises += (loss_steps[end - back] > loss_steps[end - back - 1]).float()
    return (rises <= window * rho) | (~reduced_last & (best_at_last >= best))


def _eot_last(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss: LossName,
              eot: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The input gradient averaged over ``eot`` forwards, with the per-sample loss and the logits of the
    last forward only (AutoAttack averages the gradient alone)."""
    grad = torch.zeros_like(x)
    for _ in range(eot):
        x_in = x.detach().requires_grad_(True)
        logits = model(x_in)
        value = _per_sample_loss(logits, y, loss)
        (g,) = torch.autograd.grad(value.sum(), x_in)
        grad += g
    return grad / eot, value.detach(), logits.detach()


def apgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float = 8 / 255,
    steps: int = 100,
    loss: LossName = "ce",
    eot: int = 1,
    rho: float = 0.75,
) -> torch.Tensor:
    """L-infinity Auto-PGD (Croce and Hein 2020), as APGD-CE / APGD-DLR in fra31/auto-attack.

    Follows ``APGDAttack.attack_single_run`` of AutoAttack's ``autopgd_base.py`` (Linf): a random start
    ``x + eps t / (max|t| + 1e-12)`` with t uniform in [-1, 1] (drawn with ``torch.rand`` on the CPU
    generator, clipped to [0, 1]); step size 2 eps per sample; momentum 0.75 from the second iteration on;
    at the checkpoints of :func:`apgd_checkpoints`, :func:`apgd_halve` decides which samples halve their step,
    and those restart from their best point with its gradient (momentum is kept: the next step's momentum
    term is the best point minus the iterate before the last step, as in AutoAttack). With ``eot > 1`` the
    input gradient is the mean over ``eot`` forwards, each with its own noise draw, while the loss that picks
    the best point and drives the halving, and the prediction that marks a sample fooled, come from the last
    of those forwards alone, as in AutoAttack ('rand' version: ``eot_iter = 20``).

    Returns per sample the last iterate the model misclassified (AutoAttack's ``x_best_adv``: the random start
    counts, a later misclassified iterate replaces it). Deliberate differences from AutoAttack, stated in the
    README: (1) a sample never misclassified gets its highest-loss iterate (``x_best``), where AutoAttack
    returns the clean image; on a deterministic model both are classified correctly, so RA is the same, and
    on a randomised one :func:`hwsim.train.scoring.score` rescores the candidate on its own noise draws, where
    the highest-loss point is the stronger one; (2) every sample given is attacked: the caller (``score``)
    passes only samples still robust, where AutoAttack's ``perturb`` drops those its own clean forward
    misclassifies; (3) no seeding here: the random start comes from the caller's generator (hwsim seeds once
    per attack, AutoAttack reseeds before each of APGD-CE and APGD-DLR). Detached, within the eps ball and
    in [0, 1].
    """
    _check(eps, 0.0, steps, loss, eot)
    x = x.detach()
    shape = (-1, *([1] * (x.dim() - 1)))
    t = (2 * torch.rand(x.shape) - 1).to(x.device)
    x_adv = (x + eps * (t / (t.flatten(1).abs().amax(1).view(shape) + 1e-12))).clamp(0, 1)

    def project(z: torch.Tensor) -> torch.Tensor:
        return torch.min(torch.max(z, x - eps), x + eps).clamp(0, 1)

    grad, value, logits = _eot_last(model, x_adv, y, loss, eot)
    fooled = logits.argmax(1) != y
    x_fooled = x_adv.clone()
    best_loss, x_best, grad_best = value.clone(), x_adv.clone(), grad.clone()
    step = torch.full((len(x),), 2.0 * eps, device=x.device).view(shape)
    loss_steps = torch.zeros(steps, len(x), device=x.device)
    checkpoints = set(apgd_checkpoints(steps))
    last_check = 0
    best_at_check, reduced = best_loss.clone(), torch.ones(len(x), dtype=torch.bool, device=x.device)
    x_prev = x_adv
    for i in range(steps):
        with torch.no_grad():
            momentum = x_adv - x_prev
            x_prev = x_adv
            z = project(x_adv + step * grad.sign())
            a = 0.75 if i > 0 else 1.0  # the first step has no momentum, but goes through the same rounding
            x_adv = project(x_adv + (z - x_adv) * a + momentum * (1 - a))
        grad, value, logits = _eot_last(model, x_adv, y, loss, eot)
        with torch.no_grad():
            wrong = logits.argmax(1) != y
            fooled |= wrong
            x_fooled[wrong] = x_adv[wrong]
            loss_steps[i] = value
            improved = value > best_loss
            x_best[improved], grad_best[improved] = x_adv[improved], grad[improved]
            best_loss = torch.where(improved, value, best_loss)
            if i + 1 in checkpoints:
                halve = apgd_halve(loss_steps, i, i + 1 - last_check, rho, reduced, best_at_check, best_loss)
                reduced, best_at_check, last_check = halve, best_loss.clone(), i + 1
                step = torch.where(halve.view(shape), step / 2, step)
                x_adv[halve], grad[halve] = x_best[halve], grad_best[halve]
    return torch.where(fooled.view(shape), x_fooled, x_best).detach()


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
