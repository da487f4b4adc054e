"""The step protocol between the one training loop and the algorithms (SPEC 6.1).

The loop (:func:`hwsim.train.trainer.train`) owns data, devices, DDP, mixed precision, schedules, validation,
checkpoints and metrics. What a batch becomes belongs to the algorithm: it gets a :class:`StepContext` and
decides how many forward and backward passes and optimizer steps to take, at which knobs. The context is
the only way to do those things, so that none of them is written twice and every pass is counted:

- :meth:`StepContext.forward` runs the (possibly DDP-wrapped) network and counts a forward sample-pass per
  image (a backward is then owed for the images forwarded with gradients on);
- :meth:`StepContext.backward` checks the loss is finite on every rank, scales it for AMP, back-propagates
  (gradients accumulate until the next optimizer step) and counts the owed backward passes;
- :meth:`StepContext.optimizer_step` steps the optimizer through the grad scaler, runs every ``after_step``
  hook (sparse learning re-applies its masks there) and clears the gradients;
- :meth:`StepContext.attack` runs a training attack and counts its passes as attack passes;
- :meth:`StepContext.each_width` is the slimmable width loop (one pass for a non-slim model).

Hooks (:class:`Hooks`): ``setup`` once the model and optimizer exist, ``after_step`` after every optimizer
step, ``end_epoch`` (may return extra metrics) and ``state_dict`` / ``load_state_dict`` (tensors and plain
numbers only: checkpoints load with ``weights_only=True``). An algorithm adds ``train_step``; extensions that
the variant or a flag turns on (masks: sparse learning; ``--bullettrain``) implement only the hooks and so
compose with every algorithm.

Pass counting convention (SPEC 6.3): one forward (backward) sample-pass is one image through the whole
network forwards (backwards) at the width active at the time; attack passes are the forward and backward
passes of attack iterations (a subset of all passes); validation is not counted.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from hwsim.errors import HwsimError

LEDGER_FIELDS = ("fwd_passes", "bwd_passes", "attack_fwd_passes", "attack_bwd_passes", "optimizer_steps")


@dataclass
class Ledger:
    """Sample-passes of one epoch's training, per width (``{width: count}``), and optimizer steps.

    ``train_macs`` = sum over widths of ``(fwd + 2 bwd) x forward MACs per image at that width`` (the usual
    convention that a backward pass costs two forward passes: gradients for activations and for weights).
    """

    fwd: defaultdict[float, int] = field(default_factory=lambda: defaultdict(int))
    bwd: defaultdict[float, int] = field(default_factory=lambda: defaultdict(int))
    attack_fwd: defaultdict[float, int] = field(default_factory=lambda: defaultdict(int))
    attack_bwd: defaultdict[float, int] = field(default_factory=lambda: defaultdict(int))
    optimizer_steps: int = 0

    def totals(self) -> dict[str, int]:
        return {"fwd_passes": sum(self.fwd.values()), "bwd_passes": sum(self.bwd.values()),
                "attack_fwd_passes": sum(self.attack_fwd.values()),
                "attack_bwd_passes": sum(self.attack_bwd.values()), "optimizer_steps": self.optimizer_steps}

    def train_macs(self, macs_per_image: dict[float, int]) -> int:
        widths = set(self.fwd) | set(self.bwd)
        return sum((self.fwd[w] + 2 * self.bwd[w]) * macs_per_image[w] for w in widths)


class Hooks:
    """The hooks the loop calls on an algorithm and on every extension (all optional)."""

    def setup(self, ctx: StepContext) -> None:
        """Once, after the model and optimizer exist and before a checkpoint is restored."""

    def after_step(self, ctx: StepContext) -> None:
        """After every optimizer step; gradients are still in ``.grad``."""

    def end_epoch(self, ctx: StepContext, epoch: int) -> dict[str, Any]:
        """After the last step of ``epoch`` (1-based), before validation; returns extra metrics."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """State saved in every checkpoint (tensors and plain numbers/containers only)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""


