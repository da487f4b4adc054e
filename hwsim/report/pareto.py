"""Pareto frontiers of accuracy vs cost.

Conventions, the same in every function here:

- One cost column, lower is better; one or more accuracy columns, higher is better.
- Point ``a`` dominates point ``b`` when ``a`` is no worse in every objective and strictly better in at least
  one. The frontier is the set of points that no other point dominates.
- Identical points (equal cost and equal accuracies) do not dominate each other, so **all of them are kept**:
  two runs that land on the same optimal point are both optimal, and dropping one silently would hide a run.
  A point tied with a frontier point in cost but worse in accuracy is dominated and dropped.
- Rows with a missing value (NaN) in the cost or an accuracy are never on the frontier (a reference point
  without a published cost, for instance); they are neither dominating nor dominated.
- Comparisons are exact (no tolerance): the numbers come from the same table, so equal means equal.

The 2-D case (one accuracy) is a sort plus one sweep, O(n log n); the joint case (two or more accuracies)
compares every pair in blocks, O(n^2) time and O(block * n) memory, ample for report-sized tables.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from hwsim.errors import HwsimError

__all__ = ["pareto_front", "pareto_mask"]

_BLOCK = 1024  # rows compared at once in the joint case; bounds memory at _BLOCK x n booleans


def pareto_mask(cost: np.ndarray, gains: np.ndarray) -> np.ndarray:
    """Boolean mask of the non-dominated points.

    Args:
        cost: shape (n,), lower is better.
        gains: shape (n,) or (n, k), higher is better.

    Returns:
        Boolean array of shape (n,), True for points on the frontier (see the module conventions: identical
        points are all kept; NaN rows are never on it).

    >>> pareto_mask(np.array([1.0, 2.0, 2.0, 3.0]), np.array([10.0, 10.0, 12.0, 11.0])).tolist()
    [True, False, True, False]
    """
    cost = np.asarray(cost, dtype=float)
    gains = np.asarray(gains, dtype=float)
    if gains.ndim == 1:
        gains = gains[:, None]
    if cost.ndim != 1 or gains.ndim != 2 or gains.shape[0] != cost.shape[0]:
        raise HwsimError(f"pareto_mask needs cost of shape (n,) and gains of shape (n, k); got {cost.shape} "
                         f"and {gains.shape}")
    finite = ~np.isnan(cost) & ~np.isnan(gains).any(axis=1)
    mask = np.zeros(cost.shape[0], dtype=bool)
    idx = np.flatnonzero(finite)
    if idx.size == 0:
        return mask
    if gains.shape[1] == 1:
        mask[idx] = _front_2d(cost[idx], gains[idx, 0])
    else:
        mask[idx] = _front_nd(cost[idx], gains[idx])
    return mask


def _front_2d(cost: np.ndarray, gain: np.ndarray) -> np.ndarray:
    """O(n log n): sort by cost up then gain down; a point survives iff it has the best gain of its cost group
    and that gain beats every strictly cheaper point."""
    order = np.lexsort((-gain, cost))
    c, g = cost[order], gain[order]
    new_group = np.empty(c.size, dtype=bool)
    new_group[0] = True
    new_group[1:] = c[1:] != c[:-1]
    group = np.cumsum(new_group) - 1
    group_best = g[new_group]  # sorted gain-down inside a group, so its first row holds its best gain
    # best gain among strictly cheaper groups: running max shifted by one group
    cheaper_best = np.concatenate(([-np.inf], np.maximum.accumulate(group_best)[:-1]))
    keep_sorted = (g == group_best[group]) & (group_best[group] > cheaper_best[group])
    keep = np.empty_like(keep_sorted)
    keep[order] = keep_sorted
    return keep


def _front_nd(cost: np.ndarray, gains: np.ndarray) -> np.ndarray:
    """O(n^2) in blocks: i is dominated if some j is no worse everywhere and strictly better somewhere."""
    obj = np.column_stack([-cost, gains])  # every objective "higher is better"
    n = obj.shape[0]
    dominated = np.zeros(n, dtype=bool)
    for start in range(0, n, _BLOCK):
        block = obj[start:start + _BLOCK]  # candidates i
        ge = (obj[None, :, :] >= block[:, None, :]).all(axis=2)  # [i, j]: j no worse than i
        gt = (obj[None, :, :] > block[:, None, :]).any(axis=2)  # [i, j]: j strictly better somewhere
        dominated[start:start + _BLOCK] = (ge & gt).any(axis=1)
    return ~dominated


def pareto_front(df: pd.DataFrame, cost: str = "memory_bytes",
                 maximize: str | Sequence[str] = ("ca", "ra")) -> pd.DataFrame:
    """The non-dominated rows of ``df``: ``cost`` lower is better, every column of ``maximize`` higher is better.

    With one accuracy column (``maximize="ca"``) this is the 2-D frontier; with several (the default
    ``("ca", "ra")``) it is the joint frontier. Identical points are all kept; rows with NaN in any of the
    columns are never on the frontier (module docstring). A pure function: ``df`` is not modified.

    Returns:
        The frontier rows with their original index, sorted by cost up, then by the first accuracy down.

    Raises:
        HwsimError: a named column is not in ``df``.
    """
    gains = [maximize] if isinstance(maximize, str) else list(maximize)
    if not gains:
        raise HwsimError("pareto_front needs at least one column to maximize")
    missing = [c for c in [cost, *gains] if c not in df.columns]
    if missing:
        raise HwsimError(f"pareto_front: column(s) {', '.join(missing)} not in the table; "
                         f"columns are: {', '.join(map(str, df.columns))}")
    mask = pareto_mask(df[cost].to_numpy(dtype=float), df[gains].to_numpy(dtype=float))
    front = df.loc[mask]
    return front.sort_values([cost, gains[0]], ascending=[True, False], kind="mergesort")
