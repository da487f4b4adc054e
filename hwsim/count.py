"""Parameter, memory and MAC counts read from a :class:`~hwsim.trace.Trace` (SPEC 5).

Conventions, stated once: ``macs`` are multiply-accumulates of conv and linear layers (one MAC = one multiply
and one add, the FLOAT paper's Table 1 convention; FLOPs = 2 x MACs) plus, in their own group ``matmul``,
the activation x activation products of transformers (attention's q k^T and attn v, written with
``matmul`` / ``einsum`` or through ``scaled_dot_product_attention``). A linear layer over tokens costs its
weights once per position. Parameter counts describe the network
that runs: ``total`` is every stored parameter; ``active`` the parameters of the sub-network at the active
width (sliced conv / linear weights, the BNs of that width, FiLM, alpha); ``nonzero`` the active ones that
are not masked to zero. ``memory_bytes`` = stored weight bits / 8 (conv, linear and FiLM weights and biases
and every other stored parameter at ``b_w`` bits; BN and alpha excluded as in the paper's Fig. 7b unless
``include_bn``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from hwsim.hardware import HardwareConfig
from hwsim.memory import memory_from_terms
from hwsim.trace import RECORD_KINDS, Trace
from hwsim.trace.modules import active_norms, is_film

PARAM_GROUPS = ("backbone", "bn", "alpha", "film", "other")


@dataclass(frozen=True)
class ParamCounts:
    """Parameter counts by group (see the module docstring for total / active / nonzero)."""

    total: int
    active: int
    nonzero: int
    groups: dict[str, int]  # stored totals per group
    active_groups: dict[str, int]


def _active_film_params(film: nn.Module, channels: int | None) -> int:
    """Parameters of a FiLM at its active channels C_a: FiLM(d, C_a), as Eq. 9's F counts it (SPEC 5).

    Every linear layer of the FiLM's MLP keeps the fraction C_a / C of its features (the encoding input of
    size d stays), so the zoo's FiLM(d, C) counts 2 d C_a + 4 C_a^2 weights plus 4 C_a biases. A FiLM that
    did not run counts nothing; one at full width counts all its parameters.
    """
    full = int(film.channels)
    if channels is None:
        return 0
    if channels == full:
        return sum(p.numel() for p in film.parameters())
    total = 0
    for layer in film.modules():
        if isinstance(layer, nn.Linear):
            n_in = layer.in_features if layer.in_features == film.film_dim else layer.in_features * channels // full
            n_out = layer.out_features * channels // full
            total += n_in * n_out + (n_out if layer.bias is not None else 0)
    return total


def _stored_layers(trace: Trace) -> list:
    """One record per module: a module called several times (weight sharing) stores its weights once, so it
    counts once in params and memory (its MACs and delay count per call)."""
    first: dict[str, object] = {}
    for record in trace.layers:
        first.setdefault(record.name.split("#")[0], record)  # the trace names repeated calls "name#2", ...
    return list(first.values())


def param_counts(model: nn.Module, trace: Trace) -> ParamCounts:
    """Group the model's parameters and count those that run at the traced width and masks.

    FiLM and switchable norms are recognised by their markers (:mod:`hwsim.trace.modules`); every parameter
    that is neither a traced layer's weight / bias, nor BN, alpha or FiLM, is ``other`` (positional
    embeddings, class tokens, LayerNorm and layer-scale weights).
    """
    groups = dict.fromkeys(PARAM_GROUPS, 0)
    active = dict.fromkeys(PARAM_GROUPS, 0)
    traced = {record.name.split("#")[0] for record in trace.layers}
    seen: set[int] = set()

    def claim(params, group: str, counts_active: bool) -> None:
        for p in params:
            if id(p) in seen:
                continue
            seen.add(id(p))
            groups[group] += p.numel()
            if counts_active:
                active[group] += p.numel()

    film_channels = {record.name: record.channels for record in trace.films}
    named = dict(model.named_modules())
    for name, module in named.items():
        if is_film(module):
            claim(module.parameters(), "film", False)
            active["film"] += _active_film_params(module, film_channels.get(name))
        elif hasattr(module, "active_norms") or isinstance(module, _BatchNorm):
            runs = {id(p) for norm in active_norms(module) for p in norm.parameters()}
            for p in module.parameters():
                if id(p) not in seen:
                    claim([p], "bn", id(p) in runs)
    for name, module in named.items():
        for pname, p in module.named_parameters(recurse=False):
            if id(p) in seen:
                continue
            if pname == "alpha":
                claim([p], "alpha", True)
            elif name in traced and pname in ("weight", "bias", "weight_orig", "bias_orig"):  # (_orig: nn.utils.prune)
                claim([p], "backbone", False)  # active part comes from the trace (sliced shapes)
            else:
                claim([p], "other", True)
    stored = _stored_layers(trace)
    active["backbone"] = sum(record.params for record in stored)
    nonzero = sum(record.nonzero_params for record in stored) + sum(
        v for k, v in active.items() if k != "backbone")
    return ParamCounts(sum(groups.values()), sum(active.values()), nonzero, groups, active)


def memory_terms(trace: Trace) -> list[tuple[int, int | None, int]]:
    """``(dense weights, nnz or None, bias)`` of every stored conv / linear tensor: the hardware-independent
    part of :func:`memory_bytes` (a module called twice stores once; matmul products store nothing; a layer
    pruned to nothing stores only its bias; ``nnz`` is set where irregular zeros remain)."""
    terms = []
    for record in _stored_layers(trace):
        if record.kind == "matmul":  # two activations: nothing stored
            continue
        bias = record.params - record.weights
        if not record.weight_nonzero:  # pruned to nothing: no weight is stored
            terms.append((0, None, bias))
            continue
        shape = record.shape()
        terms.append((shape.weights, shape.nnz, bias))
    return terms


def memory_bytes(trace: Trace, params: ParamCounts, hw: HardwareConfig, *, include_bn: bool = False) -> int:
    """Bytes of stored weights at ``hw.b_w`` bits, as the delay model stores them.

    Conv / linear weights take their effective (channel-pruned) dense size, or ``nnz`` values plus a 1-bit
    map per weight under ``sparse_storage="bitmap"``; biases, FiLM parameters and every other stored
    parameter (group ``other``: positional embeddings, class tokens, LayerNorm and layer-scale weights) are
    stored dense. BN and alpha are excluded unless ``include_bn``. Rounded up to whole bytes.
    """
    return memory_from_terms(memory_terms(trace), params.active_groups, hw, include_bn=include_bn)


@dataclass(frozen=True)
class CountReport:
    """Everything ``hwsim count`` prints."""

    trace: Trace
    params: ParamCounts
    macs: int  # conv + linear + matmul MACs of the active shapes
    nonzero_macs: int  # MACs with nonzero weights only (what zero skipping could save)
    memory_bytes: int
    ops: dict[str, int]  # --ops all: element counts of BN, activations, adds, pooling and conditioning ops
    unsupported: dict[str, int]
    macs_by_kind: dict[str, int] = field(default_factory=dict)  # "conv", "linear", "matmul" -> MACs


def count(model: nn.Module, trace: Trace, hw: HardwareConfig, *, include_bn: bool = False) -> CountReport:
    """Counts of a traced model (see the module docstring for the conventions)."""
    params = param_counts(model, trace)
    return CountReport(
        trace=trace,
        params=params,
        macs=sum(record.macs for record in trace.layers),
        macs_by_kind={kind: sum(r.macs for r in trace.layers if r.kind == kind) for kind in RECORD_KINDS},
        nonzero_macs=sum(record.nonzero_macs for record in trace.layers),
        memory_bytes=memory_bytes(trace, params, hw, include_bn=include_bn),
        ops=dict(trace.ops),
        unsupported=dict(trace.unsupported),
    )


def fvcore_macs(model: nn.Module, input_size: tuple[int, int, int]) -> dict[str, int]:
    """Conv + linear MACs per module from fvcore's ``FlopCountAnalysis``: the independent cross-check backend.

    fvcore counts one fused multiply-add as one flop, i.e. our MACs. Only conv and linear (addmm / matmul /
    linear) operators are kept, so the totals compare with :attr:`CountReport.macs` on plain models.
    """
    import warnings

    import torch
    from fvcore.nn import FlopCountAnalysis

    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.jit deprecation notices raised inside fvcore's tracer
            analysis = FlopCountAnalysis(model, torch.rand((1, *input_size), device=device))
            analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
            keep = {"conv", "_convolution", "addmm", "linear", "matmul", "mm", "bmm"}
            by_module = analysis.by_module_and_operator()
    finally:
        model.train(was_training)
    leaves = {name for name, m in model.named_modules() if not any(True for _ in m.children())}
    return {name: sum(n for op, n in ops.items() if op in keep)
            for name, ops in by_module.items() if name in leaves and any(op in keep for op in ops)}
