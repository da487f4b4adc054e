"""Sparse learning for masked (FLOATS) models: FLOAT paper Sec. 3.2 and supplement Algorithm 1, after sparse
momentum (Dettmers and Zettlemoyer 2019).

It is an extension of the step protocol (:class:`~hwsim.train.protocol.Hooks`), on whenever the model has
masks (``weight_mask`` buffers), so it composes with every training algorithm:

- **set-up**: masks start at global density ``d``: every prunable layer keeps about ``d n_l`` of its units
  (those of largest magnitude; ``floor(d n_l)``, plus one by largest remainder while the budget
  ``floor(d P)`` allows; P prunable weights). A per-layer start, unlike a global ranking of freshly
  initialised weights, never empties a layer whose initial weights happen to be small (wide layers).
- **after every optimizer step**: masked weights and their SGD momentum are set to zero in the model itself,
  so Eq. 5 (active weights <= d P) holds after every step and a checkpoint's weights are zero where its mask
  is. The growth statistic is updated first: the momentum SGD keeps for active weights, and for inactive
  ones the momentum SGD *would* have (``mu m + grad``; the mask gates a weight's value, not its gradient).
- **end of every epoch but the last**: each layer loses ``ceil(p a_l)`` (:func:`prune_count`) of its ``a_l``
  active units with the smallest magnitude; the same number of weights is regrown, spread over layers in
  proportion to each layer's mean momentum magnitude over its active weights (before pruning), each layer's
  part regrown where the momentum magnitude of its inactive units is largest (capped at what the layer has
  inactive); what the rounding leaves over goes to the largest inactive momenta anywhere. The prune rate
  ``p`` follows a cosine decay from ``p0`` (0.5): ``p(e) = p0 (1 + cos(pi (e - 1) / E)) / 2`` after epoch
  ``e`` of ``E``. Regrown weights start at zero, with zero momentum (a weight pruned and regrown in the same
  step keeps its value: it never left). No prune/regrow follows the last epoch, so the final model is trained.

Units are single weights for irregular masks (floats-i, floats-slim) and input channels for channel masks
(floats-c: unit ``c`` of a layer is ``theta[:, c]``, its magnitude the squared F-norm ``f_c`` and its
momentum score the F-norm of its momentum), so channel masks are always all-or-nothing per input channel.
Ties are broken by position (the lower index first), so every rank of a DDP run computes the same masks.
Where this differs from the sparse momentum reference (TimDettmers/sparse_learning) on purpose is listed in
the README (training, "Deliberate differences from the reference code").
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from hwsim.errors import HwsimError
from hwsim.train.options import SPARSE_OPTIONS, default
from hwsim.train.protocol import Hooks, StepContext

GRANULARITIES = ("irregular", "channel")


def masked_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` of every module with a ``weight_mask`` buffer (the prunable layers), in order."""
    return [(name, m) for name, m in model.named_modules()
            if isinstance(getattr(m, "weight_mask", None), torch.Tensor)]


def prune_rate(p0: float, epoch: int, epochs: int) -> float:
    """The cosine-decayed prune rate used after ``epoch`` (1-based) of ``epochs``.

    >>> prune_rate(0.5, 1, 10), round(prune_rate(0.5, 6, 10), 6)
    (0.5, 0.25)
    """
    return p0 * (1 + math.cos(math.pi * (epoch - 1) / epochs)) / 2


def prune_count(p: float, active: int) -> int:
    """Units a layer with ``active`` active units loses at prune rate ``p``: ``ceil(p active)`` of the float
    product, as ``num_remove`` in TimDettmers/sparse_learning (``sparselearning/funcs.py``, ``core.py``).

    The float product is the reference's own rounding: 0.07 x 100 is 7.000000000000001 there, so 8 units go
    (an exact-decimal or tolerance-shaved product would give 7).

    >>> prune_count(0.07, 100), prune_count(0.5, 7), prune_count(0.0, 50)
    (8, 4, 0)
    """
    return math.ceil(p * active)


@dataclass
class _Layer:
    """Unit view of one prunable layer: ``unit_size`` weights per unit, ``n_units`` units."""

    name: str
    module: nn.Module
    channel: bool

    @property
    def weight(self) -> torch.Tensor:
        return self.module.weight

    @property
    def n_units(self) -> int:
        return self.weight.shape[1] if self.channel else self.weight.numel()

    @property
    def unit_size(self) -> int:
        return self.weight[:, 0].numel() if self.channel else 1

    def unit_scores(self, tensor: torch.Tensor, squared: bool) -> torch.Tensor:
        """Per-unit magnitude of ``tensor``: |t| per weight, or the (squared) F-norm per input channel."""
        if not self.channel:
            return tensor.detach().abs().flatten().float()
        sq = tensor.detach().float().pow(2).sum(dim=(0, 2, 3))
        return sq if squared else sq.sqrt()

    def active_units(self) -> torch.Tensor:
        mask = self.module.weight_mask
        return (mask[0, :, 0, 0] if self.channel else mask.flatten()) > 0

    def set_units(self, active: torch.Tensor) -> None:
        mask = self.module.weight_mask
        if self.channel:
            mask.copy_(active.to(mask.dtype)[None, :, None, None].expand_as(mask))
        else:
            mask.copy_(active.to(mask.dtype).view_as(mask))


