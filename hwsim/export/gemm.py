"""Every layer record as the GEMMs a systolic array runs (SPEC 3.2), for the exporters. Pure Python: no torch.

A conv of kernel k, effective (channel-pruned, slimmed) channels C_i -> C_o in g groups and an H_o x W_o output
is g GEMMs of ``M = H_o W_o`` streamed rows, ``N = C_o / g`` columns and ``K = k^2 C_i / g`` reduction; a linear
layer over P positions is (P, C_o, C_i); an activation product ``[b, N, K] @ [b, K, M]`` is b GEMMs (N, M, K).
The variants add work (SPEC 3.2): FLOAT's noise pass is one more streamed row, so a noise-conditioned layer is
the GEMM (M + 1, N, K); a layer owning a FiLM(d, C) is followed by ``film_mlp1`` (1, 2C, d), ``film_mlp2``
(1, 2C, 2C) and the elementwise affine ``film_affine`` (C M, 1, 1), which is how SCALE-Sim maps an elementwise op.

The records are read by attribute (``name``, ``kind``, ``k``, ``stride``, ``groups``, ``c_in``/``c_out``,
``c_in_eff``/``c_out_eff``, ``h_out``, ``w_out``, ``weight_nonzero``, ``conditioning``, ``film_dim``,
``film_channels``): a :class:`hwsim.trace.records.LayerRecord` or the same fields read back from the shape cache.

>>> from types import SimpleNamespace as R
>>> conv = R(name="c", kind="conv", k=3, stride=1, groups=1, c_in=64, c_out=64, c_in_eff=64, c_out_eff=64,
...          h_out=32, w_out=32, weight_nonzero=36864, conditioning="film", film_dim=1, film_channels=64)
>>> [(g.part, g.m, g.n, g.k) for g in layer_gemms(conv)]
[('conv', 1024, 64, 576), ('film_mlp1', 1, 128, 1), ('film_mlp2', 1, 128, 128), ('film_affine', 65536, 1, 1)]
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

#: What part of a hwsim layer a GEMM is: the layer itself (``conv``, ``linear``, ``matmul``; a FLOAT layer's
#: GEMM includes its noise row) or one of the FiLM's three steps.
PARTS = ("conv", "linear", "matmul", "film_mlp1", "film_mlp2", "film_affine")


@dataclass(frozen=True)
class Gemm:
    """One GEMM on the array: ``m`` streamed rows x ``k`` reduction -> ``n`` columns (SPEC 3.2's M, N, K).

    ``layer``: the hwsim layer (record name) it belongs to; ``part``: one of :data:`PARTS`; ``index``: which of
    a grouped conv's groups or a batched product's products (0 for the others). A conv GEMM keeps its
    geometry (``k``, ``stride``, ``h_out``, ``w_out``, input channels per group) so that a conv-form topology
    can write it as a convolution; ``conv_form`` is False for a GEMM that has no such geometry (linear, matmul,
    a FLOAT layer's M + 1 rows, the FiLM steps)."""

    layer: str
    part: str
    m: int
    n: int
    k: int
    index: int = 0
    noise: bool = False  # the extra streamed row of FLOAT's noise pass is included in m
    conv_form: bool = False
    kernel: int = 1
    stride: int = 1
    h_out: int = 1
    w_out: int = 1
    channels: int = 1  # input channels per group (conv_form only)

    @property
    def macs(self) -> int:
        return self.m * self.n * self.k


def _effective_channels(record) -> tuple[int, int]:
    """The channels that compute: channel-pruned ones dropped (dense grouped convs keep theirs), as
    :meth:`hwsim.trace.records.LayerRecord.shape` does."""
    if record.groups == 1 and record.kind != "matmul":
        return record.c_in_eff, record.c_out_eff
    return record.c_in, record.c_out


def computes(record) -> bool:
    """Whether the layer runs at all (a layer pruned to no weight is skipped, as in the delay model)."""
    return record.kind == "matmul" or record.weight_nonzero > 0


def layer_gemms(record) -> list[Gemm]:
    """The GEMMs of one layer record, in the order the layer runs them (the layer, then its FiLM)."""
    if not computes(record):
        return []
    c_in, c_out = _effective_channels(record)
    noise = record.conditioning == "noise"
    gemms: list[Gemm] = []
    if record.kind == "conv":
        g = record.groups
        m, n, k = record.h_out * record.w_out, c_out // g, record.k * record.k * (c_in // g)
        for index in range(g):
            gemms.append(Gemm(record.name, "conv", m + noise, n, k, index=index, noise=noise, conv_form=not noise,
                              kernel=record.k, stride=record.stride, h_out=record.h_out, w_out=record.w_out,
                              channels=c_in // g))
    elif record.kind == "linear":
        gemms.append(Gemm(record.name, "linear", record.h_out * record.w_out + noise, c_out, c_in, noise=noise))
    elif record.kind == "matmul":  # c_in = K, c_out = M, h_out = N, w_out = b (see LayerRecord)
        gemms.extend(Gemm(record.name, "matmul", record.h_out, c_out, c_in, index=i) for i in range(record.w_out))
    else:
        raise ValueError(f"layer {record.name!r}: unknown kind {record.kind!r}")
    if record.conditioning == "film":
        c, d, positions = record.film_channels, record.film_dim, record.h_out * record.w_out
        film = [("film_mlp1", 1, 2 * c, d), ("film_mlp2", 1, 2 * c, 2 * c), ("film_affine", c * positions, 1, 1)]
        gemms.extend(Gemm(record.name, part, m, n, k) for part, m, n, k in film if m and n and k)
    return gemms


def model_gemms(records: Iterable) -> list[Gemm]:
    """Every GEMM of a traced model, layer by layer."""
    return [gemm for record in records for gemm in layer_gemms(record)]
