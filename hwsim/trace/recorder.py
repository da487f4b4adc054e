"""The dispatch-mode recorder: every aten op of one forward, with its module and the data flow.

Data flow is tracked per tensor: which weight layer last wrote it along the deepest chain of weight layers
(FiLM ownership, projection shortcuts, output layers) and whether it derives from the model's input (an
activation) or only from stored tensors (weights). A product of two activations is a ``matmul`` record; a
product with a stored operand is a linear layer.
"""

from __future__ import annotations

from collections import Counter, defaultdict

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from hwsim.trace import ops as O
from hwsim.trace.modules import ModuleStack


class Recorder(TorchDispatchMode):
    """Records conv / linear / matmul ops with their module, op counts by category, and the data flow."""

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        # A trace never runs under torch.compile. Returning True (the default) wraps __torch_dispatch__ in
        # torch._dynamo.disable, which imports torch._dynamo (1.5 s) on the first op of every process.
        return False

    def __init__(self, tracker: ModuleStack) -> None:
        super().__init__()
        self.tracker = tracker
        self.layers: list[dict] = []
        self.ops: Counter[str] = Counter()
        self.unsupported: Counter[str] = Counter()
        self.film_ops: defaultdict[int, Counter[str]] = defaultdict(Counter)  # id(FiLM) -> its own op counts
        # id(tensor) -> (index of the weight layer that last wrote it, depth in weight layers). The tensors
        # are kept alive in `self._keep` so that ids are not reused while the trace runs; a tensor not in it
        # has origin (-1, 0) and is no activation.
        self.provenance: dict[int, tuple[int, int]] = {}
        self.activations: set[int] = set()  # ids of tensors computed from the model's input
        self.norm_outputs: dict[int, object] = {}  # id(tensor) -> the BN module that wrote it
        # id(BN output) -> one flag per use: True where it is the shallower operand of a residual add
        self.norm_uses: defaultdict[int, list[bool]] = defaultdict(list)
        self.first_conv: int | None = None
        self.computed_weights: list[object] = []
        self._keep: list[torch.Tensor] = []

    def mark_input(self, tensor: torch.Tensor) -> None:
        self.activations.add(id(tensor))
        self._keep.append(tensor)

    def origin(self, tensor: torch.Tensor) -> tuple[int, int]:
        return self.provenance.get(id(tensor), (-1, 0))

    def is_activation(self, tensor: object) -> bool:
        return isinstance(tensor, torch.Tensor) and id(tensor) in self.activations

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        shape = O.conv_output_shape(func, args, kwargs)
        if shape is not None:  # shapes are all a trace needs: skip the convolution's arithmetic
            out = torch.zeros(shape, dtype=args[0].dtype, device=args[0].device)
        else:
            out = func(*args, **kwargs)
        inputs = [a for a in tree_leaves((args, kwargs)) if isinstance(a, torch.Tensor)]
        source = max((self.origin(t) for t in inputs), key=lambda p: p[1], default=(-1, 0))
        activation = any(id(t) in self.activations for t in inputs)
        in_film = self.tracker.inside_film()
        if func in O.CONV_OPS and not in_film:
            source = (self._record_conv(args, kwargs, out), source[1] + 1)
        elif func in O.PRODUCT_OPS and not in_film:
            index = self._record_product(func, args, out)
            if index is not None:
                source = (index, source[1] + 1)
        elif func in O.ATTENTION_OPS and not in_film:
            self._record_attention(args)
        else:
            self._count(func, args, out, in_film)
        leaves = [t for t in tree_leaves(out) if isinstance(t, torch.Tensor)]
        # Only tensors with something to remember are kept alive (so that their ids stay theirs): those
        # computed from the input or from a weight layer's output, and BN outputs. One computed from stored
        # tensors alone (a masked or noisy weight) has the default origin: it is freed as in a plain forward.
        if activation or source != (-1, 0) or func in O.BN_OPS:
            for tensor in leaves:
                self.provenance[id(tensor)] = source
                if activation:
                    self.activations.add(id(tensor))
                self._keep.append(tensor)
        self._note_norm_uses(func, args, inputs)
        if func in O.BN_OPS and leaves:
            self.norm_outputs[id(leaves[0])] = self.tracker.current()
        return out

    def _note_norm_uses(self, func, args, inputs) -> None:
        """Record how each BN output is used: a BN whose output only ever enters residual adds as the
        shallower operand sits on a projection shortcut (an identity shortcut carrying a BN output, as in
        MobileNetV2, also feeds the next block's body, so its BN is not one)."""
        shallower: set[int] = set()
        operands = [a for a in args[:2] if isinstance(a, torch.Tensor)]
        if func in O.RESIDUAL_ADD_OPS and len(operands) == 2 and operands[0].shape == operands[1].shape:
            deepest = max(self.origin(t)[1] for t in operands)
            shallower = {id(t) for t in operands if self.origin(t)[1] < deepest}
        for tensor in inputs:
            if id(tensor) in self.norm_outputs:
                self.norm_uses[id(tensor)].append(id(tensor) in shallower)

    @property
    def shortcut_norms(self) -> list[object]:
        norms = [m for key, m in self.norm_outputs.items() if self.norm_uses.get(key) and all(self.norm_uses[key])]
        return list(dict.fromkeys(norms))

    def _own_weight(self, weight: torch.Tensor) -> None:
        module = self.tracker.current()
        own = () if module is None else tuple(module.parameters(recurse=False))
        if not any(weight is p for p in own) and module not in self.computed_weights:
            self.computed_weights.append(module)

    def _record_conv(self, args, kwargs, out) -> int:
        x, weight = args[0], args[1]
        bias = args[2] if len(args) > 2 else kwargs.get("bias")
        stride = args[3] if len(args) > 3 else kwargs.get("stride", 1)
        groups = args[-1] if isinstance(args[-1], int) and len(args) >= 7 else kwargs.get("groups", 1)
        stride = stride[0] if isinstance(stride, (list, tuple)) else stride
        c_out, c_in_g, kh = weight.shape[0], weight.shape[1], weight.shape[2]
        self._own_weight(weight)
        if self.first_conv is None and self.is_activation(x):
            self.first_conv = len(self.layers)
        self.layers.append({
            "module": self.tracker.current(), "kind": "conv", "k": int(kh), "stride": int(stride),
            "groups": int(groups), "c_in": int(c_in_g * groups), "c_out": int(c_out),
            "h_out": int(out.shape[-2]), "w_out": int(out.shape[-1]) if out.dim() > 2 else 1,
            "weight": weight.shape, "bias": _shape(bias),
        })
        return len(self.layers) - 1

    def _record_product(self, func, args, out) -> int | None:
        """A linear layer (one stored operand; returns its index) or a matmul record (two activations)."""
        try:
            a, b, bias, (batch, n, k, m) = O.product_operands(func, args)
        except NotImplementedError:
            self.unsupported[str(func)] += 1
            return None
        a_act, b_act = self.is_activation(a), self.is_activation(b)
        if a_act and b_act:  # activation x activation: no stored operand
            self._append_matmul(batch, n, k, m)
            return None
        stored_b = not b_act  # x @ W (or W_a @ W_b, a layer on stored inputs); else W @ x
        weight, positions = (b, batch * n) if stored_b else (a, batch * m)
        c_in, c_out = (k, m) if stored_b else (k, n)
        if weight.numel() != c_in * c_out:  # a stored operand with its own batch dims: not one weight matrix
            self.unsupported[str(func)] += 1
            return None
        if func is not O.aten.linear.default:
            weight = weight.t() if stored_b else weight  # as [C_out, C_in], the layout of nn.Linear and masks
        else:
            self._own_weight(weight)
        self.layers.append({
            "module": self.tracker.current(), "kind": "linear", "k": 1, "stride": 1, "groups": 1,
            "c_in": int(c_in), "c_out": int(c_out), "h_out": int(positions), "w_out": 1,
            "weight": weight.shape,
            "bias": _shape(bias) if isinstance(bias, torch.Tensor) and bias.dim() <= 1 else None,
        })
        return len(self.layers) - 1

    def _append_matmul(self, batch: int, n: int, k: int, m: int) -> None:
        if min(batch, n, k, m) < 1:
            return
        self.layers.append({
            "module": self.tracker.current(), "kind": "matmul", "k": 1, "stride": 1, "groups": 1,
            "c_in": int(k), "c_out": int(m), "h_out": int(n), "w_out": int(batch), "weight": None, "bias": None,
        })

    def _record_attention(self, args) -> None:
        qk, av = O.attention_products(args)
        self._append_matmul(*qk)
        self._append_matmul(*av)
        self.ops["softmax"] += qk[0] * qk[1] * qk[3]  # one softmax element per attention score

    def _count(self, func, args, out, in_film: bool) -> None:
        numel = out.numel() if isinstance(out, torch.Tensor) else sum(
            t.numel() for t in tree_leaves(out)[:1] if isinstance(t, torch.Tensor))
        if in_film:
            if func in O.PRODUCT_OPS:
                macs = O.linear_macs(func, args)
                self.ops["film_mlp_macs"] += macs
                self.film_ops[id(self.tracker.current_film())]["mlp_macs"] += macs
            elif func in O.ELEMENTWISE_OPS or func in O.ACT_OPS:
                self.ops["film_affine"] += numel
                self.film_ops[id(self.tracker.current_film())]["affine"] += numel
            elif func not in O.FREE_OPS:
                self.unsupported[str(func)] += 1
        elif self.tracker.inside_noise_conv():
            pass  # noise ops are counted per conv from the structure (see build); never unsupported
        elif func in O.BN_OPS:
            self.ops["bn"] += numel
        elif func in O.NORM_OPS:
            self.ops["norm"] += numel
        elif func in O.SOFTMAX_OPS:
            self.ops["softmax"] += numel
        elif func in O.ACT_OPS:
            self.ops["activation"] += numel
        elif func in O.POOL_OPS:
            self.ops["pool"] += args[0].numel()
        elif func in O.RESIDUAL_ADD_OPS and all(
                isinstance(a, torch.Tensor) and a.shape == out.shape for a in args[:2]):
            self.ops["add"] += numel
        elif func in O.ELEMENTWISE_OPS:
            self.ops["elementwise"] += numel
        elif func not in O.FREE_OPS:
            self.unsupported[str(func)] += 1


def _shape(tensor: object) -> torch.Size | None:
    """A recorded operand's shape. Records keep no tensor, so that a weight computed in the forward (masked,
    noisy, sliced) is freed as the forward goes on instead of living until the trace is built."""
    return tensor.shape if isinstance(tensor, torch.Tensor) else None