def _top(scores: torch.Tensor, candidates: torch.Tensor, k: int, largest: bool) -> torch.Tensor:
    """Indices of the ``k`` candidate units with the largest (smallest) score; ties: lower index first."""
    idx = candidates.nonzero().squeeze(1)
    if k <= 0 or idx.numel() == 0:
        return idx[:0]
    values = scores[idx]
    order = torch.sort(-values if largest else values, stable=True).indices
    return idx[order[:k]]


class SparseLearning(Hooks):
    """Prune-and-regrow sparse learning at global density ``density`` (see the module docstring)."""

    OPTIONS = SPARSE_OPTIONS  # the config field it uses (masked variants), declared in hwsim.train.options

    def __init__(self, density: float, granularity: str = "irregular", prune_rate: float = default("prune_rate")) -> None:
        if not 0 < density <= 1:
            raise HwsimError(f"density must lie in (0, 1], got {density}")
        if granularity not in GRANULARITIES:
            raise HwsimError(f"unknown granularity {granularity!r}; valid: {', '.join(GRANULARITIES)}")
        if not 0 <= prune_rate <= 1:
            raise HwsimError(f"prune rate must lie in [0, 1], got {prune_rate}")
        self.density, self.granularity, self.p0 = density, granularity, prune_rate
        self.layers: list[_Layer] = []
        self.momentum: dict[str, torch.Tensor] = {}
        self.budget = 0  # floor(d P): active weights never exceed it (Eq. 5)
        self._groups: dict[int, tuple[float, float]] = {}

    # -- set-up ----------------------------------------------------------------------------------------
    def setup(self, ctx: StepContext) -> None:
        self.attach(ctx.model)
        self.init_masks()
        self.apply(ctx.optimizer)

    def attach(self, model: nn.Module) -> None:
        """Find the prunable layers of ``model`` (no mask is changed)."""
        found = masked_layers(model)
        if not found:
            raise HwsimError("sparse learning needs a masked (floats-*) model; this one has no weight_mask")
        channel = self.granularity == "channel"
        self.layers = [_Layer(name, m, channel) for name, m in found]
        total = sum(layer.weight.numel() for layer in self.layers)
        self.budget = math.floor(self.density * total + 1e-9)
        self.momentum = {layer.name: torch.zeros_like(layer.weight) for layer in self.layers}

    @torch.no_grad()
    def init_masks(self) -> None:
        """Masks at global density d: each layer keeps its ``floor(d n_l)`` largest units, then one more unit
        goes to each layer in order of the largest remainder ``d n_l - floor(d n_l)`` while the budget
        ``floor(d P)`` allows (channel units of unequal sizes can leave the count short of the budget by less
        than the largest channel)."""
        scores = [layer.unit_scores(layer.weight, squared=True) for layer in self.layers]
        quotas = [self.density * layer.n_units for layer in self.layers]
        keep = [math.floor(q + 1e-9) for q in quotas]
        budget = self.budget - sum(k * layer.unit_size for k, layer in zip(keep, self.layers))
        for i in sorted(range(len(keep)), key=lambda i: (-(quotas[i] - keep[i]), i)):
            size = self.layers[i].unit_size
            if quotas[i] - keep[i] > 1e-9 and size <= budget and keep[i] < self.layers[i].n_units:
                keep[i] += 1
                budget -= size
        chosen = []
        for layer, k, score in zip(self.layers, keep, scores):
            active = torch.zeros(layer.n_units, dtype=torch.bool, device=score.device)
            active[_top(score, torch.ones_like(active), k, largest=True)] = True
            chosen.append(active)
        for layer, active in zip(self.layers, chosen):
            layer.set_units(active)

    def _fill(self, chosen: list[torch.Tensor], scores: list[torch.Tensor], budget: int) -> int:
        """Activate inactive units with the largest scores anywhere while their size fits ``budget``; returns
        the budget left (0 for single weights; under one channel's size for channels)."""
        if budget <= 0:
            return budget
        idx = [(~active).nonzero().squeeze(1) for active in chosen]
        values = torch.cat([s[i] for s, i in zip(scores, idx)])
        layer_of = torch.cat([torch.full_like(i, n) for n, i in enumerate(idx)])
        order = torch.sort(-values, stable=True).indices  # ties: earlier layer, then lower index
        offsets = [0]
        for i in idx:
            offsets.append(offsets[-1] + len(i))
        if self.granularity == "irregular":  # every unit is one weight: take the first `budget`
            picked = order[:budget]
            for n in range(len(chosen)):
                chosen[n][idx[n][picked[layer_of[picked] == n] - offsets[n]]] = True
            return budget - len(picked)
        for k in order.tolist():
            n = int(layer_of[k])
            size = self.layers[n].unit_size
            if size <= budget:
                chosen[n][idx[n][k - offsets[n]]] = True
                budget -= size
                if budget == 0:
                    break
        return budget

    # -- every step --------------------------------------------------------------------------------------
    @torch.no_grad()
    def apply(self, optimizer: torch.optim.Optimizer | None) -> None:
        """Zero the masked weights and their SGD momentum (Eq. 5 holds in the model itself)."""
        for layer in self.layers:
            mask = layer.module.weight_mask
            layer.weight.mul_(mask)
            state = optimizer.state.get(layer.weight, {}) if optimizer is not None else {}
            buf = state.get("momentum_buffer")
            if buf is not None:
                buf.mul_(mask)

    @torch.no_grad()
    def after_step(self, ctx: StepContext) -> None:
        if not ctx.step_skipped:  # a step AMP skipped has inf/NaN gradients: keep the growth statistic
            for layer in self.layers:
                grad = layer.weight.grad
                if grad is None:
                    continue
                mu, decay = self._hyper(ctx.optimizer, layer.weight)
                buf = ctx.optimizer.state.get(layer.weight, {}).get("momentum_buffer")
                active = layer.module.weight_mask > 0
                inactive_m = mu * self.momentum[layer.name] + grad  # masked weights are 0: no decay term
                active_m = buf if buf is not None else grad + decay * layer.weight
                self.momentum[layer.name] = torch.where(active, active_m, inactive_m)
        self.apply(ctx.optimizer)

    def _hyper(self, optimizer: torch.optim.Optimizer, weight: torch.Tensor) -> tuple[float, float]:
        """(momentum, weight decay) of the parameter group holding ``weight`` (looked up once per layer)."""
        key = id(weight)
        if key not in self._groups:
            group = next(g for g in optimizer.param_groups if any(p is weight for p in g["params"]))
            self._groups[key] = (group.get("momentum", 0.0), group.get("weight_decay", 0.0))
        return self._groups[key]

    # -- every epoch -----------------------------------------------------------------------------------------
    def end_epoch(self, ctx: StepContext, epoch: int) -> dict[str, Any]:
        metrics: dict[str, Any] = {"prune_rate": 0.0, "sparse_pruned": 0, "sparse_regrown": 0, "sparse_moved": 0}
        if epoch < ctx.epochs:
            p = prune_rate(self.p0, epoch, ctx.epochs)
            metrics.update(prune_rate=p, **self.prune_regrow(p))
            self.apply(ctx.optimizer)
        metrics.update(self.densities())
        return metrics

    @torch.no_grad()
    def prune_regrow(self, p: float) -> dict[str, int]:
        """One prune (fraction ``p`` of each layer's active units) and regrow of as many weights."""
        before = [layer.active_units() for layer in self.layers]
        # redistribution shares: mean momentum magnitude of each layer's active weights, before pruning
        shares = []
        for layer in self.layers:
            m = self.momentum[layer.name][layer.module.weight_mask > 0]
            shares.append(float(m.abs().mean()) if m.numel() else 0.0)
        total_share = sum(shares)
        after, removed = [], 0
        for layer, active in zip(self.layers, before):
            k = prune_count(p, int(active.sum()))
            drop = _top(layer.unit_scores(layer.weight, squared=True), active, k, largest=False)
            kept = active.clone()
            kept[drop] = False
            after.append(kept)
            removed += len(drop) * layer.unit_size
        growth = [layer.unit_scores(self.momentum[layer.name], squared=False) for layer in self.layers]
        regrown = 0
        for i, layer in enumerate(self.layers):
            quota = math.floor(removed * shares[i] / total_share) if total_share > 0 else 0
            units = min(quota // layer.unit_size, int((~after[i]).sum()))
            grow = _top(growth[i], ~after[i], units, largest=True)
            after[i][grow] = True
            regrown += len(grow) * layer.unit_size
        left = removed - regrown
        regrown += left - self._fill(after, growth, left)
        moved = 0
        for layer, old, new in zip(self.layers, before, after):
            moved += int((new & ~old).sum()) * layer.unit_size
            layer.set_units(new)
        active = sum(int(a.sum()) * layer.unit_size for a, layer in zip(after, self.layers))
        if active > self.budget:  # cannot happen: regrowth never exceeds what was pruned
            raise RuntimeError(f"sparse learning broke Eq. 5: {active} active weights > budget {self.budget}")
        return {"sparse_pruned": removed, "sparse_regrown": regrown, "sparse_moved": moved}

    def densities(self) -> dict[str, Any]:
        """Realised global density (active / prunable weights) and the density of every layer."""
        per_layer = {layer.name: float(layer.module.weight_mask.float().mean()) for layer in self.layers}
        active = sum(int(layer.module.weight_mask.count_nonzero()) for layer in self.layers)
        total = sum(layer.weight.numel() for layer in self.layers)
        return {"density": active / total, "active_weights": active, "layer_density": per_layer}

    # -- checkpoint ------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"momentum": {k: v.clone() for k, v in self.momentum.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name, value in state["momentum"].items():
            self.momentum[name].copy_(value)
