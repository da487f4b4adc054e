"""Which aten ops the tracer counts, and the shape arithmetic of the ones it records (no module state here).

Ops are grouped by what they cost: weight layers (conv, and the products that become linear layers or
``matmul`` records), the ``--ops all`` categories, and free ops (views, shape ops, tensor factories), which
cost nothing by convention. An op in none of these tables is listed as unsupported, never taken as free.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch.utils._pytree import tree_leaves

aten = torch.ops.aten

CONV_OPS = {aten.conv1d.default, aten.conv2d.default, aten.conv3d.default, aten.conv1d.padding, aten.conv2d.padding,
            aten.conv3d.padding, aten.convolution.default, aten._convolution.default, aten.conv_transpose1d.default,
            aten.conv_transpose2d.input, aten.conv_transpose3d.input}
# Products of two operands: a linear layer when one operand is a stored weight, a `matmul` record when both
# are activations (SPEC 3). Seen composite (linear, matmul, einsum) or decomposed (addmm, mm, bmm), as the
# dispatcher hands them over.
PRODUCT_OPS = {aten.linear.default, aten.addmm.default, aten.mm.default, aten.bmm.default, aten.baddbmm.default,
               aten.matmul.default, aten.einsum.default}
# Fused attention: softmax(q k^T * scale) v, two activation x activation products (FlopCounterMode on CPU
# misses the composite op; we count it from q, k, v).
ATTENTION_OPS = {aten.scaled_dot_product_attention.default,
                 aten._scaled_dot_product_flash_attention_for_cpu.default,
                 aten._scaled_dot_product_flash_attention.default,
                 aten._scaled_dot_product_efficient_attention.default,
                 aten._scaled_dot_product_cudnn_attention.default}
BN_OPS = {aten.batch_norm.default, aten.native_batch_norm.default,
          aten._native_batch_norm_legit_no_training.default, aten._native_batch_norm_legit.default,
          aten._native_batch_norm_legit.no_stats}
NORM_OPS = {aten.layer_norm.default, aten.native_layer_norm.default, aten.group_norm.default,
            aten.native_group_norm.default}
SOFTMAX_OPS = {aten.softmax.int, aten._softmax.default, aten.log_softmax.int, aten._log_softmax.default}
ACT_OPS = {aten.relu.default, aten.relu_.default, aten.leaky_relu.default, aten.leaky_relu_.default,
           aten.hardtanh.default, aten.hardtanh_.default, aten.relu6.default, aten.gelu.default, aten.gelu_.default,
           aten.silu.default, aten.silu_.default, aten.sigmoid.default, aten.tanh.default, aten.elu.default,
           aten.hardswish.default, aten.hardswish_.default, aten.hardsigmoid.default, aten.hardsigmoid_.default,
           aten.softplus.default, aten.mish.default}
POOL_OPS = {aten.adaptive_avg_pool2d.default, aten._adaptive_avg_pool2d.default, aten.avg_pool2d.default,
            aten.max_pool2d.default, aten.max_pool2d_with_indices.default, aten.mean.dim,
            aten.adaptive_max_pool2d.default, aten.adaptive_avg_pool1d.default, aten.avg_pool1d.default,
            aten.max_pool1d.default}
RESIDUAL_ADD_OPS = {aten.add.Tensor, aten.add_.Tensor}
ELEMENTWISE_OPS = {aten.add.Tensor, aten.add_.Tensor, aten.sub.Tensor, aten.mul.Tensor, aten.mul_.Tensor,
                   aten.div.Tensor, aten.div_.Tensor, aten.add.Scalar, aten.mul.Scalar, aten.sub.Scalar,
                   aten.div.Scalar, aten.rsub.Scalar, aten.neg.default, aten.pow.Tensor_Scalar, aten.sqrt.default,
                   aten.rsqrt.default, aten.exp.default, aten.erf.default, aten.clamp.default,
                   aten.clamp_min.default, aten.masked_fill.Scalar, aten.where.self}
# Ops that move or view data, or make tensors without arithmetic on activations: free by convention.
FREE_OPS = {aten.view.default, aten._unsafe_view.default, aten.reshape.default, aten._reshape_alias.default,
            aten.view_as.default, aten.view.dtype, aten.t.default, aten.transpose.int, aten.permute.default,
            aten.movedim.int, aten.mT.default, aten.numpy_T.default, aten.expand.default, aten.expand_as.default,
            aten.slice.Tensor, aten.select.int, aten.narrow.default, aten.narrow_copy.default,
            aten.unsqueeze.default, aten.unsqueeze_.default, aten.squeeze.dim, aten.squeeze.default,
            aten.squeeze.dims, aten.flatten.using_ints, aten.unflatten.int, aten.as_strided.default,
            aten.clone.default, aten.contiguous.default, aten.detach.default, aten.detach_.default,
            aten.alias.default, aten.lift_fresh.default, aten.lift_fresh_copy.default,
            aten.unbind.int, aten.split.Tensor, aten.split.sizes, aten.split_with_sizes.default,
            aten.unsafe_split.Tensor, aten.chunk.default, aten.unsafe_chunk.default, aten.tensor_split.sections,
            aten.tensor_split.indices, aten.cat.default, aten.stack.default, aten.repeat.default,
            aten.tile.default, aten.repeat_interleave.self_int, aten.roll.default, aten.flip.default,
            aten.constant_pad_nd.default, aten.pad.default, aten.index.Tensor, aten.index_select.default,
            aten.gather.default, aten.embedding.default,
            aten.empty.memory_format, aten.empty_like.default, aten.zeros_like.default, aten.ones_like.default,
            aten.full.default, aten.zeros.default, aten.ones.default, aten.new_empty.default, aten.new_zeros.default,
            aten.new_ones.default, aten.fill_.Scalar, aten._to_copy.default, aten.copy_.default,
            aten.to.dtype, aten.to.dtype_layout, aten.to.device, aten.dropout.default, aten.dropout_.default,
            aten.native_dropout.default, aten.argsort.default, aten.sort.default, aten.nonzero.default,
            aten.arange.start, aten.arange.default, aten.scalar_tensor.default, aten.rand.default,
            aten.randn.default, aten.randn_like.default, aten.rand_like.default, aten._local_scalar_dense.default,
            # a lazy module (nn.LazyLinear) draws and installs its weights in its first forward
            aten.uniform_.default, aten.normal_.default, aten._has_compatible_shallow_copy_type.default,
            aten.abs.default, aten.argmin.default, aten.lt.Scalar, aten.gt.Scalar, aten.gt.Tensor, aten.eq.Scalar,
            aten.all.default, aten.any.default, aten.std.correction, aten.std.default, aten.sum.default}

#: ``--ops all`` categories: element counts per op category (SPEC 5), conditioning ops last.
OP_CATEGORIES = ("bn", "norm", "activation", "softmax", "add", "pool", "elementwise", "noise_add",
                 "film_mlp_macs", "film_affine")

# ------------------------------------------------------------------------------------ what a handler says
# A handler is a pure shape function ``handler(args, kwargs, out) -> effects`` of one aten op: it reads the
# op's operands and result (shapes, never values) and returns what the op costs, as a list of the effects
# below or as a mapping ``{category: elements}`` over OP_CATEGORIES (the short form for `--ops all` ops).
# The recorder decides the rest from the context (which module runs, whether an operand is an activation).


class Conv:
    """A convolution (any dimensionality, transposed or not) with its per-axis geometry."""

    __slots__ = ("x", "weight", "bias", "stride", "padding", "dilation", "groups", "transposed",
                 "output_padding")

    def __init__(self, x, weight, bias, stride, padding, dilation, groups, transposed=False, output_padding=0):
        nd = weight.dim() - 2
        self.x, self.weight, self.bias = x, weight, bias
        self.stride, self.dilation = _axes(stride, nd), _axes(dilation, nd)
        self.output_padding = _axes(output_padding, nd)
        self.groups, self.transposed = int(groups), bool(transposed)
        kernel = tuple(int(v) for v in weight.shape[2:])
        if padding == "valid":
            padding = 0
        if padding == "same":  # PyTorch pads dilation (k - 1) in all, the smaller half first
            padding = tuple(d * (k - 1) // 2 for d, k in zip(self.dilation, kernel))
        self.padding = _axes(padding, nd)

    @property
    def kernel(self) -> tuple[int, ...]:
        return tuple(int(v) for v in self.weight.shape[2:])

    @property
    def c_in(self) -> int:
        """Input channels (all groups)."""
        w = self.weight.shape
        return int(w[0]) if self.transposed else int(w[1]) * self.groups

    @property
    def c_out(self) -> int:
        w = self.weight.shape
        return int(w[1]) * self.groups if self.transposed else int(w[0])


class Product:
    """``batch`` products ``[N, K] @ [K, M]`` of operands ``a`` (N rows) and ``b`` (M columns), plus a bias:
    a linear layer when one operand is stored, a ``matmul`` record when both are activations."""

    __slots__ = ("a", "b", "bias", "dims", "linear")

    def __init__(self, a, b, bias, dims, linear=False):
        self.a, self.b, self.bias, self.dims, self.linear = a, b, bias, tuple(int(v) for v in dims), linear


class Attention:
    """The two activation products of attention, ``q k^T`` and ``attn v``, as ``(batch, N, K, M)`` each."""

    __slots__ = ("qk", "av")

    def __init__(self, qk, av):
        self.qk, self.av = qk, av


class Unsupported(Exception):
    """Raised by a handler for a call it cannot read (the op is then listed as unsupported)."""


def _axes(value, nd: int) -> tuple[int, ...]:
    if isinstance(value, int):
        return (int(value),) * nd
    value = tuple(int(v) for v in value)
    return value * nd if len(value) == 1 else value


def free(args, kwargs, out):
    """The handler of a free op: views, shape ops, copies and tensor factories cost nothing (convention)."""
    return ()


def elements(category: str, of_input: bool = False):
    """A handler counting the elements of the result (or of the first input) in ``category``."""
    if category not in OP_CATEGORIES:
        raise ValueError(f"unknown op category {category!r}; valid: {', '.join(OP_CATEGORIES)}")

    def handler(args, kwargs, out):
        if of_input:
            return {category: args[0].numel()}
        first = next((t for t in tree_leaves(out) if isinstance(t, torch.Tensor)), None)
        return {category: first.numel() if first is not None else 0}

    handler.category = category
    return handler


# ----------------------------------------------------------------------------------------------- convs
_CONV_NAMES = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")
_CONVOLUTION_NAMES = ("input", "weight", "bias", "stride", "padding", "dilation", "transposed", "output_padding",
                      "groups")
_TRANSPOSE_NAMES = ("input", "weight", "bias", "stride", "padding", "output_padding", "groups", "dilation")


def _conv_values(names, args, kwargs) -> dict:
    values = {"bias": None, "stride": 1, "padding": 0, "dilation": 1, "groups": 1, "transposed": False,
              "output_padding": 0}
    values.update(zip(names, args))
    values.update(kwargs)
    return values


def _conv_handler(names, transposed: bool | None = None):
    def handler(args, kwargs, out):
        v = _conv_values(names, args, kwargs)
        return [Conv(v["input"], v["weight"], v["bias"], v["stride"], v["padding"], v["dilation"], v["groups"],
                     v["transposed"] if transposed is None else transposed, v["output_padding"])]

    return handler


def conv_call(func, args, kwargs) -> Conv | None:
    """The :class:`Conv` of a convolution op (None for another op)."""
    handler = _CONV_PARSERS.get(func)
    return handler(args, kwargs, None)[0] if handler is not None else None


def conv_output_shape(func, args, kwargs) -> tuple[int, ...] | None:
    """The output shape PyTorch gives a convolution (1-3 spatial axes, transposed too), or None where we let
    the op run (unbatched input, a registered handler of the user's, or arguments PyTorch rejects)."""
    if func not in _CONV_PARSERS or HANDLERS.get(func) is not _CONV_PARSERS[func]:
        return None
    try:
        conv = conv_call(func, args, kwargs)
    except (TypeError, ValueError, IndexError, AttributeError):
        return None
    x, weight = conv.x, conv.weight
    nd = weight.dim() - 2
    if not isinstance(x, torch.Tensor) or x.dim() != nd + 2 or nd < 1:
        return None
    if x.shape[1] != (weight.shape[0] if conv.transposed else weight.shape[1] * conv.groups):
        return None  # channels that do not fit the weight: PyTorch raises its own error, as a real forward would
    if not (len(conv.stride) == len(conv.padding) == len(conv.dilation) == nd):
        return None
    size = []
    for i in range(nd):
        n, k, s, p, d = x.shape[2 + i], conv.kernel[i], conv.stride[i], conv.padding[i], conv.dilation[i]
        if conv.transposed:
            size.append((n - 1) * s - 2 * p + d * (k - 1) + conv.output_padding[i] + 1)
        elif _is_same(func, args, kwargs):
            size.append(n)
        else:
            size.append((n + 2 * p - d * (k - 1) - 1) // s + 1)
    if min(size) < 1:
        return None  # let PyTorch raise its own error for an input that is too small
    return (x.shape[0], conv.c_out, *size)


def _is_same(func, args, kwargs) -> bool:
    padding = kwargs.get("padding", args[4] if len(args) > 4 else 0)
    return padding == "same"


def product_operands(func, args) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, tuple[int, int, int, int]]:
    """``(a, b, bias, (batch, N, K, M))`` of a product op, read as ``batch`` products ``[N, K] @ [K, M]``.

    ``a`` is the operand with the N rows, ``b`` the one with the M columns (for ``linear`` the weight, whose
    stored layout is ``[M, K]``). Einsum takes two operands: contracted indices make K, indices of both
    operands kept in the output make the batch, the rest N (first operand) and M (second).
    """
    if func is aten.linear.default:
        x, weight = args[0], args[1]
        bias = args[2] if len(args) > 2 else None
        k = x.shape[-1]
        return x, weight, bias, (1, x.numel() // k if k else 0, k, weight.shape[0])
    if func is aten.einsum.default:
        return _einsum_operands(args[0], args[1])
    bias = None
    if func in (aten.addmm.default, aten.baddbmm.default):
        bias, a, b = args[0], args[1], args[2]
    else:
        a, b = args[0], args[1]
    a_shape = (1, *a.shape) if a.dim() == 1 else tuple(a.shape)
    b_shape = (*b.shape, 1) if b.dim() == 1 else tuple(b.shape)
    batch_shape = torch.broadcast_shapes(a_shape[:-2], b_shape[:-2])
    return a, b, bias, (math.prod(batch_shape), a_shape[-2], a_shape[-1], b_shape[-1])


def _einsum_operands(equation: str, operands) -> tuple:
    if len(operands) != 2 or "..." in equation or "->" not in equation:
        raise NotImplementedError(equation)
    a, b = operands
    lhs, out = equation.replace(" ", "").split("->")
    sa, sb = lhs.split(",")
    size = {**dict(zip(sa, a.shape)), **dict(zip(sb, b.shape))}
    prod = lambda letters: math.prod(size[c] for c in letters)  # noqa: E731
    batch = [c for c in size if c in sa and c in sb and c in out]
    contracted = [c for c in size if c in sa and c in sb and c not in out]
    rows = [c for c in sa if c not in sb]
    cols = [c for c in sb if c not in sa]
    return a, b, None, (prod(batch), prod(rows), prod(contracted), prod(cols))


def attention_products(args) -> tuple[tuple[int, int, int, int], tuple[int, int, int, int]]:
    """The two products inside attention on ``q [..., L, E]``, ``k [..., S, E]``, ``v [..., S, Ev]``:
    ``q k^T`` as ``(batch, L, E, S)`` and ``attn v`` as ``(batch, L, S, Ev)`` (batch = q's leading dims;
    grouped-query k / v are broadcast over q's heads)."""
    q, k, v = args[0], args[1], args[2]
    batch = math.prod(q.shape[:-2])
    length, embed, source, value = q.shape[-2], q.shape[-1], k.shape[-2], v.shape[-1]
    return (batch, length, embed, source), (batch, length, source, value)


def linear_macs(func, args) -> int:
    """MACs of a product op: batch x N x K x M."""
    batch, n, k, m = product_operands(func, args)[3]
    return batch * n * k * m


def _product_handler(func):
    def handler(args, kwargs, out):
        try:
            a, b, bias, dims = product_operands(func, args)
        except NotImplementedError as exc:
            raise Unsupported(str(exc)) from None
        return [Product(a, b, bias, dims, linear=func is aten.linear.default)]

    return handler


def _attention(args, kwargs, out):
    return [Attention(*attention_products(args))]


_CONV_PARSERS: dict = {}
for _op in CONV_OPS:
    if _op in (aten.convolution.default, aten._convolution.default):
        _CONV_PARSERS[_op] = _conv_handler(_CONVOLUTION_NAMES)
    elif "conv_transpose" in str(_op):
        _CONV_PARSERS[_op] = _conv_handler(_TRANSPOSE_NAMES, transposed=True)
    else:
        _CONV_PARSERS[_op] = _conv_handler(_CONV_NAMES, transposed=False)


def _default_handlers() -> dict:
    table: dict = dict.fromkeys(FREE_OPS, free)
    for ops, category, of_input in ((ELEMENTWISE_OPS, "elementwise", False), (BN_OPS, "bn", False),
                                    (NORM_OPS, "norm", False), (SOFTMAX_OPS, "softmax", False),
                                    (ACT_OPS, "activation", False), (POOL_OPS, "pool", True)):
        handler = elements(category, of_input)
        table.update(dict.fromkeys(ops, handler))
    table.update(_CONV_PARSERS)
    table.update({op: _product_handler(op) for op in PRODUCT_OPS})
    table.update(dict.fromkeys(ATTENTION_OPS, _attention))
    return table


#: The op table ``{aten op overload: handler}``; change it with :func:`register_op` only.
HANDLERS: dict = _default_handlers()


def register_op(op, handler: Callable | None) -> None:
    """Add or replace the handler of one aten op overload (``torch.ops.aten.foo.default``), as fvcore's
    ``set_op_handle``: ``handler(args, kwargs, out)`` is a pure shape function returning a mapping
    ``{category: elements}`` (categories :data:`OP_CATEGORIES`), a list of :class:`Conv` / :class:`Product` /
    :class:`Attention` effects, or nothing (``free``: the op costs nothing by convention). ``None`` removes
    the op's handler, so that it is listed as unsupported again. Applies to every later trace in the process
    (it is part of the tracing code: a cached trace of a model is not recomputed, so pass ``--no-cache`` or
    call :func:`hwsim.trace.trace_model` directly)."""
    if not isinstance(op, torch._ops.OpOverload):
        raise TypeError(f"register_op takes an aten op overload such as torch.ops.aten.mul.Tensor, not {op!r}")
    if handler is None:
        HANDLERS.pop(op, None)
    elif not callable(handler):
        raise TypeError(f"the handler of {op} must be callable, not {handler!r}")
    else:
        HANDLERS[op] = handler


def free_ops() -> list[str]:
    """The ops that cost nothing by convention (their handler is :func:`free`), by name."""
    return sorted(str(op) for op, handler in HANDLERS.items() if handler is free)
