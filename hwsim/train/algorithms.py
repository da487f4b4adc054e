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
from hwsim.train.options import ALGORITHM_DECLARATIONS, AttackDefaults, Option, default
from hwsim.train.protocol import Hooks, StepContext
from hwsim.train.attacks import attack_context, pgd
from hwsim.train.losses import mart_attack, mart_loss, trades_attack, trades_loss

# OAT's default training set of lambdas (OAT reference --lambda_choices; declared in hwsim.train.options).
OAT_LAMBDAS: tuple[float, ...] = ALGORITHM_DECLARATIONS["oat"].options[0].default


@dataclass(frozen=True)
class AttackSettings:
    """The PGD attack used to generate training examples (eps, step_size as fractions of 1)."""

    eps: float = AttackDefaults.eps  # the usual defaults (hwsim.train.options.AttackDefaults)
    step_size: float = AttackDefaults.step_size  # type: ignore[assignment]
    steps: int = AttackDefaults.steps
    mode: Literal["eval", "train"] = AttackDefaults.mode  # type: ignore[assignment]

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

    ``OPTIONS`` declares the options the algorithm uses (:class:`hwsim.train.options.Option`: config field,
    constructor keyword, default, type, range, help), ``BULLETTRAIN`` whether BulletTrain's per-sample steps
    compose with it and ``ATTACK`` the defaults of its training attack: the config's defaults, its range
    checks, the refusal of an option the chosen algorithm does not use and the trainer's construction of the
    algorithm all read them. The shipped algorithms take theirs from
    :data:`hwsim.train.options.ALGORITHM_DECLARATIONS` (:meth:`declare`), which the CLI reads without torch.
    """

    OPTIONS: tuple[Option, ...] = ()
    BULLETTRAIN: bool = False
    ATTACK: AttackDefaults = AttackDefaults()
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

    def loop_epochs(self, epochs: int) -> int:
        """Passes over the data that ``epochs`` (the config's) means for this algorithm (Free: fewer)."""
        return epochs

    # -- training examples -------------------------------------------------------------------------------
    def perturb(self, ctx: StepContext, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor | None = None,
                **overrides: Any) -> torch.Tensor:
        """The algorithm's training attack on ``x`` (rows ``idx`` of the batch the knobs were set for, None:
        all of it), counted in the ledger. ``overrides``: ``steps`` / ``step_size`` (BulletTrain)."""
        return ctx.attack(self.attack, x, y, **overrides)

    def adversarial(self, ctx: StepContext, x: torch.Tensor, y: torch.Tensor,
                    clean_logits: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Training examples for ``x`` and which rows were actually attacked (None: every row).

        Without BulletTrain every row gets the algorithm's attack. With it (``ctx.allocator``) each row gets
        the steps its class (outlier / boundary / robust, from the clean logits) is allotted; a row with 0
        steps keeps its clean image. Without ``clean_logits`` one no-grad forward in eval mode classifies.
        """
        allocator = ctx.allocator
        if allocator is None:
            return self.perturb(ctx, x, y), None
        if clean_logits is None:
            with torch.no_grad(), attack_context(ctx.model, "eval"):
                clean_logits = ctx.forward(x, net=ctx.model)
        plan = allocator.allocate(clean_logits.detach(), y, ctx.width, self.attack)
        x_adv = x.clone()
        attacked = torch.zeros(len(x), dtype=torch.bool, device=x.device)
        for rows, steps, step_size in plan:
            if steps > 0 and len(rows):
                x_adv[rows] = self.perturb(ctx, x[rows], y[rows], rows, steps=steps, step_size=step_size)
                attacked[rows] = True
        return x_adv, attacked

    def forward_rows(self, ctx: StepContext, x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """Training forward of the rows ``rows`` of the batch the knobs were set for."""
        return ctx.forward(x)

    def adversarial_logits(self, ctx: StepContext, x_adv: torch.Tensor, y: torch.Tensor,
                           attacked: torch.Tensor | None, clean_logits: torch.Tensor | None) -> torch.Tensor:
        """Logits of the training examples: one forward over the attacked rows; rows left clean reuse
        ``clean_logits`` (with their gradient) when the algorithm has them, else go through the forward."""
        if attacked is None or clean_logits is None:
            logits = ctx.forward(x_adv)
        elif bool(attacked.all()):
            logits = ctx.forward(x_adv)
        else:
            logits = clean_logits.clone()
            rows = attacked.nonzero().squeeze(1)
            if len(rows):
                logits[rows] = self.forward_rows(ctx, x_adv[rows], rows).to(logits.dtype)
        ctx.observe(logits, y)
        return logits


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


def declaration(name: str) -> tuple[tuple[Option, ...], bool, AttackDefaults]:
    """``OPTIONS, BULLETTRAIN, ATTACK`` of a shipped algorithm, from its entry in
    :data:`hwsim.train.options.ALGORITHM_DECLARATIONS` (the one place they are written)."""
    entry = ALGORITHM_DECLARATIONS[name]
    return entry.options, entry.bullettrain, entry.attack


@register_algorithm("pgd-at")
class PGDAT(Algorithm):
    """PGD-AT (FLOAT paper Eq. 3): ``(1 - lambda) L(x) + lambda L(x_adv)`` with one fixed lambda.

    lambda = 1 is Madry's PGD-AT. ``noise_lambda`` (FLOAT paper Fig. 3's ablation) trains a noise-conditioned
    model with its noise on at lambda_n = ``noise_lambda`` (clean and adversarial forwards and the attack
    alike); None leaves the model's knobs as they are (a plain model has none).
    """

    OPTIONS, BULLETTRAIN, ATTACK = declaration("pgd-at")

    def __init__(self, attack: AttackSettings, lambda_: float = default("pgd_lambda"),
                 noise_lambda: float | None = default("noise_lambda")) -> None:
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
            clean = None
            if self.lambda_ < 1:  # a clean forward only when it carries weight
                clean = ctx.forward(x)
                total = total + (1 - self.lambda_) * F.cross_entropy(clean, y)
            if self.lambda_ > 0:
                x_adv, attacked = self.adversarial(ctx, x, y, clean)
                logits = self.adversarial_logits(ctx, x_adv, y, attacked, clean)
                total = total + self.lambda_ * F.cross_entropy(logits, y)
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

    OPTIONS, BULLETTRAIN, ATTACK = declaration("float")

    def loss(self, ctx: StepContext, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        half = x.shape[0] // 2
        if half == 0:
            raise HwsimError("float needs batches of at least 2 images (half clean, half adversarial)")
        with ctx.knobs(**self.clean_knobs):
            loss_c = F.cross_entropy(ctx.forward(x[:half]), y[:half])
        with ctx.knobs(**self.robust_knobs):
            x_adv, attacked = self.adversarial(ctx, x[half:], y[half:])
            loss_a = F.cross_entropy(self.adversarial_logits(ctx, x_adv, y[half:], attacked, None), y[half:])
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

    OPTIONS, BULLETTRAIN, ATTACK = declaration("oat")

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
            clean = ctx.forward(x)
            loss_c = F.cross_entropy(clean, y, reduction="none")
        loss_a = torch.zeros_like(loss_c)
        if n_zero < x.shape[0]:
            self._lam_adv = lam[n_zero:]
            with ctx.knobs(lambda_n=self._lam_adv):
                x_adv, attacked = self.adversarial(ctx, x[n_zero:], y[n_zero:], clean[n_zero:])
                logits = self.adversarial_logits(ctx, x_adv, y[n_zero:], attacked, clean[n_zero:])
                adv = F.cross_entropy(logits, y[n_zero:], reduction="none")
            loss_a = torch.cat([loss_a[:n_zero], adv])
        return ((1 - lam) * loss_c + lam * loss_a).mean()

    def perturb(self, ctx: StepContext, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor | None = None,
                **overrides: Any) -> torch.Tensor:
        if idx is None:
            return ctx.attack(self.attack, x, y, **overrides)
        with ctx.knobs(lambda_n=self._lam_adv[idx]):  # a subset of rows takes its own lambdas
            return ctx.attack(self.attack, x, y, **overrides)

    def forward_rows(self, ctx: StepContext, x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        with ctx.knobs(lambda_n=self._lam_adv[rows]):
            return ctx.forward(x)


def probe_pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, step_size: float,
              steps: int) -> torch.Tensor:
    """Fast AT's early-stop probe: PGD-``steps`` from a uniform start in the eps ball (clipped to [0, 1]) where
    each step moves only the samples the model still classifies correctly, ending when none is (as
    ``attack_pgd`` in locuslab/fast_adversarial ``CIFAR10/utils.py``, one restart). The model's mode is the
    caller's."""
    x = x.detach()
    x_adv = (x + torch.empty_like(x).uniform_(-eps, eps)).clamp_(0, 1)
    for _ in range(steps):
        with torch.enable_grad():
            x_adv.requires_grad_(True)
            logits = model(x_adv)
            still = logits.argmax(1) == y
            if not bool(still.any()):
                break
            (grad,) = torch.autograd.grad(F.cross_entropy(logits.float(), y), x_adv)
        with torch.no_grad():
            moved = x_adv + step_size * grad.sign()
            moved = torch.min(torch.max(moved, x - eps), x + eps).clamp_(0, 1)
            x_adv = torch.where(still.view(-1, *[1] * (x.dim() - 1)), moved, x_adv.detach())
    return x_adv.detach()


@register_algorithm("fast")
class Fast(Algorithm):
    """Fast AT (Wong et al. 2020, "Fast is better than free"): FGSM from a uniform random start.

    delta ~ U(-eps, eps), one signed step of ``step_factor x eps`` (1.25 eps), projected to the eps ball and the
    image to [0, 1]; loss CE on the result. ``early_stop``: after every epoch, PGD-5 accuracy on the epoch's
    first training batch falling by more than 20 points from the previous epoch's stops the run (catastrophic
    overfitting) and keeps the previous epoch's weights as best. As locuslab/fast_adversarial
    (``CIFAR10/train_fgsm.py``, ``attack_pgd`` in ``CIFAR10/utils.py``) the probe runs in train mode (batch
    statistics; its forwards update BN running statistics), from a uniform start, each step moving only the
    samples still classified correctly (none left: it stops), and the test is ``acc - previous < -0.2`` in
    fractions, the previous starting at 0. Validation uses the configured PGD attack.
    """

    PROBE_STEPS = 5
    DROP = 20.0  # percentage points
    OPTIONS, BULLETTRAIN, ATTACK = declaration("fast")

    def __init__(self, attack: AttackSettings, step_factor: float = default("fast_step"),
                 early_stop: bool = default("early_stop")) -> None:
        super().__init__(attack)
        if not step_factor > 0:
            raise HwsimError(f"fast step factor must be > 0, got {step_factor}")
        self.fgsm = AttackSettings(attack.eps, step_factor * attack.eps, 1, attack.mode)
        self.early_stop = early_stop
        self.probe: tuple[torch.Tensor, torch.Tensor] | None = None  # this epoch's first batch
        self.probe_acc: float | None = None  # last epoch's probe accuracy, a fraction
        self._probe_epoch: int | None = None  # the epoch whose first batch `probe` is

    def perturb(self, ctx: StepContext, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor | None = None,
                **overrides: Any) -> torch.Tensor:
        return ctx.attack(self.fgsm, x, y, **overrides)

    def loss(self, ctx: StepContext, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.early_stop and self._probe_epoch != ctx.epoch:  # the first batch of every epoch
            self.probe = (x.detach().clone(), y.detach().clone())
            self._probe_epoch = ctx.epoch
        return F.cross_entropy(ctx.forward(self.perturb(ctx, x, y)), y)

    def end_epoch(self, ctx: StepContext, epoch: int) -> dict[str, Any]:
        if not self.early_stop or self.probe is None:
            return {}
        device = next(ctx.model.parameters()).device
        x, y = self.probe[0].to(device), self.probe[1].to(device)
        with attack_context(ctx.model, "train"):
            x_adv = probe_pgd(ctx.model, x, y, self.attack.eps, self.attack.step_size, self.PROBE_STEPS)
            with torch.no_grad():
                correct = int((ctx.model(x_adv).argmax(1) == y).sum())
        acc = correct / len(y)  # a fraction, compared as the reference compares it (prev_robust_acc from 0)
        previous = 0.0 if self.probe_acc is None else self.probe_acc
        if acc - previous < -self.DROP / 100.0:
            ctx.request_stop(f"catastrophic overfitting after epoch {epoch}: PGD-{self.PROBE_STEPS} accuracy on the "
                             f"epoch's first training batch fell from {100 * previous:.1f}% to {100 * acc:.1f}%")
        self.probe_acc = acc
        return {"probe_pgd_acc": 100.0 * acc}

    def state_dict(self) -> dict[str, Any]:
        # checkpoints are written after end_epoch: the next epoch takes its own first batch, so no probe is kept
        return {"probe_fraction": self.probe_acc}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "probe_fraction" in state:
            self.probe_acc = state["probe_fraction"]
        else:  # a checkpoint from before issue 22 kept the accuracy in percent
            self.probe_acc = None if state.get("probe_acc") is None else state["probe_acc"] / 100.0


@register_algorithm("free")
class Free(Algorithm):
    """Free AT (Shafahi et al. 2019): every batch replayed ``replays`` (m) times; each replay's one forward and
    one backward give both the weight step and the perturbation update ``delta <- clip(delta + eps sign(g_x),
    -eps, eps)``. delta persists across batches (and checkpoints); the configured epochs E mean ceil(E / m)
    passes over the data, so the optimizer takes as many steps as E epochs of PGD-AT would.

    As mahyarnajibi/FreeAdversarialTraining (``main_free.py``): the clamp of ``x + delta`` to [0, 1] is inside
    the graph, so g_x is 0 (and delta does not move) where ``x + delta`` leaves [0, 1]; delta is one buffer
    of the largest batch seen, a smaller batch (the last of an epoch) using and updating its first rows and
    leaving the others as they were. Unlike the reference, a replay whose input gradient is not finite (a
    step the AMP grad scaler skips) leaves delta unchanged, so delta never becomes NaN.
    """

    OPTIONS, BULLETTRAIN, ATTACK = declaration("free")

    def __init__(self, attack: AttackSettings, replays: int = default("replays")) -> None:
        super().__init__(attack)
        if replays < 1:
            raise HwsimError(f"free needs replays >= 1, got {replays}")
        self.replays = replays
        self.delta: torch.Tensor | None = None

    def loop_epochs(self, epochs: int) -> int:
        return math.ceil(epochs / self.replays)

    def train_step(self, ctx: StepContext, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if len(ctx.widths) > 1:
            raise HwsimError("free does not train slimmable variants (its replays own the optimizer steps)")
        n = len(x)
        if self.delta is None or self.delta.shape[1:] != x.shape[1:]:  # the first batch, or other images
            self.delta = torch.zeros_like(x)
        self.delta = self.delta.to(device=x.device, dtype=x.dtype)
        if len(self.delta) < n:  # a larger batch than any before: new rows start at 0, the others are kept
            self.delta = torch.cat([self.delta, self.delta.new_zeros((n - len(self.delta), *x.shape[1:]))])
        total = x.new_zeros((), dtype=torch.float64)
        eps = self.attack.eps
        for _ in range(self.replays):
            noise = self.delta[:n].clone().requires_grad_(True)
            loss = F.cross_entropy(ctx.forward((x + noise).clamp(0, 1)), y)  # clamp in the graph: g = 0 outside
            ctx.backward(loss)
            grad = noise.grad
            if bool(torch.isfinite(grad).all()):  # an AMP-skipped step (inf/NaN) leaves delta as it was
                self.delta[:n] = (self.delta[:n] + eps * grad.sign()).clamp(-eps, eps)
            ctx.optimizer_step()
            total = total + loss.detach().double()
        return total / self.replays

    def state_dict(self) -> dict[str, Any]:
        return {} if self.delta is None else {"delta": self.delta.detach().cpu()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.delta = state.get("delta")


class _CleanAndAdversarial(Algorithm):
    """TRADES and MART: a clean forward with gradients, an attack, a loss of both logits."""

    def __init__(self, attack: AttackSettings, beta: float = default("beta")) -> None:
        super().__init__(attack)
        if not beta >= 0:
            raise HwsimError(f"{self.name} beta must be >= 0, got {beta}")
        self.beta = beta

    reference_forwards = 0  # extra no-grad forwards of the attack besides its steps

    def combine(self, clean: torch.Tensor, adv: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def inner_attack(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, step_size: float,
                     steps: int) -> torch.Tensor:
        raise NotImplementedError

    def perturb(self, ctx: StepContext, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor | None = None,
                **overrides: Any) -> torch.Tensor:
        steps = overrides.get("steps", self.attack.steps)
        step_size = overrides.get("step_size", self.attack.step_size)
        with attack_context(ctx.model, self.attack.mode), ctx.autocast():
            x_adv = self.inner_attack(ctx.model, x, y, step_size, steps)
        ctx.count_attack(len(x), steps, extra_forwards=self.reference_forwards)
        return x_adv

    def loss(self, ctx: StepContext, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if ctx.allocator is None:
            # as both references (yaodongyu/TRADES trades.py, YisenWang/MART mart.py): the attack first, with
            # the model in the attack's mode, then the training forwards of x and x' in train mode
            x_adv = self.perturb(ctx, x, y)
            clean = ctx.forward(x)
            adv = self.adversarial_logits(ctx, x_adv, y, None, clean)
        else:
            # BulletTrain (its Algorithm 2): the clean logits z come first, they decide each sample's steps,
            # and a sample left clean reuses them
            clean = ctx.forward(x)
            x_adv, attacked = self.adversarial(ctx, x, y, clean)
            adv = self.adversarial_logits(ctx, x_adv, y, attacked, clean)
        return self.combine(clean.float(), adv.float(), y)


@register_algorithm("trades")
class TRADES(_CleanAndAdversarial):
    """TRADES (Zhang et al. 2019): ``CE(f(x), y) + beta KL(f(x) || f(x'))``, x' by PGD on the KL from
    ``x + 0.001 N(0, 1)``; beta = 6 (the paper's CIFAR-10 setting)."""

    OPTIONS, BULLETTRAIN, ATTACK = declaration("trades")
    reference_forwards = 1  # the clean probabilities the KL is taken against (one forward, no backward)

    def inner_attack(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, step_size: float,
                     steps: int) -> torch.Tensor:
        return trades_attack(model, x, self.attack.eps, step_size, steps)

    def combine(self, clean: torch.Tensor, adv: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return trades_loss(clean, adv, y, self.beta)


@register_algorithm("mart")
class MART(_CleanAndAdversarial):
    """MART (Wang et al. 2020): boosted CE on x' + ``beta KL(f(x) || f(x')) (1 - f_y(x))``, x' by PGD on CE
    from ``x + 0.001 N(0, 1)``; beta = 6."""

    OPTIONS, BULLETTRAIN, ATTACK = declaration("mart")

    def inner_attack(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, step_size: float,
                     steps: int) -> torch.Tensor:
        return mart_attack(model, x, y, self.attack.eps, step_size, steps)

    def combine(self, clean: torch.Tensor, adv: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return mart_loss(clean, adv, y, self.beta)
