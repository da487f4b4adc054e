"""Which aten ops the tracer counts, and the shape arithmetic of the ones it records (no module state here).

Ops are grouped by what they cost: weight layers (conv, and the products that become linear layers or
``matmul`` records), the ``--ops all`` categories, and free ops (views, shape ops, tensor factories), which
cost nothing by convention. An op in none of these tables is listed as unsupported, never taken as free.
"""

from __future__ import annotations

import math

import torch

aten = torch.ops.aten

CONV_OPS = {aten.conv2d.default, aten.convolution.default, aten._convolution.default, aten.conv1d.default}
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

_SHAPE_ONLY_CONV_OPS = {aten.conv2d.default, aten.convolution.default}


def _pair(value) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    value = tuple(value)
    return (value[0], value[0]) if len(value) == 1 else (value[0], value[1])


def conv_output_shape(func, args, kwargs) -> tuple[int, ...] | None:
    """The output shape PyTorch gives a 2-D convolution, or None where we let the op run (transposed,
    unbatched or unusual arguments, or an op other than conv2d / convolution)."""
    if func not in _SHAPE_ONLY_CONV_OPS:
        return None
    names = ("input", "weight", "bias", "stride", "padding", "dilation")
    names += ("transposed", "output_padding", "groups") if func is aten.convolution.default else ("groups",)
    values = dict(zip(names, args))
    values.update(kwargs)
    x, weight = values["input"], values["weight"]
    if x.dim() != 4 or weight.dim() != 4 or values.get("transposed", False):
        return None
    if x.shape[1] != weight.shape[1] * values.get("groups", 1):
        return None  # channels that do not fit the weight: PyTorch raises its own error, as a real forward would
    stride, dilation = _pair(values.get("stride", 1)), _pair(values.get("dilation", 1))
    padding = values.get("padding", 0)
    if padding == "valid":
        padding = 0
    if padding == "same":
        return (x.shape[0], weight.shape[0], x.shape[2], x.shape[3])
    padding = _pair(padding)
    size = [(x.shape[2 + i] + 2 * padding[i] - dilation[i] * (weight.shape[2 + i] - 1) - 1) // stride[i] + 1
            for i in range(2)]
    if min(size) < 1:
        return None  # let PyTorch raise its own error for an input that is too small
    return (x.shape[0], weight.shape[0], *size)


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
