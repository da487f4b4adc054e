"""Compute cycles of layers on a systolic array (SPEC 3.2): SCALE-Sim v3's stall-free schedule in closed form.

Every layer is one or more GEMMs ``(M x K) @ (K x N)``: M = H_o W_o output positions, N = C_o, K = k^2 C_i / g
(a grouped conv is g GEMMs of N = C_o / g; an activation x activation product ``[b, N, K] @ [b, K, M]`` is b
GEMMs). On an R x C array (``array_rows`` x ``array_cols``) SCALE-Sim v3 computes a GEMM in::

    ws (weight-stationary): ceil(K/R) ceil(N/C) (M + 2R + C - 2) - 1
    os (output-stationary): ceil(M/R) ceil(N/C) (K + R + C - 2) - 1
    is (input-stationary):  ceil(K/R) ceil(M/C) (N + 2R + C - 2) - 1

cycles: each of the ceil * ceil folds fills the array (R or 2R - 1 cycles of skew in), streams the moving
operand (M, K or N rows) and drains (C - 1 cycles), and the last fold's final cycle is not counted. The
variants add GEMMs of their own (:func:`layer_gemms`): FLOAT's noise pass is one more streamed row (the conv as
GEMM (M + 1, N, K)); OAT's FiLM is ``film_mlp1`` (1, 2C, d), ``film_mlp2`` (1, 2C, 2C) and the affine
``film_affine`` (C H_o W_o, 1, 1), which SCALE-Sim maps onto one PE (or ``ceil(C H_o W_o / vector_lanes)``
cycles on a vector unit beside the array when ``vector_lanes > 0``).

Pure functions of shapes (numpy only, no torch), vectorised over arrays of GEMMs and of array sizes.

>>> int(gemm_cycles(1024, 64, 576, 32, 32, "ws"))   # ResNet18 layer1.0.conv1 on a 32 x 32 ws array
40247
>>> int(gemm_cycles(64 * 1024, 1, 1, 32, 32, "ws"))  # its FiLM affine on one PE: +163% by itself
65629
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from hwsim.delay import LayerShape

DATAFLOWS = ("ws", "os", "is")
DATAFLOW_NAMES = {"ws": "weight-stationary", "os": "output-stationary", "is": "input-stationary"}
# (dimension folded over the rows, dimension folded over the columns, dimension streamed, rows of skew per fold)
_FOLDS = {"ws": ("k", "n", "m", 2), "os": ("m", "n", "k", 1), "is": ("k", "m", "n", 2)}


def _ceil_div(a, b):
    return -(-a // b)


def gemm_cycles(m, n, k, rows, cols, dataflow: str) -> np.ndarray:
    """SCALE-Sim v3 compute cycles of the GEMM ``(m x k) @ (k x n)`` on a ``rows x cols`` array.

    All numeric arguments broadcast together (int64); a GEMM with an empty dimension costs 0 cycles.

    >>> gemm_cycles(4, 4, 4, 4, 4, "ws").item(), gemm_cycles(4, 4, 4, 4, 4, "os").item()  # 1 fold: 4+8+4-2-1, 4+4+4-2-1
    (13, 9)
    """
    if dataflow not in _FOLDS:
        raise ValueError(f"dataflow {dataflow!r} must be one of {', '.join(DATAFLOWS)}")
    dims = {"m": np.asarray(m, dtype=np.int64), "n": np.asarray(n, dtype=np.int64),
            "k": np.asarray(k, dtype=np.int64)}
    rows, cols = np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)
    fold_r, fold_c, stream, skew = _FOLDS[dataflow]
    cycles = _ceil_div(dims[fold_r], rows) * _ceil_div(dims[fold_c], cols) * (
        dims[stream] + skew * rows + cols - 2) - 1
    empty = (dims["m"] == 0) | (dims["n"] == 0) | (dims["k"] == 0)
    return np.where(empty, 0, cycles)


@dataclass(frozen=True)
class Gemm:
    """One GEMM ``(m x k) @ (k x n)`` of a layer, run ``count`` times (groups, batched products).

    ``part``: ``layer`` (the conv, linear or product itself; for FLOAT with its noise row), ``film_mlp1``,
    ``film_mlp2`` or ``film_affine``. ``elementwise``: the FiLM affine, which runs on the vector lanes when the
    hardware has them.
    """

    part: str
    m: int
    n: int
    k: int
    count: int = 1
    elementwise: bool = False

    @property
    def macs(self) -> int:
        return self.count * self.m * self.n * self.k


def gemm_k(layer: LayerShape) -> int:
    """K = k^2 C_i / g, the reduction length of one of the layer's GEMMs: its weights per output channel
    (``weights // c_out``, so that it follows whatever kernel shape the layer records)."""
    return layer.weights // layer.c_out


def layer_gemms(layer: LayerShape) -> tuple[Gemm, ...]:
    """The GEMMs a layer runs on a systolic array (SPEC 3.2), by its formula.

    >>> from hwsim.delay import LayerShape
    >>> conv = LayerShape("c", "conv", k=3, c_in=64, c_out=64, h_out=32, w_out=32, formula="eq9",
    ...                   film_dim=1, film_channels=64)
    >>> [(g.part, g.m, g.n, g.k, g.count) for g in layer_gemms(conv)]
    [('layer', 1024, 64, 576, 1), ('film_mlp1', 1, 128, 1, 1), ('film_mlp2', 1, 128, 128, 1), ('film_affine', 65536, 1, 1, 1)]
    """
    if layer.formula == "matmul":  # LayerShape of b products [N, K] @ [K, M]: c_in = K, c_out = M, h_out = N, w_out = b
        return (Gemm("layer", layer.h_out, layer.c_out, layer.c_in, layer.w_out),)
    rows = layer.positions + (1 if layer.formula == "eq8" else 0)  # FLOAT: the noise pass is one more row
    gemms = [Gemm("layer", rows, layer.c_out // layer.groups, gemm_k(layer), layer.groups)]
    if layer.formula == "eq9":
        c, d = layer.film_channels, layer.film_dim
        gemms += [Gemm("film_mlp1", 1, 2 * c, d), Gemm("film_mlp2", 1, 2 * c, 2 * c),
                  Gemm("film_affine", c * layer.positions, 1, 1, elementwise=True)]
    return tuple(gemms)


def gemm_list_cycles(gemms: Sequence[Gemm], rows, cols, dataflow: str, vector_lanes=0) -> np.ndarray:
    """Total cycles of ``gemms`` on ``rows x cols`` arrays (broadcast), elementwise GEMMs on ``vector_lanes``
    lanes where that is > 0 (``ceil(m n k / lanes)`` cycles), else on the array as SCALE-Sim maps them."""
    rows, cols = np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)
    lanes = np.asarray(vector_lanes, dtype=np.int64)
    total = np.zeros(np.broadcast_shapes(rows.shape, cols.shape, lanes.shape), dtype=np.int64)
    for g in gemms:
        on_array = g.count * gemm_cycles(g.m, g.n, g.k, rows, cols, dataflow)
        if g.elementwise:
            on_lanes = g.count * _ceil_div(g.m * g.n * g.k, np.maximum(lanes, 1))
            total = total + np.where(lanes > 0, on_lanes, on_array)
        else:
            total = total + on_array
    return total


def layer_cycles(layer: LayerShape, rows: int, cols: int, dataflow: str, vector_lanes: int = 0) -> int:
    """Compute cycles of one layer (all its GEMMs, :func:`layer_gemms`) on a ``rows x cols`` array.

    >>> from hwsim.delay import LayerShape
    >>> layer_cycles(LayerShape("c", "conv", k=3, c_in=64, c_out=64, h_out=32, w_out=32, formula="eq8"),
    ...              32, 32, "ws")  # ceil(576/32) ceil(64/32) (1025 + 64 + 32 - 2) - 1
    40283
    """
    return int(gemm_list_cycles(layer_gemms(layer), rows, cols, dataflow, vector_lanes))


@dataclass(frozen=True)
class GemmArrays:
    """Every GEMM of a list of layers as int64 arrays (struct of arrays), with the layer each belongs to."""

    layer: np.ndarray
    m: np.ndarray
    n: np.ndarray
    k: np.ndarray
    count: np.ndarray
    elementwise: np.ndarray  # bool


def gemm_arrays(layers: Sequence[LayerShape]) -> GemmArrays:
    """The GEMMs of ``layers`` (:func:`layer_gemms`), flattened."""
    rows = [(i, g.m, g.n, g.k, g.count, g.elementwise) for i, layer in enumerate(layers) for g in layer_gemms(layer)]
    cols = list(zip(*rows)) if rows else [()] * 6
    ints = [np.array(c, dtype=np.int64) for c in cols[:5]]
    return GemmArrays(*ints, np.array(cols[5], dtype=bool))


def total_cycles_grid(gemms: GemmArrays, rows, cols, dataflow: str, vector_lanes=(0,)) -> np.ndarray:
    """Whole-model cycles for every (rows, cols, vector_lanes) of three 1-D value lists: shape (R, C, L).

    Exact in int64 and separable: a GEMM's cycles are ``a(R) b(C) (L + s R + C - 2) - 1`` with ``a``, ``b``
    the fold counts, so the sum over G GEMMs is two integer matrix products ``(R x G) @ (G x C)``, not an
    evaluation per GEMM x configuration. Elementwise GEMMs add ``ceil(m n k / lanes)`` per lane count > 0.
    """
    rows = np.asarray(rows, dtype=np.int64).reshape(-1)
    cols = np.asarray(cols, dtype=np.int64).reshape(-1)
    lanes = np.asarray(vector_lanes, dtype=np.int64).reshape(-1)
    fold_r, fold_c, stream, skew = _FOLDS[dataflow]
    dims = {"m": gemms.m, "n": gemms.n, "k": gemms.k}
    live = (gemms.m > 0) & (gemms.n > 0) & (gemms.k > 0)

    def part(select: np.ndarray) -> np.ndarray:  # (R, C) cycles of the selected GEMMs
        w = np.where(select & live, gemms.count, 0)
        a = _ceil_div(dims[fold_r][None, :], rows[:, None]) * w[None, :]  # (R, G), weighted by count
        b = _ceil_div(dims[fold_c][None, :], cols[:, None])  # (C, G)
        bs = b * dims[stream][None, :]
        folds, streamed = _exact_matmul(a, b.T), _exact_matmul(a, bs.T)  # (R, C): sums of count x folds (x M)
        return streamed + folds * (skew * rows[:, None] + cols[None, :] - 2) - int(w.sum())

    array_part = part(~gemms.elementwise)
    affine_on_array = part(gemms.elementwise)
    ops = gemms.count * gemms.m * gemms.n * gemms.k
    on_lanes = np.array([int(_ceil_div(ops[gemms.elementwise], max(lane, 1)).sum()) for lane in lanes.tolist()],
                        dtype=np.int64)
    affine = np.where(lanes[None, None, :] > 0, on_lanes[None, None, :], affine_on_array[:, :, None])
    return array_part[:, :, None] + affine


def _exact_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` of non-negative int64 matrices, exactly: through float64 BLAS (tens of times faster than numpy's
    integer matmul) when every sum is below 2**52, so that each partial sum, never above the final one, is an
    exactly representable integer; otherwise in int64."""
    if a.size == 0 or b.size == 0:
        return a @ b
    bound = float(a.max(axis=0).astype(np.float64) @ b.max(axis=1).astype(np.float64))  # >= every entry
    if bound < 2.0**52:
        return np.rint(a.astype(np.float64) @ b.astype(np.float64)).astype(np.int64)
    return a @ b
