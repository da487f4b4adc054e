"""ONNX export of a model at a variant and knob setting (SPEC 3.3), through ``torch.onnx.export``.

The graph is the network that runs, with its weights as shaped graph inputs (no initializers: the tools cost
shapes, not values; ``export_params=False``) and two data inputs: ``input`` (1 x C x H x W) and, for FiLM
models, ``lambda_encoding`` (1 x d: the raw lambda for d = 1, the row of the orthogonal encoding otherwise).

* FLOAT: a noise-conditioned conv's weight is ``Add(theta, Mul(alpha, eta))`` with three inputs: ``NAME.weight``
  (theta), ``NAME.alpha`` (a scalar) and ``NAME.eta`` (the noise the runtime draws, ``eta ~ N(0, std(theta)^2)``
  already times the knob's scale s: at lambda_th = 0, s = lambda_n).
* OAT: each FiLM is ``Gemm -> LeakyRelu -> Gemm -> LeakyRelu -> Split`` on ``lambda_encoding``, then ``Mul`` and
  ``Add`` on the conv's (normalized) output, ``y = x * mu + sigma`` (the LeakyReLU of mu and sigma applied before
  the split, which is the same elementwise op).
* Slim: every weight input at its active shape (the slices that run; a FiLM at width w is FiLM(d, C_a), as hwsim
  counts it). Pruned (floats-*): the masks are values, and the inputs carry none: a channel-pruned conv reads
  only its kept input channels (``Gather`` on the activations, the weight input at C_i_eff); filters that are
  pruned whole keep their place in the weight (their output channel still exists for the next layer).

Markers, not classes, say what a module is (STYLE 12): ``noise_conditioned``, ``film_conditioning`` and a
``weight_mask`` buffer, as for the tracer. The model is changed only for the export and restored after it.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from pathlib import Path

from hwsim.errors import HwsimError

#: The opset the graph is written at (torch's legacy exporter writes up to 20).
OPSET = 17


def _param(tensor):
    import torch

    return torch.nn.Parameter(tensor.detach().clone(), requires_grad=False)


@contextlib.contextmanager
def _swapped(module, kind: str, name: str, value) -> Iterator[None]:
    """``module``'s parameter or buffer ``name`` replaced by ``value`` (None: removed) for the block."""
    store = getattr(module, f"_{kind}")
    had = name in store
    old = store.get(name)
    if value is None:
        store.pop(name, None)
    else:
        store[name] = value
    try:
        yield
    finally:
        if had:
            store[name] = old
        else:
            store.pop(name, None)


def _active_inputs(model, input_size) -> dict:
    """Input channels (features) each conv and linear module sees at the model's knob setting."""
    import torch

    seen: dict = {}

    def record(module, args) -> None:  # returns None: the input is left as it is
        seen.setdefault(module, int(args[0].shape[1 if args[0].dim() == 4 else -1]))

    hooks = [m.register_forward_pre_hook(record) for m in model.modules()
             if isinstance(getattr(m, "weight", None), torch.Tensor) and m.weight.dim() in (2, 4)]
    try:
        with torch.no_grad():
            model(torch.zeros(1, *input_size))
    finally:
        for hook in hooks:
            hook.remove()
    return seen


def _conv_forward(module, in_active: int, keep):
    """The forward of a conditional conv at its effective shape: its (swapped) weight, plus alpha * eta when
    noise-conditioned, on the kept input channels (``keep``: their indices, or None for all)."""
    import torch.nn.functional as F

    noise = bool(getattr(module, "noise_conditioned", False))
    groups = module.active_groups(in_active) if hasattr(module, "active_groups") else module.groups

    def forward(x):
        if keep is not None:
            x = x.index_select(1, keep)
        weight = module.weight + module.alpha * module.eta if noise else module.weight
        bias = module.bias[: weight.shape[0]] if module.bias is not None else None
        return F.conv2d(x, weight, bias, module.stride, module.padding, module.dilation, groups)

    return forward


