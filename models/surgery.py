"""Variants of any PyTorch model by module surgery on the instance (SPEC 4.1), with the zoo's layer classes.

:func:`apply_variant` walks the modules of the instance a user's factory returned and replaces layers in
place (as ``torch.nn.SyncBatchNorm.convert_sync_batchnorm`` does), never editing the user's code:

* ``noise`` (float*): every ``nn.Conv2d`` (any groups) becomes a :class:`~models.layers.CondConv2d` with a
  noise-conditioned weight and its own alpha; linear layers stay plain.
* dual BN (``bn="dual"``) and slim: every ``nn.BatchNorm2d`` becomes a
  :class:`~models.layers.CondBatchNorm2d` (BN_C / BN_A, one per width).
* ``film`` (oat*): a :class:`~models.layers.FiLM` after every ``BatchNorm2d`` except a BN on the projection
  shortcut of a residual add; the BN and its FiLM become ``nn.Sequential(bn, film)`` under the BN's name.
* ``masked`` (floats-*): a ``weight_mask`` on every conv except the first one the input reaches.
* ``slim``: every conv keeps its first ``round(w C_out)`` output channels and reads the channels that
  arrive; a linear layer reads the features that arrive and keeps its first ``round(w C_out)`` outputs,
  except a layer that writes the model's output (the logits stay whole). Input channels follow the data,
  so channels coupled through residual adds (equal C, so equal ``round(w C)``), concatenations (the
  consumer reads the sum of the kept parts) and grouped convs (the groups stay, each thinned; a depthwise
  conv keeps one group per kept channel) stay consistent; a coupling this cannot satisfy (a fixed-size op on
  slimmed channels, channels that do not split into the groups) is found by tracing every width and exits
  naming the layer. torch-pruning's DepGraph, pruning the same fraction and keeping each coupled group's
  first channels, gives the same shapes layer by layer (``tests/test_user_models.py``).

Which conv the input reaches first, which BNs sit on projection shortcuts and which layers write the
output come from the data-flow trace of the base model (:class:`hwsim.trace.DataFlow`), the same analysis
that assigns FiLM owners. On a CIFAR ResNet written by a user this reproduces the zoo's definition exactly.
"""

from __future__ import annotations

import torch
from torch import nn

from hwsim.errors import HwsimError
from models.knobs import KnobState
from models.layers import CondBatchNorm2d, CondConv2d, FiLM, SlimLinear
from hwsim.variants import Variant, VariantNotApplicable


def _parent(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    path, _, attr = name.rpartition(".")
    return (model.get_submodule(path) if path else model), attr


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent, attr = _parent(model, name)
    setattr(parent, attr, new)


def _refuse(variant: Variant, name: str, why: str) -> VariantNotApplicable:
    return VariantNotApplicable(f"variant {variant.name!r} cannot transform layer {name!r}: {why}")


def _check_layers(model: nn.Module, variant: Variant, trace, *, dual: bool) -> None:
    """Every layer the variant must transform is one surgery can replace; refuse naming the first that is not."""
    modules = dict(model.named_modules())
    convs_change = variant.noise or variant.masked or variant.slim
    for name, module in modules.items():
        if convs_change and isinstance(module, nn.modules.conv._ConvNd) and type(module) is not nn.Conv2d:
            if not isinstance(module, nn.Conv2d) or type(module).forward is not nn.Conv2d.forward:
                raise _refuse(variant, name, f"{type(module).__name__} is not a plain nn.Conv2d (its conv or "
                                             "weight is computed in its own forward)")
        if (isinstance(module, nn.BatchNorm2d) and type(module).forward is not nn.BatchNorm2d.forward
                and (variant.slim or dual)):
            raise _refuse(variant, name, f"{type(module).__name__} is a BatchNorm2d with its own forward, which "
                                         "a switchable / dual BN cannot replace")
        if isinstance(module, nn.Conv2d) and convs_change and module.padding_mode != "zeros":
            raise _refuse(variant, name, f"padding_mode={module.padding_mode!r} (only zero padding is supported)")
    for record in trace.layers:
        name = record.name.split("#")[0]
        module = modules.get(name)
        if record.kind == "conv" and convs_change and not isinstance(module, nn.Conv2d):
            raise _refuse(variant, name, "it computes a convolution outside an nn.Conv2d (a computed weight), "
                                         "so its weight cannot be conditioned, masked or sliced")
        if record.kind == "linear" and variant.slim and not isinstance(module, nn.Linear):
            raise _refuse(variant, name, "it computes a linear product outside an nn.Linear, so its features "
                                         "cannot be sliced")
        if record.kind == "conv" and variant.slim and name in trace.flow.output_layers:
            raise _refuse(variant, name, "a conv writes the model's output; slimming keeps the outputs whole only "
                                         "for a linear classifier")
    shared = [n for n, m in model.named_modules(remove_duplicate=False)
              if modules.get(n) is not m and isinstance(m, (nn.Conv2d, nn.Linear, nn.BatchNorm2d))]
    if shared:
        raise _refuse(variant, shared[0], "the same module is registered under two names")


def _device(module: nn.Module) -> torch.device:
    return next((t.device for t in (*module.parameters(), *module.buffers())), torch.device("cpu"))


def _cond_conv(conv: nn.Conv2d, state: KnobState, *, noise: bool, masked: bool) -> CondConv2d:
    new = CondConv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, state,
                     noise=noise, masked=masked, groups=conv.groups, dilation=conv.dilation,
                     bias=conv.bias is not None)
    with torch.no_grad():
        new.weight.copy_(conv.weight)
        if conv.bias is not None:
            new.bias.copy_(conv.bias)
    return new.to(device=conv.weight.device)