class StepContext:
    """What the loop lends an algorithm: the network, the optimizer step, knobs, attacks and the ledger.

    ``net`` is what training forwards go through (the model or its DDP wrapper); ``model`` is the bare
    module (attacks, knobs, masks). ``widths`` are the widths one batch trains (sorted S_f for slimmable
    models, else the model's one width); ``epochs`` the run's total.
    """

    def __init__(self, *, net: nn.Module, model: nn.Module, optimizer: torch.optim.Optimizer,
                 scaler: torch.amp.GradScaler, autocast: Callable[[], contextlib.AbstractContextManager],
                 widths: tuple[float, ...], epochs: int, world_size: int = 1,
                 set_knobs: Callable[..., contextlib.AbstractContextManager] | None = None) -> None:
        self.net, self.model, self.optimizer, self.scaler = net, model, optimizer, scaler
        self.autocast = autocast
        self.widths = tuple(sorted(widths))
        self.epochs = epochs
        self.world_size = world_size
        self._knobs = set_knobs
        self.hooks: list[Hooks] = []
        self.ledger = Ledger()
        self.epoch = 0
        self.step_index = 0
        self.width = max(self.widths)
        self._owed_bwd: defaultdict[float, int] = defaultdict(int)
        self.allocator: Any = None  # per-sample attack-step allocation (BulletTrain) when turned on
        self.stop_reason: str | None = None
        self.step_skipped = False  # whether the last optimizer step was skipped by the AMP grad scaler

    @classmethod
    def local(cls, model: nn.Module, optimizer: torch.optim.Optimizer | None = None, *, epochs: int = 1,
              hooks: tuple[Hooks, ...] = ()) -> StepContext:
        """A single-process, full-precision context for ``model`` (the library and tests use it); without an
        optimizer, a plain SGD (lr 0.1) stands in."""
        from hwsim.train import _models

        state = getattr(model, "hwsim_knobs", None)
        ctx = cls(net=model, model=model, optimizer=optimizer or torch.optim.SGD(model.parameters(), lr=0.1),
                  scaler=torch.amp.GradScaler("cuda", enabled=False), autocast=contextlib.nullcontext,
                  widths=tuple(state.widths) if state is not None else (1.0,), epochs=epochs,
                  set_knobs=_models.knobs if state is not None else None)
        ctx.hooks = list(hooks)
        return ctx

    # -- knobs ---------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def knobs(self, **settings: Any) -> Iterator[None]:
        """Set knobs (lambda_n, lambda_th, width) for a block; a model without knobs takes none."""
        settings = {k: v for k, v in settings.items() if v is not None}
        if not settings:
            yield
            return
        if self._knobs is None:
            raise HwsimError(f"this model has no knobs; cannot set {', '.join(settings)}")
        with self._knobs(self.model, **settings):
            yield

    def each_width(self) -> Iterator[float]:
        """The slimmable width loop (supplement Algorithm 2): yields each width of sorted S_f with that
        width selected (its switchable BNs, its weight slices); a non-slim model yields once."""
        if len(self.widths) == 1:
            self.width = self.widths[0]
            yield self.width
            return
        for width in self.widths:
            with self.knobs(width=width):
                self.width = width
                try:
                    yield width
                finally:
                    self.width = max(self.widths)

    # -- passes --------------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, *, net: nn.Module | None = None) -> torch.Tensor:
        """Logits of ``x`` through the training network under autocast; counts ``len(x)`` forward passes."""
        with self.autocast():
            logits = (net or self.net)(x)
        self.ledger.fwd[self.width] += len(x)
        if torch.is_grad_enabled():
            self._owed_bwd[self.width] += len(x)
        return logits

    def count_attack(self, batch: int, steps: int, extra_forwards: int = 0) -> None:
        """Record ``steps`` attack iterations over ``batch`` images (one forward and one backward each), and
        ``extra_forwards`` forwards per image without backward (TRADES's clean reference)."""
        n = batch * steps
        for table in (self.ledger.fwd, self.ledger.bwd, self.ledger.attack_fwd, self.ledger.attack_bwd):
            table[self.width] += n
        for table in (self.ledger.fwd, self.ledger.attack_fwd):
            table[self.width] += batch * extra_forwards

    def attack(self, settings: Any, x: torch.Tensor, y: torch.Tensor, **overrides: Any) -> torch.Tensor:
        """Run ``settings`` (an :class:`~hwsim.train.algorithms.AttackSettings`) on the bare model at the
        current knobs and count its passes; returns detached adversarial images."""
        with self.autocast():
            x_adv = settings.run(self.model, x, y, **overrides)
        self.count_attack(len(x), overrides.get("steps", settings.steps))
        return x_adv

    def backward(self, loss: torch.Tensor) -> None:
        """Back-propagate ``loss`` (AMP-scaled), accumulating gradients; a non-finite loss on any rank
        raises HwsimError naming the epoch and step."""
        bad = (~torch.isfinite(loss.detach())).float()
        if self.world_size > 1:
            import torch.distributed as dist

            dist.all_reduce(bad)
        if bool(bad > 0):
            raise HwsimError(f"loss is not finite at epoch {self.epoch}, step {self.step_index}; "
                             "lower --lr or check the data")
        self.scaler.scale(loss).backward()
        for width, n in self._owed_bwd.items():
            self.ledger.bwd[width] += n
        self._owed_bwd.clear()

    def optimizer_step(self) -> None:
        """One optimizer step on the accumulated gradients, then every ``after_step`` hook, then zero grads."""
        scale = self.scaler.get_scale() if self.scaler.is_enabled() else None
        self.scaler.step(self.optimizer)
        self.scaler.update()
        # a step AMP skipped (inf/NaN gradients) lowers the scale; hooks then keep their statistics
        self.step_skipped = scale is not None and self.scaler.get_scale() < scale
        self.ledger.optimizer_steps += 1
        for hook in self.hooks:
            hook.after_step(self)
        self.optimizer.zero_grad(set_to_none=True)
        self._owed_bwd.clear()  # forwards whose loss was never back-propagated owe nothing

    def update(self, loss: torch.Tensor) -> None:
        """``backward(loss)`` then ``optimizer_step()``: the one-pass case."""
        self.backward(loss)
        self.optimizer_step()

    def observe(self, adversarial_logits: torch.Tensor, y: torch.Tensor) -> None:
        """Hand the logits of a batch's training examples to the step allocator (BulletTrain's F_R)."""
        if self.allocator is not None:
            self.allocator.observe(adversarial_logits.detach(), y, self.width)

    def request_stop(self, reason: str) -> None:
        """Ask the loop to end the run after this epoch (e.g. catastrophic overfitting)."""
        self.stop_reason = reason

    def new_epoch(self, epoch: int) -> None:
        self.epoch, self.ledger = epoch, Ledger()
