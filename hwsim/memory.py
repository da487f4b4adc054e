"""Weight memory from per-tensor terms: the arithmetic of :func:`hwsim.count.memory_bytes`, importable without
torch so that the layer-shape cache (:mod:`hwsim.shapecache`) computes memory for any hardware from stored terms.
"""

from __future__ import annotations

from hwsim.hardware import HardwareConfig


def memory_from_terms(terms: list[tuple[int, int | None, int]], active_groups: dict[str, int], hw: HardwareConfig,
                      *, include_bn: bool = False) -> int:
    """Bytes of :func:`hwsim.count.memory_bytes` from :func:`hwsim.count.memory_terms` (stored conv / linear
    tensors) and the active parameter groups (FiLM and `other` stored dense; BN and alpha only if asked)."""
    bits = 0
    for weights, nnz, bias in terms:
        if hw.sparse_storage == "bitmap" and nnz is not None:
            bits += nnz * hw.b_w + weights
        else:
            bits += weights * hw.b_w
        bits += bias * hw.b_w
    bits += (active_groups["film"] + active_groups["other"]) * hw.b_w
    if include_bn:
        bits += (active_groups["bn"] + active_groups["alpha"]) * hw.b_w
    return -(-bits // 8)
