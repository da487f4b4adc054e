"""Variants of any PyTorch model by module surgery on the instance (SPEC 4.1, 4.2), with the zoo's layer classes.

:func:`apply_variant` walks the modules of the instance a user's factory returned and replaces layers in
place (as ``torch.nn.SyncBatchNorm.convert_sync_batchnorm`` does), never editing the user's code. The rules
of SPEC 4.1 hold for "weight layer and normalization", not only "conv and BatchNorm" (SPEC 4.2):

* every ``nn.MultiheadAttention`` becomes the zoo's :class:`~models.layers.Attention` (same weights, same
  outputs; in every variant, base included, so that layers pair by name across variants): its packed q, k, v
  projection and its output projection are linear layers like any other, which the rules below reach;
* ``noise`` (float*): every ``nn.Conv2d`` (any groups; a subclass that keeps Conv2d's forward too) becomes a
  :class:`~models.layers.CondConv2d` and every ``nn.Linear`` a :class:`~models.layers.CondLinear`, each with
  a noise-conditioned weight and its own alpha, except the layer that writes the logits;
* dual norms (``bn="dual"``) and slim: every normalization (``BatchNorm*``, ``LayerNorm`` and its
  channels-first subclasses such as LayerNorm2d, ``GroupNorm``, timm's ``BatchNormAct2d``) becomes a
  :class:`~models.layers.CondNorm` of copies of itself (norm_C / norm_A, one per width);
* ``film`` (oat*): a :class:`~models.layers.FiLM` over the normalized features after every normalization
  except a norm on the projection shortcut of a residual add; the norm and its FiLM become
  ``nn.Sequential(norm, film)`` under the norm's name. A norm that applies its own activation (timm's
  BatchNormAct2d: ``drop`` and ``act`` submodules) keeps it after the FiLM: ``Sequential(norm, film, drop, act)``;
* ``masked`` (floats-*): a ``weight_mask`` on every conv and linear except the first layer the input reaches
  and the layer that writes the logits;
* ``slim``: every conv and linear keeps its first ``round(w C_out)`` outputs and reads the features that
  arrive, except the layer that writes the logits (a linear or a conv classifier keeps its outputs whole);
  attention keeps its first ``round(w heads)`` whole heads (head dimension kept); free parameters (class
  tokens, positional embeddings, layer scales, relative-position tables) keep the first entries of their last
  dimension, which the features they meet have (a parametrization, ``torch.nn.utils.parametrize``). Input
  channels follow the data, so channels coupled through residual adds (equal C, so equal ``round(w C)``),
  concatenations and grouped convs (the groups stay, each thinned; a depthwise conv keeps one group per kept
  channel) stay consistent; a coupling this cannot satisfy is found by tracing every width and exits naming
  the layer. torch-pruning's DepGraph, pruning the same fraction and keeping each coupled group's first
  channels, gives the same shapes layer by layer on CNNs (``tests/test_user_models.py``).

Which layer the input reaches first, which norms sit on projection shortcuts and which layers write the
output come from the data-flow trace of the base model (:class:`hwsim.trace.DataFlow`), the same analysis
that assigns FiLM owners. On a CIFAR ResNet written by a user this reproduces the zoo's definition exactly.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize

from hwsim.errors import HwsimError
from hwsim.variants import Variant, VariantNotApplicable
from models.knobs import KnobState
from models.layers import Attention, CondConv2d, CondLinear, CondNorm, FiLM, SlimLinear, norm_features

#: The normalizations the variants condition, switch and follow with a FiLM (SPEC 4.2).
NORMS = (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm)


def _parent(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    path, _, attr = name.rpartition(".")
    return (model.get_submodule(path) if path else model), attr


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent, attr = _parent(model, name)
    setattr(parent, attr, new)


def _refuse(variant: Variant, name: str, why: str) -> VariantNotApplicable:
    return VariantNotApplicable(f"variant {variant.name!r} cannot transform layer {name!r}: {why}")


def _plain_conv(module: nn.Module) -> bool:
    """An ``nn.Conv2d`` or a subclass that computes as one (its forward and conv are Conv2d's)."""
    return (isinstance(module, nn.Conv2d) and type(module).forward is nn.Conv2d.forward
            and type(module)._conv_forward is nn.Conv2d._conv_forward)


def _plain_linear(module: nn.Module) -> bool:
    return isinstance(module, nn.Linear) and (type(module).forward is nn.Linear.forward
                                              or isinstance(module, CondLinear))


def _check_layers(model: nn.Module, variant: Variant, trace, *, dual: bool) -> None:
    """Every layer the variant must transform is one surgery can replace; refuse naming the first that is not."""
    modules = dict(model.named_modules())
    weights_change = variant.noise or variant.masked or variant.slim
    for name, module in modules.items():
        if weights_change and isinstance(module, nn.modules.conv._ConvNd) and not _plain_conv(module):
            raise _refuse(variant, name, f"{type(module).__name__} is not an nn.Conv2d that computes as one (its "
                                         "conv or weight is computed in its own forward)")
        if weights_change and isinstance(module, nn.Linear) and not _plain_linear(module):
            raise _refuse(variant, name, f"{type(module).__name__} is an nn.Linear with its own forward, whose "
                                         "weight cannot be conditioned, masked or sliced")
        if isinstance(module, nn.Conv2d) and weights_change and module.padding_mode != "zeros":
            raise _refuse(variant, name, f"padding_mode={module.padding_mode!r} (only zero padding is supported)")
        if isinstance(module, nn.LayerNorm) and (variant.film or variant.slim or dual):
            try:
                norm_features(module)
            except ValueError as exc:
                raise _refuse(variant, name, str(exc)) from None
    for record in trace.layers:
        name = record.name.split("#")[0]
        module = modules.get(name)
        if record.kind == "conv" and weights_change and not isinstance(module, nn.Conv2d):
            raise _refuse(variant, name, "it computes a convolution outside an nn.Conv2d (a computed weight), "
                                         "so its weight cannot be conditioned, masked or sliced")
        if record.kind == "linear" and weights_change and not isinstance(module, nn.Linear):
            raise _refuse(variant, name, "it computes a linear product outside an nn.Linear, so its weight cannot "
                                         "be conditioned, masked or sliced")
    shared = [n for n, m in model.named_modules(remove_duplicate=False)
              if modules.get(n) is not m and isinstance(m, (nn.Conv2d, nn.Linear, *NORMS))]
    if shared:
        raise _refuse(variant, shared[0], "the same module is registered under two names")


def _device(module: nn.Module) -> torch.device:
    return next((t.device for t in (*module.parameters(), *module.buffers())), torch.device("cpu"))


def _cond_conv(conv: nn.Conv2d, state: KnobState, *, noise: bool, masked: bool, keep_outputs: bool) -> CondConv2d:
    new = CondConv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, state,
                     noise=noise, masked=masked, groups=conv.groups, dilation=conv.dilation,
                     bias=conv.bias is not None, keep_outputs=keep_outputs)
    with torch.no_grad():
        new.weight.copy_(conv.weight)
        if conv.bias is not None:
            new.bias.copy_(conv.bias)
    return new.to(device=conv.weight.device)


