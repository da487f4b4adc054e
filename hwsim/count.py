"""Parameter, memory and MAC counts read from a :class:`~hwsim.trace.Trace` (SPEC 5).

Conventions, stated once: ``macs`` are multiply-accumulates of conv and linear layers (one MAC = one multiply
and one add, the FLOAT paper's Table 1 convention; FLOPs = 2 x MACs). Parameter counts describe the network
that runs: ``total`` is every stored parameter; ``active`` the parameters of the sub-network at the active
width (sliced conv / linear weights, the BNs of that width, FiLM, alpha); ``nonzero`` the active ones that
are not masked to zero. ``memory_bytes`` = stored weight bits / 8 (conv, linear and FiLM weights and biases
at ``b_w`` bits; BN and alpha excluded as in the paper's Fig. 7b unless ``include_bn``).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from hwsim.hardware import HardwareConfig
from hwsim.trace import Trace

PARAM_GROUPS = ("backbone", "bn", "alpha", "film", "other")


@dataclass(frozen=True)
class ParamCounts:
    """Parameter counts by group (see the module docstring for total / active / nonzero)."""

    total: int
    active: int
    nonzero: int
    groups: dict[str, int]  # stored totals per group
    active_groups: dict[str, int]


def _film_types() -> tuple[type, ...]:
    from models.layers import FiLM

    return (FiLM,)


def _active_norms(module: nn.Module) -> list[nn.Module]:
    """The BN modules of a switchable / dual BN that serve the active width (all of them otherwise)."""
    active = getattr(module, "active_norms", None)
    return list(active()) if callable(active) else [module]


def _stored_layers(trace: Trace) -> list:
    """One record per module: a module called several times (weight sharing) stores its weights once, so it
    counts once in params and memory (its MACs and delay count per call)."""
    first: dict[str, object] = {}
    for record in trace.layers:
        first.setdefault(record.name.split("#")[0], record)  # the trace names repeated calls "name#2", ...
    return list(first.values())


def param_counts(model: nn.Module, trace: Trace) -> ParamCounts:
    """Group the model's parameters and count those that run at the traced width and masks."""
    film_types = _film_types()
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

    named = dict(model.named_modules())
    for name, module in named.items():
        if isinstance(module, film_types):
            claim(module.parameters(), "film", True)
        elif hasattr(module, "active_norms") or isinstance(module, _BatchNorm):
            runs = {id(p) for norm in _active_norms(module) for p in norm.parameters()}
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


def memory_bytes(trace: Trace, params: ParamCounts, hw: HardwareConfig, *, include_bn: bool = False) -> int:
    """Bytes of stored weights at ``hw.b_w`` bits, as the delay model stores them.

    Conv / linear weights take their effective (channel-pruned) dense size, or ``nnz`` values plus a 1-bit
    map per weight under ``sparse_storage="bitmap"``; biases and FiLM parameters are stored dense. BN and
    alpha are excluded unless ``include_bn``. Rounded up to whole bytes.
    """
    bits = 0
    for record in _stored_layers(trace):
        bits += (record.params - record.weights) * hw.b_w  # bias
        if not record.weight_nonzero:  # pruned to nothing: no weight is stored
            continue
        shape = record.shape()
        if hw.sparse_storage == "bitmap" and shape.nnz is not None:
            bits += shape.nnz * hw.b_w + shape.weights
        else:
            bits += shape.weights * hw.b_w
    bits += params.active_groups["film"] * hw.b_w
    if include_bn:
        bits += (params.active_groups["bn"] + params.active_groups["alpha"]) * hw.b_w
    return -(-bits // 8)


@dataclass(frozen=True)
class CountReport:
    """Everything ``hwsim count`` prints."""

    trace: Trace
    params: ParamCounts
    macs: int  # conv + linear MACs of the active shapes
    nonzero_macs: int  # MACs with nonzero weights only (what zero skipping could save)
    memory_bytes: int
    ops: dict[str, int]  # --ops all: element counts of BN, activations, adds, pooling and conditioning ops
    unsupported: dict[str, int]


def count(model: nn.Module, trace: Trace, hw: HardwareConfig, *, include_bn: bool = False) -> CountReport:
    """Counts of a traced model (see the module docstring for the conventions)."""
    params = param_counts(model, trace)
    return CountReport(
        trace=trace,
        params=params,
        macs=sum(record.macs for record in trace.layers),
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