def _film_forward(module, encoding, active):
    import torch
    import torch.nn.functional as F

    def forward(x):
        h = F.leaky_relu(module.mlp(encoding()))
        mu, sigma = torch.split(h, [active, active], dim=1)
        return x * mu[:, :, None, None] + sigma[:, :, None, None]

    return forward


def export_onnx(model, input_size: tuple[int, int, int], path: str | Path) -> None:
    """Write ``model`` (built at its knob setting, e.g. by :func:`hwsim.cost.build_model`) as ONNX to ``path``
    and check it with ``onnx.checker.check_model(full_check=True)``.

    Raises:
        HwsimError: onnx is not installed, or the model cannot be exported or checked (the first line of why).
    """
    import torch

    try:
        import onnx  # noqa: F401
    except ImportError:
        raise HwsimError("--format onnx needs onnx: in a checkout of hwsim run pip install -e \".[onnx]\" "
                         "(or pip install \"hwsim[onnx]\")") from None

    model.eval()
    active_in = _active_inputs(model, input_size)
    encoding: dict = {}
    film_dims = {int(m.film_dim) for m in model.modules() if getattr(m, "film_conditioning", False)}
    if len(film_dims) > 1:
        raise HwsimError(f"FiLMs of several encoding sizes {sorted(film_dims)}: one lambda_encoding input "
                         "cannot feed them")
    with contextlib.ExitStack() as stack:
        for name, module in model.named_modules():
            if getattr(module, "film_conditioning", False):
                _prepare_film(stack, module, lambda: encoding["value"])
            elif hasattr(module, "effective_weight") and module in active_in:
                _prepare_conv(stack, module, int(active_in[module]))
            elif isinstance(module, torch.nn.Linear) and module in active_in:
                _prepare_linear(stack, module, int(active_in[module]))
        inputs = [torch.zeros(1, *input_size)]
        names = ["input"]
        if film_dims:
            inputs.append(torch.zeros(1, film_dims.pop()))
            names.append("lambda_encoding")

        class Exported(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.model = model

            def forward(self, x, *enc):
                if enc:
                    encoding["value"] = enc[0]
                return self.model(x)

        wrapper = Exported()
        stack.enter_context(_distinct_values(wrapper))
        try:
            with warnings.catch_warnings(), _quiet_stdout():
                warnings.simplefilter("ignore")
                torch.onnx.export(wrapper, tuple(inputs), str(path), dynamo=False, export_params=False,
                                  input_names=names, output_names=["logits"], opset_version=OPSET,
                                  do_constant_folding=False)
        except Exception as exc:  # the exporter's own errors (unsupported ops, data-dependent control flow)
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise HwsimError(f"torch cannot export this model to ONNX: {first}") from None
    _rename_inputs(path)


@contextlib.contextmanager
def _quiet_stdout() -> Iterator[None]:
    """Silence stdout, Python's and the file descriptor's, while torch exports: on failure its TorchScript
    exporter dumps the whole IR graph to fd 1 (one line per value) before raising, which buried the one-line
    error and broke stdout, where ``hwsim export`` lists the files it wrote."""
    import os
    import sys

    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 1)
        with contextlib.redirect_stdout(open(os.devnull, "w")) as quiet:
            try:
                yield
            finally:
                quiet.close()
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def _check(path) -> None:
    import onnx

    try:
        onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise HwsimError(f"the exported ONNX graph fails onnx's full check: {str(exc).splitlines()[0]}") from None


@contextlib.contextmanager
def _distinct_values(model) -> Iterator[None]:
    """Every parameter and buffer filled with distinct values for the export, restored after it.

    torch's exporter merges inputs of equal values into one (``Identity`` nodes): every alpha is 0.25 at build
    and an unset weight is all zeros, so without this ``layer4.1.conv2.alpha`` would be read from ``conv1.alpha``.
    The graph carries shapes only, so the values are never seen."""
    import torch

    tensors = [t for t in (*model.parameters(), *model.buffers()) if t.is_floating_point()]
    saved = [t.detach().clone() for t in tensors]
    generator = torch.Generator().manual_seed(0)
    try:
        with torch.no_grad():
            for t in tensors:
                t.copy_(torch.rand(t.shape, generator=generator) + 0.5)  # positive: a valid BN variance
        yield
    finally:
        with torch.no_grad():
            for t, old in zip(tensors, saved):
                t.copy_(old)


