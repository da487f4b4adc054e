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

#: Normalizations counted as such (a switchable / dual norm is recognised by ``active_norms()``).
NORMS = (_BatchNorm, nn.LayerNorm, nn.GroupNorm)

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

    Every linear layer of the FiLM's MLP keeps the fraction C_a / C of its features, except the inputs of
    the encoding layer (size d), so the zoo's FiLM(d, C) counts 2 d C_a + 4 C_a^2 weights plus 4 C_a biases.
    The encoding layer is the MLP's first linear layer (by structure, never by comparing sizes with d: with
    d = 2C the hidden layer has d inputs too). A FiLM that did not run counts nothing; one at full width
    counts all its parameters.
    """
    full = int(film.channels)
    if channels is None:
        return 0
    if channels == full:
        return sum(p.numel() for p in film.parameters())
    total = 0
    for index, layer in enumerate(m for m in film.modules() if isinstance(m, nn.Linear)):
        n_in = layer.in_features if index == 0 else layer.in_features * channels // full
        n_out = layer.out_features * channels // full
        total += n_in * n_out + (n_out if layer.bias is not None else 0)
    return total


def is_noise_scale(module: nn.Module, name: str) -> bool:
    """Whether parameter ``name`` of ``module`` is FLOAT's noise scale alpha: the module marks it
    (``noise_scale_params``, a tuple of its parameter names), never recognised by the name alone."""
    return name in tuple(getattr(module, "noise_scale_params", ()) or ())


def noise_scale_ids(model: nn.Module) -> set[int]:
    """ids of the parameters marked as FLOAT's noise scale alpha (see :func:`is_noise_scale`)."""
    return {id(p) for module in model.modules() for name, p in module.named_parameters(recurse=False)
            if is_noise_scale(module, name)}


def weight_regions(trace: Trace) -> list:
    """The records whose weight is stored once each: one per stored region (a layer called twice, or a
    weight read by two products, stores once; the q, k, v slices of one packed weight are three regions);
    records with no known region (a weight computed from nothing stored) fall back to one per module."""
    first: dict[str, object] = {}
    for record in trace.layers:
        if record.kind == "matmul":
            continue
        first.setdefault(getattr(record, "weight_region", "") or "module:" + record.name.split("#")[0], record)
    return list(first.values())


def param_counts(model: nn.Module, trace: Trace) -> ParamCounts:
    """Group the model's parameters and count those that run at the traced width and masks (SPEC 5.2).

    Each stored parameter is counted once, by identity, in the group of what it is: FiLM (a parameter of a
    module marked ``film_conditioning``), BN (of a BatchNorm or a switchable norm; active where it serves
    the active width), alpha (a parameter its module marks as FLOAT's noise scale), backbone (a parameter
    that a traced conv or linear op read its weight or bias from, whatever its name: ``weight``,
    ``kernel``, ``in_proj_weight`` applied through ``F.linear``), and ``other`` for the rest (positional
    embeddings, class tokens, LayerNorm and layer-scale weights). A backbone parameter's active part is the
    entries the traced ops read (a slimmed layer reads a slice; two layers sharing it read it once);
    nonzero counts those the masks keep.
    """
    groups = dict.fromkeys(PARAM_GROUPS, 0)
    active = dict.fromkeys(PARAM_GROUPS, 0)
    names = {id(p): name for name, p in model.named_parameters()}
    params = dict(model.named_parameters())
    group_of: dict[str, str] = {}

    film_channels = {record.name: record.channels for record in trace.films}
    for name, module in model.named_modules():
        if is_film(module):
            for p in module.parameters():
                group_of.setdefault(names[id(p)], "film")
            active["film"] += _active_film_params(module, film_channels.get(name))
        elif hasattr(module, "active_norms") or isinstance(module, NORMS):
            # BatchNorm (BatchNormAct2d's included) is group bn; LayerNorm, LayerNorm2d and GroupNorm weights
            # are `other` (stored, in memory: SPEC 5), plain, dual or switchable alike; only the norms that
            # serve the active width are active.
            group = "bn" if any(isinstance(m, _BatchNorm) for m in module.modules()) else "other"
            runs = {id(p) for norm in active_norms(module) for p in norm.parameters()}
            for p in module.parameters():
                if names[id(p)] not in group_of:
                    group_of[names[id(p)]] = group
                    if id(p) in runs:
                        active[group] += p.numel()
        for pname, p in module.named_parameters(recurse=False):
            if is_noise_scale(module, pname) and names[id(p)] not in group_of:
                group_of[names[id(p)]] = "alpha"
                active["alpha"] += p.numel()

    # Backbone: what the traced conv / linear ops read, per stored region (counted once each).
    read: dict[str, dict[str, tuple[int, int]]] = {}  # parameter -> region -> (entries, nonzero entries)
    for record in trace.layers:
        if record.kind == "matmul":
            continue
        sources = [n for n in getattr(record, "params_of", ()) if n in params and group_of.get(n, "backbone")
                   == "backbone"]
        for n in sources:
            group_of[n] = "backbone"
        weight_sources = [n for n in sources if n in record.weight_region.split("@")[0].split("+")]
        bias_sources = [n for n in sources if n not in weight_sources]
        for n in weight_sources:
            read.setdefault(n, {})[record.weight_region] = (record.weights, record.weight_nonzero)
        bias = record.params - record.weights
        for n in bias_sources:
            read.setdefault(n, {})[record.bias_region or "bias"] = (bias, bias)
    nonzero_backbone = 0
    unread_backbone = 0
    for n, regions in read.items():
        numel = params[n].numel()
        active["backbone"] += min(numel, sum(v[0] for v in regions.values()))
        nonzero_backbone += min(numel, sum(v[1] for v in regions.values()))
    # Weight layers whose weight comes from no stored parameter we know (computed from nothing stored):
    # counted from their records, one per module.
    for record in weight_regions(trace):
        if not getattr(record, "params_of", ()):
            unread_backbone += record.params
            active["backbone"] += record.params
            nonzero_backbone += record.nonzero_params
    for name, p in params.items():
        if name not in group_of:  # a free parameter: its active part is the slice the forward read (a
            group_of[name] = "other"  # class token or positional embedding at a slim width), all where unknown
            reads = getattr(trace, "param_reads", {}).get(name)
            active["other"] += p.numel() if reads is None else min(p.numel(), reads)
        groups[group_of[name]] += p.numel()
    groups["backbone"] += unread_backbone
    nonzero = nonzero_backbone + sum(v for k, v in active.items() if k != "backbone")
    return ParamCounts(sum(groups.values()), sum(active.values()), nonzero, groups, active)


def memory_terms(trace: Trace) -> list[tuple[int, int | None, int]]:
    """``(dense weights, nnz or None, bias)`` of every stored conv / linear tensor: the hardware-independent
    part of :func:`memory_bytes` (a stored region counts once however many ops read it; matmul products
    store nothing; ``nnz`` is set where irregular zeros remain)."""
    terms = []
    biases: set[str] = set()
    for record in weight_regions(trace):
        bias = record.params - record.weights
        key = getattr(record, "bias_region", "") or "module:" + record.name.split("#")[0]
        if bias and key in biases:
            bias = 0
        biases.add(key)
        if not (record.c_in_eff and record.c_out_eff):  # channel-pruned to nothing: no weight is stored
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
