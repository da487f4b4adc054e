"""Training algorithms: each decides what a batch becomes, through the step protocol of SPEC 6.1.

The training loop (:func:`hwsim.train.trainer.train`) exists once; an algorithm is the only thing that
differs between PGD-AT, FLOAT, OAT and the others. It registers itself with :func:`register_algorithm` and is
then selectable by name from the CLI. Sparse learning (masks), the slimmable width loop and BulletTrain are
not algorithms: they compose with every algorithm (see :mod:`hwsim.train.protocol`).

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
from hwsim.train.protocol import Hooks, StepContext
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

    def run(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, **overrides: Any) -> torch.Tensor:
        """PGD-k from a random start with the model in ``mode`` and parameter gradients off.

        ``overrides`` replace any of pgd's keyword arguments (``steps``, ``step_size``, ``loss``...)."""
        options = {"eps": self.eps, "step_size": self.step_size, "steps": self.steps, **overrides}
        with attack_context(model, self.mode):
            return pgd(model, x, y, **options)


class Algorithm(Hooks):
    """Base class of a training algorithm: it owns what a batch becomes (SPEC 6.1).

    The default :meth:`train_step` is the shape every loss-based algorithm shares: for each width of the
    slimmable width loop (one width for a non-slim model) compute :meth:`loss` at that width (attacks
    generated at that width), back-propagate it (gradients accumulate), then take one optimizer step. A loss
    algorithm only writes :meth:`loss`; an algorithm with another shape (Free AT's replays) overrides
    :meth:`train_step`. ``clean_knobs`` / ``robust_knobs`` are where the loop measures validation CA and RA.
    """

    name: str = ""
    clean_knobs: dict[str, Any] = {}
    robust_knobs: dict[str, Any] = {}

    def __init__(self, attack: AttackSettings) -> None:
        self.attack = attack

    def train_step(self, ctx: StepContext, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Train on one batch; returns the batch's loss (detached, summed over widths) for the log."""
        total = x.new_zeros((), dtype=torch.float64)
        for _ in ctx.each_width():
            loss = self.loss(ctx, x, y)
            ctx.backward(loss)
            total = total + loss.detach().double()
        ctx.optimizer_step()
        return total

    def loss(self, ctx: StepContext, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The scalar loss of a batch at the current width (forwards through ``ctx.forward``)."""
        raise NotImplementedError(f"{type(self).__name__} defines neither loss() nor train_step()")


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

    lambda = 1 is Madry's PGD-AT. ``noise_lambda`` (FLOAT paper Fig. 3's ablation) trains a noise-conditioned
    model with its noise on at lambda_n = ``noise_lambda`` (clean and adversarial forwards and the attack
    alike); None leaves the model's knobs as they are (a plain model has none).
    """

    def __init__(self, attack: AttackSettings, lambda_: float = 1.0, noise_lambda: float | None = None) -> None:
        super().__init__(attack)
        if not 0 <= lambda_ <= 1:
            raise HwsimError(f"pgd-at lambda must be in [0, 1], got {lambda_}")
        if noise_lambda is not None and not 0 <= noise_lambda <= 1:
            raise HwsimError(f"noise lambda must be in [0, 1], got {noise_lambda}")
        self.lambda_ = lambda_
        self.noise_lambda = noise_lambda
        knobs = {} if noise_lambda is None else {"lambda_n": noise_lambda}
        self.clean_knobs = self.robust_knobs = knobs

    def loss(self, ctx: StepContext, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with ctx.knobs(**self.robust_knobs):
            total = x.new_zeros(())
            if self.lambda_ < 1:  # a clean forward only when it carries weight
                total = total + (1 - self.lambda_) * F.cross_entropy(ctx.forward(x), y)
            if self.lambda_ > 0:
                x_adv = ctx.attack(self.attack, x, y)
                total = total + self.lambda_ * F.cross_entropy(ctx.forward(x_adv), y)
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

    def loss(self, ctx: StepContext, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        half = x.shape[0] // 2
        if half == 0:
            raise HwsimError("float needs batches of at least 2 images (half clean, half adversarial)")
        with ctx.knobs(**self.clean_knobs):
            loss_c = F.cross_entropy(ctx.forward(x[:half]), y[:half])
        with ctx.knobs(**self.robust_knobs):
            x_adv = ctx.attack(self.attack, x[half:], y[half:])
            loss_a = F.cross_entropy(ctx.forward(x_adv), y[half:])
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

    def loss(self, ctx: StepContext, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        lam = sample_oat_lambdas(x.shape[0], self.lambdas).to(x.device)
        n_zero = int((lam == 0).sum())
        with ctx.knobs(lambda_n=lam):
            loss_c = F.cross_entropy(ctx.forward(x), y, reduction="none")
        loss_a = torch.zeros_like(loss_c)
        if n_zero < x.shape[0]:
            lam_adv = lam[n_zero:]
            with ctx.knobs(lambda_n=lam_adv):
                x_adv = ctx.attack(self.attack, x[n_zero:], y[n_zero:])
                adv = F.cross_entropy(ctx.forward(x_adv), y[n_zero:], reduction="none")
            loss_a = torch.cat([loss_a[:n_zero], adv])
        return ((1 - lam) * loss_c + lam * loss_a).mean()