def _prepare_conv(stack, module, in_active: int) -> None:
    """Swap a conditional conv's weight for the one that runs (sliced, pruned input channels dropped)."""
    import torch

    with torch.no_grad(), _noise_off(module):
        theta = module.effective_weight(in_active)
    keep = None
    mask = getattr(module, "weight_mask", None)
    if mask is not None and (getattr(module, "groups", 1) == 1):
        alive = theta.detach().abs().sum(dim=(0, 2, 3)) != 0
        if not bool(alive.all()) and bool(alive.any()):
            keep = alive.nonzero().flatten()  # a constant of the graph (which channels), not a weight
            theta = theta[:, keep]
    stack.enter_context(_swapped(module, "parameters", "weight", _param(theta)))
    if mask is not None:
        stack.enter_context(_swapped(module, "buffers", "weight_mask", None))
    if getattr(module, "noise_conditioned", False):
        stack.enter_context(_swapped(module, "parameters", "eta", _param(torch.zeros_like(theta))))
    stack.enter_context(_attribute(module, "forward", _conv_forward(module, in_active, keep)))


@contextlib.contextmanager
def _noise_off(module) -> Iterator[None]:
    """No noise drawn while the effective weight is read (its scale is the knob's; the export adds eta)."""
    flag = getattr(module, "noise_conditioned", False)
    module.noise_conditioned = False
    try:
        yield None
    finally:
        module.noise_conditioned = flag


@contextlib.contextmanager
def _attribute(obj, name: str, value) -> Iterator[None]:
    had = name in obj.__dict__
    old = obj.__dict__.get(name)
    obj.__dict__[name] = value
    try:
        yield
    finally:
        if had:
            obj.__dict__[name] = old
        else:
            obj.__dict__.pop(name, None)


def _prepare_linear(stack, module, in_active: int) -> None:
    """A linear layer's weight at the features that run (a slim model's hidden and classifier inputs)."""
    weight = module.weight
    if in_active != weight.shape[1]:
        stack.enter_context(_swapped(module, "parameters", "weight", _param(weight[:, :in_active])))


def _prepare_film(stack, module, encoding) -> None:
    """A FiLM as FiLM(d, C_a) at the active width, its MLP rows and columns those of mu and sigma."""
    import torch

    channels, active = int(module.channels), int(module.active_channels())
    rows = torch.cat([torch.arange(active), channels + torch.arange(active)])
    first, last = module.mlp[0], module.mlp[-1]
    if active != channels:
        stack.enter_context(_swapped(first, "parameters", "weight", _param(first.weight[rows])))
        stack.enter_context(_swapped(first, "parameters", "bias", _param(first.bias[rows])))
        stack.enter_context(_swapped(last, "parameters", "weight", _param(last.weight[rows][:, rows])))
        stack.enter_context(_swapped(last, "parameters", "bias", _param(last.bias[rows])))
    stack.enter_context(_attribute(module, "forward", _film_forward(module, encoding, active)))


def _rename_inputs(path) -> None:
    """Drop the wrapper's ``model.`` prefix from the weight inputs' names (``layer1.0.conv1.weight``)."""
    import onnx

    graph = onnx.load(str(path))
    renames = {i.name: i.name.removeprefix("model.") for i in graph.graph.input if i.name.startswith("model.")}
    for value in graph.graph.input:
        value.name = renames.get(value.name, value.name)
    for node in graph.graph.node:
        node.input[:] = [renames.get(n, n) for n in node.input]
    onnx.save(graph, str(path))
    _check(path)
