"""Every layer record as the GEMMs a systolic array runs, with the geometry a conv-form topology needs.

The GEMMs themselves are :func:`hwsim.systolic.layer_gemms`' (SPEC 3.2: a conv is g GEMMs (H_o W_o, C_o / g,
k^2 C_i / g); FLOAT's noise pass one more streamed row; OAT's FiLM ``film_mlp1`` (1, 2C, d), ``film_mlp2``
(1, 2C, 2C), ``film_affine`` (C H_o W_o, 1, 1)), so that what is exported is what hwsim costs. This module
only unrolls a GEMM run ``count`` times into one row per group or product, and keeps a plain conv's kernel,
stride and output size so that it can be written as a convolution.

Records are :class:`hwsim.trace.records.LayerRecord` or the same fields read back from the shape cache.

>>> from hwsim.trace.records import LayerRecord
>>> conv = LayerRecord("c", "conv", k=3, stride=1, groups=1, c_in=64, c_out=64, h_out=32, w_out=32,
...                    params=36864, nonzero_params=36864, weight_nonzero=36864, c_in_eff=64, c_out_eff=64,
...                    conditioning="film", film_dim=1, film_channels=64)
>>> [(g.part, g.m, g.n, g.k) for g in layer_gemms(conv)]
[('conv', 1024, 64, 576), ('film_mlp1', 1, 128, 1), ('film_mlp2', 1, 128, 128), ('film_affine', 65536, 1, 1)]
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from hwsim import systolic
from hwsim.trace.records import LayerRecord


@dataclass(frozen=True)
class Gemm:
    """One GEMM on the array: ``m`` streamed rows x ``k`` reduction -> ``n`` columns (SPEC 3.2's M, N, K).

    ``layer``: the hwsim layer (record name); ``part``: the layer's kind (``conv``, ``linear``, ``matmul``) or
    ``film_mlp1``, ``film_mlp2``, ``film_affine``; ``index``: which group or product (0 for the others);
    ``noise``: m includes FLOAT's noise row. ``conv_form``: a plain 2-D conv, written as a convolution with its
    kernel ``kernel_h`` x ``kernel_w``, strides ``stride_h``, ``stride_w``, dilations ``dilation_h``,
    ``dilation_w``, output ``h_out`` x ``w_out`` and ``channels`` (input channels per group)."""

    layer: str
    part: str
    m: int
    n: int
    k: int
    index: int = 0
    noise: bool = False
    conv_form: bool = False
    kernel_h: int = 1
    kernel_w: int = 1
    stride_h: int = 1
    stride_w: int = 1
    dilation_h: int = 1
    dilation_w: int = 1
    h_out: int = 1
    w_out: int = 1
    channels: int = 1


def as_record(record) -> LayerRecord:
    """A :class:`LayerRecord` of ``record`` (the shape cache gives its fields as a plain namespace)."""
    return record if isinstance(record, LayerRecord) else LayerRecord(**vars(record))


def _geometry(record) -> tuple[int, int, int, int, int, int] | None:
    """(kernel_h, kernel_w, stride_h, stride_w, dilation_h, dilation_w) of a 2-D conv that is not transposed;
    None for any other layer. Reads the per-axis fields of the records where they have them (``kernel``,
    ``strides``, ``dilation``), else the square ``k`` and ``stride``."""
    if record.kind != "conv" or getattr(record, "transposed", False):
        return None
    kernel = tuple(getattr(record, "kernel", ()) or ())
    if kernel and len(kernel) != 2:
        return None  # Conv1d / Conv3d: written as its GEMM
    kh, kw = kernel or (record.k, record.k)
    sh, sw = tuple(getattr(record, "strides", ()) or ()) or (record.stride, record.stride)
    dh, dw = tuple(getattr(record, "dilation", ()) or ()) or (1, 1)
    return kh, kw, sh, sw, dh, dw


def layer_gemms(record) -> list[Gemm]:
    """The GEMMs of one layer record in the order they run (the layer, then its FiLM); none for a layer pruned
    to no weight (it does not run, as in the delay model)."""
    record = as_record(record)
    if record.kind != "matmul" and record.weight_nonzero == 0:
        return []
    shape = record.shape()
    noise = shape.formula == "eq8"
    geometry = _geometry(record)
    kh, kw, sh, sw, dh, dw = geometry or (1, 1, 1, 1, 1, 1)
    out = []
    for g in systolic.layer_gemms(shape):
        part = record.kind if g.part == "layer" else g.part
        plain_conv = part == "conv" and not noise and geometry is not None
        for index in range(g.count):
            out.append(Gemm(record.name, part, g.m, g.n, g.k, index=index, noise=noise and g.part == "layer",
                            conv_form=plain_conv, kernel_h=kh, kernel_w=kw, stride_h=sh, stride_w=sw,
                            dilation_h=dh, dilation_w=dw, h_out=shape.h_out, w_out=shape.w_out,
                            channels=shape.c_in // shape.groups))
    return out


def model_gemms(records: Iterable) -> list[Gemm]:
    """Every GEMM of a traced model, layer by layer."""
    return [gemm for record in records for gemm in layer_gemms(record)]