def _cond_linear(linear: nn.Linear, state: KnobState, *, noise: bool, masked: bool, slim: bool) -> CondLinear:
    new = CondLinear(linear.in_features, linear.out_features, linear.bias is not None, state, noise=noise,
                     masked=masked, slim=slim, out_units=getattr(linear, "out_units", None))
    with torch.no_grad():
        new.weight.copy_(linear.weight)
        if linear.bias is not None:
            new.bias.copy_(linear.bias)
    return new.to(device=linear.weight.device)


def _slim_linear(linear: nn.Linear, state: KnobState, *, keep_outputs: bool) -> SlimLinear:
    new = SlimLinear(linear.in_features, linear.out_features, linear.bias is not None,
                     state=None if keep_outputs else state)
    with torch.no_grad():
        new.weight.copy_(linear.weight)
        if linear.bias is not None:
            new.bias.copy_(linear.bias)
    return new.to(device=linear.weight.device)


def _split_activation(norm: nn.Module) -> tuple[nn.Module, list[nn.Module]]:
    """A norm that applies its own dropout and activation (timm's ``BatchNormAct2d``: ``drop`` and ``act``
    submodules, applied in that order after normalizing) as (the norm alone, [drop, act]), so that a FiLM can
    sit between them; any other norm as (itself, [])."""
    act = getattr(norm, "act", None)
    if not isinstance(act, nn.Module):
        return norm, []
    import copy

    core = copy.deepcopy(norm)
    tail = [m for m in (getattr(norm, "drop", None), act) if isinstance(m, nn.Module)]
    core.act = nn.Identity()
    if isinstance(getattr(norm, "drop", None), nn.Module):
        core.drop = nn.Identity()
    return core, tail


def _channel_dims(model: nn.Module, norms: list[tuple[str, nn.Module]], input_size) -> dict[str, int]:
    """Which axis of each norm's output holds its features: 1 (BatchNorm, GroupNorm, a channels-first
    LayerNorm such as ConvNeXt's LayerNorm2d) or -1 (``nn.LayerNorm`` over tokens). A LayerNorm subclass
    with its own forward is asked by one forward pass."""
    dims = {name: (-1 if isinstance(m, nn.LayerNorm) else 1) for name, m in norms}
    probe = [(name, m) for name, m in norms
             if isinstance(m, nn.LayerNorm) and type(m).forward is not nn.LayerNorm.forward]
    if not probe:
        return dims
    shapes: dict[str, torch.Size] = {}

    def seen(name: str):
        def hook(module, inputs, output) -> None:  # (a hook that returns a value replaces the output)
            shapes.setdefault(name, output.shape)
        return hook

    handles = [m.register_forward_hook(seen(name)) for name, m in probe]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros((1, *input_size), device=_device(model)))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    for name, m in probe:
        shape, c = shapes.get(name), norm_features(m)
        if shape is not None and len(shape) >= 3 and shape[1] == c and shape[-1] != c:
            dims[name] = 1
    return dims


