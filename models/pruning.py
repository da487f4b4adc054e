"""FLOATS masks: global irregular (magnitude) or channel (input-channel F-norm) pruning at density d.

Prunable layers are the masked ones (every conv and linear but the first layer the input reaches, which sees
raw pixels and holds < 0.1% of the weights, and the layer that writes the logits). Masks are full-width 0/1
float buffers ``weight_mask``; a channel of a linear layer is one of its input features.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from hwsim.errors import HwsimError

GRANULARITIES = ("irregular", "channel")


def _kth_smallest(scores: torch.Tensor, k: int) -> torch.Tensor:
    """The ``k``-th smallest (0-based) of a 1-D float tensor, which is reordered in place.

    numpy's in-place introselect is O(P) like ``torch.kthvalue`` and about twice as fast on tens of millions
    of weights (it neither copies nor returns an index).
    """
    values = scores.float().cpu().numpy()
    values.partition(k)
    return torch.tensor(values[k], dtype=scores.dtype, device=scores.device)


def prunable_convs(model: nn.Module) -> list[nn.Module]:
    """The convs that carry a ``weight_mask`` buffer, in module order."""
    return [m for m in model.modules() if isinstance(getattr(m, "weight_mask", None), torch.Tensor)]


@torch.no_grad()
def prune_(model: nn.Module, density: float, granularity: str = "irregular") -> nn.Module:
    """Recompute every ``weight_mask`` in place from the current weights; returns ``model``.

    ``irregular``: keep the ``round(density * P)`` largest ``|theta|`` over all prunable weights (P of them),
    so the kept count is exact. ``channel``: rank input channels of all prunable convs globally by
    ``f_c = ||theta[:, c]||_F^2`` (FLOATS-c, paper Sec. 3.2; input features of linear layers alike) and keep
    whole channels in rank order while the kept weight count stays <= ``density * P``; the count falls short
    by less than one channel's weights.
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
        keep = int(round(density * total))
        if keep == 0:
            raise HwsimError(f"density {density:g} keeps none of the {total:,} prunable weights (at least "
                             f"{0.5 / total:.3g} keeps one)")
        if keep >= total:
            for m in convs:
                m.weight_mask.fill_(1.0)
            return model
        scores = torch.empty(total, dtype=convs[0].weight.dtype, device=convs[0].weight.device)
        offset = 0
        for m in convs:  # |theta| written straight into one buffer (no per-layer copies to concatenate)
            torch.abs(m.weight.detach().flatten(), out=scores[offset: offset + m.weight.numel()])
            offset += m.weight.numel()
        threshold = _kth_smallest(scores, total - keep)
        del scores
        # strictly above the threshold survive; ties at it are filled in index order (module order, then the
        # weight's flat index) so that exactly ``keep`` weights survive
        above = [m.weight.detach().abs() > threshold for m in convs]
        ties_left = keep - sum(int(a.sum()) for a in above)
        for m, kept in zip(convs, above):
            if ties_left > 0:
                ties = (m.weight.detach().abs() == threshold).flatten().nonzero().squeeze(1)[:ties_left]
                kept.view(-1)[ties] = True
                ties_left -= len(ties)
            m.weight_mask.copy_(kept)
        return model
    # channel granularity: one score per (layer, input channel), size = C_out * k * k weights
    scores, sizes, owners = [], [], []
    for i, m in enumerate(convs):
        w = m.weight.detach()
        f = w.pow(2).sum(dim=tuple(d for d in range(w.dim()) if d != 1))  # per input channel / input feature
        scores.append(f)
        sizes.append(torch.full_like(f, m.weight[:, 0].numel()))
        owners += [(i, c) for c in range(f.numel())]
    order = torch.argsort(torch.cat(scores), descending=True)
    cum = torch.cumsum(torch.cat(sizes)[order], 0)
    kept = order[cum <= density * total + 1e-6]
    if kept.numel() == 0:
        smallest = int(torch.cat(sizes).min())
        raise HwsimError(f"density {density:g} keeps no whole input channel of the {total:,} prunable weights "
                         f"(the smallest channel holds {smallest:,} weights: density >= {smallest / total:.3g})")
    for m in convs:
        m.weight_mask.zero_()
    for idx in kept.tolist():
        i, c = owners[idx]
        convs[i].weight_mask[:, c] = 1.0
    return model