def _cond_norm(bn: nn.BatchNorm2d, state: KnobState, *, dual: bool) -> CondBatchNorm2d:
    new = CondBatchNorm2d(bn.num_features, state, dual=dual).to(device=_device(bn))
    for norm in new.bns:
        c = norm.num_features
        norm.eps, norm.momentum = bn.eps, bn.momentum
        with torch.no_grad():
            if bn.affine:
                norm.weight.copy_(bn.weight[:c])
                norm.bias.copy_(bn.bias[:c])
            else:
                norm.affine, norm.weight, norm.bias = False, None, None
            if bn.running_mean is not None:
                norm.running_mean.copy_(bn.running_mean[:c])
                norm.running_var.copy_(bn.running_var[:c])
    return new


def _slim_linear(linear: nn.Linear, state: KnobState, *, keep_outputs: bool) -> SlimLinear:
    new = SlimLinear(linear.in_features, linear.out_features, linear.bias is not None,
                     state=None if keep_outputs else state)
    with torch.no_grad():
        new.weight.copy_(linear.weight)
        if linear.bias is not None:
            new.bias.copy_(linear.bias)
    return new.to(device=linear.weight.device)


def apply_variant(model: nn.Module, variant: Variant, state: KnobState, input_size: tuple[int, int, int], *,
                  dual: bool = False, film_dim: int = 0) -> nn.Module:
    """Turn ``model`` (a plain network) into ``variant`` in place and return it.

    ``state`` is the model's one knob state (its ``widths`` are the slim widths); ``input_size`` (C, H, W)
    is what the data-flow trace runs on; ``dual``: BN_C / BN_A pairs; ``film_dim``: the FiLM encoding
    size d (oat*). Raises :class:`~hwsim.variants.VariantNotApplicable` (an :class:`HwsimError`) naming the
    layer that cannot be transformed.
    """
    from hwsim.trace import trace_model

    if not variant.conditional:
        return model
    base = trace_model(model, input_size)
    flow = base.flow
    _check_layers(model, variant, base, dual=dual)
    modules = list(model.named_modules())
    norms = [(n, m) for n, m in modules if isinstance(m, nn.BatchNorm2d)]
    convs = [n for n, m in modules if type(m) is nn.Conv2d]
    kind = type(model).__name__
    if (variant.noise or variant.masked) and not convs:
        raise VariantNotApplicable(f"variant {variant.name!r} conditions conv weights, but {kind} has no nn.Conv2d")
    if variant.masked and len(convs) < 2:
        raise VariantNotApplicable(f"variant {variant.name!r} masks every conv but the first, and {kind} has only "
                         f"{len(convs)} nn.Conv2d")
    if variant.film and not [n for n, _ in norms if n not in flow.shortcut_norms]:
        raise VariantNotApplicable(f"variant {variant.name!r} puts a FiLM after every BatchNorm2d, but {kind} has none "
                         "outside projection shortcuts")
    for name, module in modules:
        if type(module) is nn.Conv2d and (variant.noise or variant.masked or variant.slim):
            masked = variant.masked and name != flow.first_conv
            _replace(model, name, _cond_conv(module, state, noise=variant.noise, masked=masked))
        elif isinstance(module, nn.Linear) and variant.slim:
            _replace(model, name, _slim_linear(module, state, keep_outputs=name in flow.output_layers))
    for name, module in norms:
        norm = _cond_norm(module, state, dual=dual) if (dual or variant.slim) else module
        if variant.film and name not in flow.shortcut_norms:
            norm = nn.Sequential(norm, FiLM(film_dim, module.num_features, state).to(device=_device(module)))
        if norm is not module:
            _replace(model, name, norm)
    if variant.slim:
        _check_widths(model, variant, state, input_size)
    return model


def _check_widths(model: nn.Module, variant: Variant, state: KnobState, input_size: tuple[int, int, int]) -> None:
    """Trace every width once: a coupling that slicing cannot satisfy fails here, naming the layer."""
    from hwsim.trace import trace_model

    chosen = state.width
    try:
        for width in state.widths:
            state.width = width
            try:
                trace_model(model, input_size)
            except HwsimError as exc:
                raise VariantNotApplicable(f"variant {variant.name!r} at width {width:g}: channels coupled in a way slicing "
                                 f"cannot resolve; {exc}") from None
    finally:
        state.width = chosen