class _FirstFeatures(nn.Module):
    """Parametrization of a free parameter at a slim width: the first ``round(w n)`` of its last dimension."""

    def __init__(self, state: KnobState, size: int) -> None:
        super().__init__()
        self._knobs, self.size = state, size

    def forward(self, tensor: torch.Tensor) -> torch.Tensor:
        keep = self._knobs.active(self.size)
        return tensor if keep == self.size else tensor[..., :keep]


def _slice_free_parameters(model: nn.Module, state: KnobState) -> None:
    """Free parameters (outside convs, linears, norms, FiLMs) follow the width along their last dimension."""
    owned = (nn.Conv2d, nn.Linear, CondConv2d, CondNorm, FiLM, Attention, *NORMS)
    for module in list(model.modules()):
        if isinstance(module, owned) or parametrize.is_parametrized(module):
            continue
        for pname, p in list(module.named_parameters(recurse=False)):
            if p.dim() >= 1 and p.shape[-1] > 1:
                parametrize.register_parametrization(module, pname, _FirstFeatures(state, p.shape[-1]), unsafe=True)


def _convert_attention(model: nn.Module, variant: Variant, state: KnobState) -> None:
    for name, module in list(model.named_modules()):
        if isinstance(module, nn.MultiheadAttention):
            try:
                _replace(model, name, Attention.from_multihead(module, state))
            except ValueError as exc:
                raise _refuse(variant, name, f"{exc} (only packed self-attention is supported)") from None


def apply_variant(model: nn.Module, variant: Variant, state: KnobState, input_size: tuple[int, int, int], *,
                  dual: bool = False, film_dim: int = 0) -> nn.Module:
    """Turn ``model`` (a plain network) into ``variant`` in place and return it.

    ``state`` is the model's one knob state (its ``widths`` are the slim widths); ``input_size`` (C, H, W)
    is what the data-flow trace runs on; ``dual``: norm_C / norm_A pairs; ``film_dim``: the FiLM encoding
    size d (oat*). Raises :class:`~hwsim.variants.VariantNotApplicable` (an :class:`HwsimError`) naming the
    layer that cannot be transformed.
    """
    from hwsim.trace import trace_model

    _convert_attention(model, variant, state)
    if not variant.conditional:
        return model
    base = trace_model(model, input_size)
    flow = base.flow
    _check_layers(model, variant, base, dual=dual)
    modules = list(model.named_modules())
    outputs = set(flow.output_layers)
    first = flow.first_conv or next((r.name.split("#")[0] for r in base.layers if r.kind != "matmul"), None)
    weights = [(n, m) for n, m in modules if isinstance(m, (nn.Conv2d, nn.Linear))]
    norms = [(n, m) for n, m in modules if isinstance(m, NORMS)]
    kind = type(model).__name__
    if (variant.noise or variant.masked) and not [n for n, _ in weights if n not in outputs]:
        raise VariantNotApplicable(f"variant {variant.name!r} conditions conv and linear weights, but {kind} has none "
                                   "besides the layer that writes the logits")
    if variant.masked and not [n for n, _ in weights if n not in outputs and n != first]:
        raise VariantNotApplicable(f"variant {variant.name!r} masks every conv and linear layer but the first one the "
                                   f"input reaches and the one that writes the logits, and {kind} has no other")
    if variant.film and not [n for n, _ in norms if n not in flow.shortcut_norms]:
        raise VariantNotApplicable(f"variant {variant.name!r} puts a FiLM after every normalization (BatchNorm, "
                                   f"LayerNorm, GroupNorm), but {kind} has none outside projection shortcuts")
    dims = _channel_dims(model, norms, input_size) if variant.film else {}
    for name, module in weights:
        out = name in outputs
        masked = variant.masked and name != first and not out
        if isinstance(module, nn.Conv2d) and (variant.noise and not out or masked or variant.slim):
            _replace(model, name, _cond_conv(module, state, noise=variant.noise and not out, masked=masked,
                                             keep_outputs=out))
        elif isinstance(module, nn.Linear) and out and variant.slim:
            _replace(model, name, _slim_linear(module, state, keep_outputs=True))
        elif isinstance(module, nn.Linear) and not out and (variant.noise or masked or variant.slim):
            _replace(model, name, _cond_linear(module, state, noise=variant.noise, masked=masked, slim=variant.slim))
    for name, module in norms:
        film = variant.film and name not in flow.shortcut_norms
        if not (film or dual or variant.slim):
            continue
        core, tail = _split_activation(module)
        norm = CondNorm(core, state, dual=dual).to(device=_device(module)) if (dual or variant.slim) else core
        if film:
            norm = nn.Sequential(norm, FiLM(film_dim, norm_features(module), state, channel_dim=dims[name]).to(
                device=_device(module)), *tail)
        elif tail:
            norm = nn.Sequential(norm, *tail)
        _replace(model, name, norm)
    if variant.slim:
        _slice_free_parameters(model, state)
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
                raise VariantNotApplicable(f"variant {variant.name!r} at width {width:g}: channels coupled in a way "
                                           f"slicing cannot resolve; {exc}") from None
    finally:
        state.width = chosen
