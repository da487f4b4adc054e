"""Training algorithms: each turns (model, batch) into the loss of one optimisation step.

The training loop (:func:`hwsim.train.trainer.train`) exists once; an algorithm is the only thing that
differs between PGD-AT, FLOAT and OAT. New algorithms (floats, slimmable, fast, free, bullettrain) register
themselves with :func:`register_algorithm` and are then selectable by name from the CLI.

Attack generation for training follows the OAT reference: eval mode with parameter gradients off
(``AttackSettings.mode = "eval"``); ``"train"`` is available to match fast_adversarial-style practice, where
the attack's forward passes also update BN running statistics.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from hwsim.errors import HwsimError
from hwsim.train import _models
from hwsim.train.attacks import attack_context, pgd

# OAT's default training set of lambdas (OAT reference --lambda_choices).
OAT_LAMBDAS: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.4, 1.0)


@dataclass(frozen=True)
class AttackSettings:
    """The PGD attack used to generate training examples (eps, step_size as fractions of 1)."""

    eps: float = 8 / 255
    step_size: float = 2 / 255
    steps: int = 7
    mode: Literal["eval", "train"] = "eval"

    def run(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """PGD-k from a random start with the model in ``mode`` and parameter gradients off."""
        with attack_context(model, self.mode):
            return pgd(model, x, y, eps=self.eps, step_size=self.step_size, steps=self.steps)


class Algorithm:
    """Base class: ``loss(net, model, x, y)`` returns the scalar training loss of one batch.

    ``net`` is what the loss forward goes through (the model, or its DistributedDataParallel wrapper);
    ``model`` is the bare module, used for attacks and knobs. ``clean_knobs`` / ``robust_knobs`` are the knob
    settings at which the trainer measures validation CA and RA each epoch.
    """

    name: str = ""
    clean_knobs: dict[str, Any] = {}
    robust_knobs: dict[str, Any] = {}

    def __init__(self, attack: AttackSettings) -> None:
        self.attack = attack

    def loss(self, net: nn.Module, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


ALGORITHMS: dict[str, type[Algorithm]] = {}


def register_algorithm(name: str) -> Callable[[type[Algorithm]], type[Algorithm]]:
    """Class decorator: make an :class:`Algorithm` selectable as ``--algorithm name``."""

    def wrap(cls: type[Algorithm]) -> type[Algorithm]:
        if name in ALGORITHMS:
            raise ValueError(f"algorithm {name!r} registered twice")
        cls.name = name
        ALGORITHMS[name] = cls
        return cls

    return wrap


def create_algorithm(name: str, attack: AttackSettings, **options: Any) -> Algorithm:
    """Build a registered algorithm; unknown names raise HwsimError listing the valid ones."""
    if name not in ALGORITHMS:
        raise HwsimError(f"unknown algorithm {name!r}; valid: {', '.join(sorted(ALGORITHMS))}")
    return ALGORITHMS[name](attack, **options)


@register_algorithm("pgd-at")
class PGDAT(Algorithm):
    """PGD-AT (FLOAT paper Eq. 3): ``(1 - lambda) L(x) + lambda L(x_adv)`` with one fixed lambda.

    The model is used as it is (a plain model has no knobs); lambda = 1 is Madry's PGD-AT.
    """

    def __init__(self, attack: AttackSettings, lambda_: float = 1.0) -> None:
        super().__init__(attack)
        if not 0 <= lambda_ <= 1:
            raise HwsimError(f"pgd-at lambda must be in [0, 1], got {lambda_}")
        self.lambda_ = lambda_

    def loss(self, net: nn.Module, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        total = x.new_zeros(())
        if self.lambda_ < 1:  # a clean forward only when it carries weight
            total = total + (1 - self.lambda_) * F.cross_entropy(net(x), y)
        if self.lambda_ > 0:
            x_adv = self.attack.run(model, x, y)
            total = total + self.lambda_ * F.cross_entropy(net(x_adv), y)
        return total


@register_algorithm("float")
class FLOAT(Algorithm):
    """FLOAT (paper Algorithm 1): half clean at lambda = 0, half PGD-k adversarial at lambda = 1.

    The clean half runs with lambda_n = 0 (BN_C, noise off), the adversarial half, generated at lambda = 1,
    runs with lambda_n = 1 (BN_A, noise on; lambda_th = 0); loss ``0.5 L_C + 0.5 L_A``. The noise scales
    alpha are parameters of the model, so they are learned with the weights.
    """

    clean_knobs = {"lambda_n": 0.0, "lambda_th": 0.0}
    robust_knobs = {"lambda_n": 1.0, "lambda_th": 0.0}

    def loss(self, net: nn.Module, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        half = x.shape[0] // 2
        if half == 0:
            raise HwsimError("float needs batches of at least 2 images (half clean, half adversarial)")
        with _models.knobs(model, **self.clean_knobs):
            loss_c = F.cross_entropy(net(x[:half]), y[:half])
        with _models.knobs(model, **self.robust_knobs):
            x_adv = self.attack.run(model, x[half:], y[half:])
            loss_a = F.cross_entropy(net(x_adv), y[half:])
        return 0.5 * loss_c + 0.5 * loss_a


def sample_oat_lambdas(batch_size: int, choices: Sequence[float] = OAT_LAMBDAS) -> torch.Tensor:
    """Per-sample lambdas as the OAT reference samples them (``element_wise_sample_lambda``, uniform probs).

    The first ``ceil(B / len(choices))`` samples get lambda = 0 (so about 1/len(choices) of each batch, the
    share a uniform draw would give, but without its variance), the rest are drawn uniformly from the
    non-zero choices. Zeros first, so BN_C / BN_A routing splits the batch in one place. Uses torch's global
    RNG (saved in checkpoints, so resumed runs draw the same lambdas).
    """
    nonzero = torch.tensor(sorted({float(c) for c in choices} - {0.0}))
    n_zero = math.ceil(batch_size / len(choices)) if 0.0 in choices else 0
    n_zero = min(n_zero, batch_size)
    if len(nonzero) == 0:
        return torch.zeros(batch_size)
    picks = nonzero[torch.randint(len(nonzero), (batch_size - n_zero,))]
    return torch.cat([torch.zeros(n_zero), picks])


@register_algorithm("oat")
class OAT(Algorithm):
    """OAT (Wang et al. 2020): per-sample lambda from S_lambda, loss ``mean((1 - lambda) L_C + lambda L_A)``.

    As in the reference's efficient mode, adversarial examples are generated only for the samples with
    lambda > 0, each at its own lambda (per-sample lambda tensor through ``set_knobs``).
    """

    clean_knobs = {"lambda_n": 0.0}
    robust_knobs = {"lambda_n": 1.0}

    def __init__(self, attack: AttackSettings, lambdas: Sequence[float] = OAT_LAMBDAS) -> None:
        super().__init__(attack)
        bad = [v for v in lambdas if not 0 <= v <= 1]
        if not lambdas or bad:
            raise HwsimError(f"oat lambdas must be a non-empty set of values in [0, 1], got {list(lambdas)}")
        self.lambdas = tuple(float(v) for v in lambdas)

    def loss(self, net: nn.Module, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        lam = sample_oat_lambdas(x.shape[0], self.lambdas).to(x.device)
        n_zero = int((lam == 0).sum())
        with _models.knobs(model, lambda_n=lam):
            loss_c = F.cross_entropy(net(x), y, reduction="none")
        loss_a = torch.zeros_like(loss_c)
        if n_zero < x.shape[0]:
            lam_adv = lam[n_zero:]
            with _models.knobs(model, lambda_n=lam_adv):
                x_adv = self.attack.run(model, x[n_zero:], y[n_zero:])
                adv = F.cross_entropy(net(x_adv), y[n_zero:], reduction="none")
            loss_a = torch.cat([loss_a[:n_zero], adv])
        return ((1 - lam) * loss_c + lam * loss_a).mean()
