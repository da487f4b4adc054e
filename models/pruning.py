"""FLOATS masks: global irregular (magnitude) or channel (input-channel F-norm) pruning at density d.

Prunable convs are the masked ones (every conv but the stem: the stem sees raw pixels and holds < 0.1% of
the weights, and the classifier is never pruned). Masks are full-width 0/1 float buffers ``weight_mask``.
"""

from __future__ import annotations

import torch
from torch import nn

from hwsim.errors import HwsimError

GRANULARITIES = ("irregular", "channel")


def prunable_convs(model: nn.Module) -> list[nn.Module]:
    """The convs that carry a ``weight_mask`` buffer, in module order."""
    return [m for m in model.modules() if isinstance(getattr(m, "weight_mask", None), torch.Tensor)]


@torch.no_grad()
def prune_(model: nn.Module, density: float, granularity: str = "irregular") -> nn.Module:
    """Recompute every ``weight_mask`` in place from the current weights; returns ``model``.

    ``irregular``: keep the ``round(density * P)`` largest ``|theta|`` over all prunable weights (P of them),
    so the kept count is exact. ``channel``: rank input channels of all prunable convs globally by
    ``f_c = ||theta[:, c]||_F^2`` (FLOATS-c, paper Sec. 3.2) and keep whole channels in rank order while the
    kept weight count stays <= ``density * P``; the count falls short by less than one channel's weights.
    A layer may lose all its channels at low density (the paper's global ranking allows it).
    """
    if not isinstance(density, (int, float)) or isinstance(density, bool) or not 0.0 < density <= 1.0:
        raise HwsimError(f"density must lie in (0, 1], got {density!r}")
    if granularity not in GRANULARITIES:
        raise HwsimError(f"unknown pruning granularity {granularity!r}; valid: {', '.join(GRANULARITIES)}")
    convs = prunable_convs(model)
    if not convs:
        raise HwsimError("model has no prunable convs (no weight_mask buffers); build a floats-* variant")
    total = sum(m.weight.numel() for m in convs)
    if granularity == "irregular":
        scores = torch.cat([m.weight.detach().abs().flatten() for m in convs])
        keep = int(round(density * total))
        if keep >= total:
            flat = torch.ones_like(scores)
        else:
            # kthvalue is O(P) where topk/sort of tens of millions of weights is slow; ties at the
            # threshold are filled in index order so exactly ``keep`` weights survive
            threshold = torch.kthvalue(scores, total - keep + 1).values
            flat = (scores > threshold).float()
            ties = (scores == threshold).nonzero().squeeze(1)
            flat[ties[: keep - int(flat.sum().item())]] = 1.0
        offset = 0
        for m in convs:
            n = m.weight.numel()
            m.weight_mask.copy_(flat[offset: offset + n].view_as(m.weight))
            offset += n
        return model
    # channel granularity: one score per (layer, input channel), size = C_out * k * k weights
    scores, sizes, owners = [], [], []
    for i, m in enumerate(convs):
        f = m.weight.detach().pow(2).sum(dim=(0, 2, 3))
        scores.append(f)
        sizes.append(torch.full_like(f, m.weight[:, 0].numel()))
        owners += [(i, c) for c in range(f.numel())]
    order = torch.argsort(torch.cat(scores), descending=True)
    cum = torch.cumsum(torch.cat(sizes)[order], 0)
    kept = order[cum <= density * total + 1e-6]
    for m in convs:
        m.weight_mask.zero_()
    for idx in kept.tolist():
        i, c = owners[idx]
        convs[i].weight_mask[:, c] = 1.0
    return model
