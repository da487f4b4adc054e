"""The dispatch-mode recorder: every aten op of one forward, with its module and the data flow.

Data flow is tracked per tensor: which weight layer last wrote it along the deepest chain of weight layers
(FiLM ownership, projection shortcuts, output layers) and whether it derives from the model's input (an
activation) or only from stored tensors (weights). A product of two activations is a ``matmul`` record; a
product with a stored operand is a linear layer.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Mapping

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.weak import WeakIdKeyDictionary

from hwsim.errors import HwsimError
from hwsim.trace import ops as O
from hwsim.trace.modules import ModuleStack, is_norm


class Recorder(TorchDispatchMode):
    """Records conv / linear / matmul ops with their module, op counts by category, and the data flow."""

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        # A trace never runs under torch.compile. Returning True (the default) wraps __torch_dispatch__ in
        # torch._dynamo.disable, which imports torch._dynamo (1.5 s) on the first op of every process.
        return False

    def __init__(self, tracker: ModuleStack, param_names: dict[int, str] | None = None) -> None:
        super().__init__()
        self.tracker = tracker
        # Parameters by identity (SPEC 5.2): id(stored parameter) -> its name, and every tensor computed from
        # stored parameters alone (a sliced, masked or noisy weight) -> the names of those it was read from.
        self.param_names = dict(param_names or {})
        self.derived = WeakIdKeyDictionary()
        # Views of one stored parameter (a slice, an expand: ``pos_embed[..., :c]``) -> its name, and the
        # entries of each parameter the forward read where it met the data: name -> the most entries one
        # read covered, or None where a read went through a computed copy (entries unknown: all count).
        self.views = WeakIdKeyDictionary()
        self.param_reads: dict[str, int | None] = {}
        self.layers: list[dict] = []
        self.ops: Counter[str] = Counter()
        self.unsupported: Counter[str] = Counter()
        self.film_ops: defaultdict[int, Counter[str]] = defaultdict(Counter)  # id(FiLM) -> its own op counts
        # id(tensor) -> (index of the weight layer that last wrote it, depth in weight layers). The tensors
        # are kept alive in `self._keep` so that ids are not reused while the trace runs; a tensor not in it
        # has origin (-1, 0) and is no activation.
        self.provenance: dict[int, tuple[int, int]] = {}
        self.activations: set[int] = set()  # ids of tensors computed from the model's input
        # id(tensor) -> the normalization that wrote it: the output of every normalization module (BatchNorm,
        # BatchNormAct2d, LayerNorm, LayerNorm2d, GroupNorm: what a channels-first LayerNorm2d returns after
        # its permutes, what BatchNormAct2d returns after its activation), and of a norm op called outside one
        self.norm_outputs: dict[int, object] = {}
        # id(norm output) -> one flag per use: True where it is the shallower operand of a residual add
        self.norm_uses: defaultdict[int, list[bool]] = defaultdict(list)
        self.first_conv: int | None = None
        self.computed_weights: list[object] = []
        self._keep: list[torch.Tensor] = []
        tracker.leave_hooks.append(self._left_module)

    def _left_module(self, module, output) -> None:
        if is_norm(module) and isinstance(output, torch.Tensor) and id(output) in self.provenance:
            self.norm_outputs[id(output)] = module

    def mark_input(self, tensor: torch.Tensor) -> None:
        self.activations.add(id(tensor))
        self._keep.append(tensor)

    def origin(self, tensor: torch.Tensor) -> tuple[int, int]:
        return self.provenance.get(id(tensor), (-1, 0))

    def sources(self, tensor: object) -> frozenset[str]:
        """Names of the stored parameters ``tensor`` is (or was computed from); empty for an activation."""
        if not isinstance(tensor, torch.Tensor):
            return frozenset()
        name = self.param_names.get(id(tensor))
        if name is not None:
            return frozenset((name,))
        return self.derived.get(tensor, frozenset())

    def region(self, tensor: object) -> tuple[tuple[str, ...], str]:
        """(the parameters a weight operand reads, a key of the stored region it reads): two operands with
        the same key read the same stored entries (a layer called twice), different keys different ones
        (the q, k and v slices of one packed ``in_proj_weight``)."""
        names = tuple(sorted(self.sources(tensor)))
        if not names or not isinstance(tensor, torch.Tensor):
            return names, ""
        return names, f"{'+'.join(names)}@{tensor.storage_offset()}:{'x'.join(str(v) for v in tensor.shape)}"

    def is_activation(self, tensor: object) -> bool:
        return isinstance(tensor, torch.Tensor) and id(tensor) in self.activations

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in O.CONV_OPS:
            self._check_batched(func, args, kwargs)
        shape = O.conv_output_shape(func, args, kwargs)
        if shape is not None:  # shapes are all a trace needs: skip the convolution's arithmetic
            out = torch.zeros(shape, dtype=args[0].dtype, device=args[0].device)
        else:
            out = func(*args, **kwargs)
        inputs = [a for a in tree_leaves((args, kwargs)) if isinstance(a, torch.Tensor)]
        source = max((self.origin(t) for t in inputs), key=lambda p: p[1], default=(-1, 0))
        activation = any(id(t) in self.activations for t in inputs)
        in_film = self.tracker.inside_film()
        if not activation and inputs:
            sources = frozenset().union(*(self.sources(t) for t in inputs))
            if sources:
                for tensor in tree_leaves(out):
                    if isinstance(tensor, torch.Tensor):
                        self.derived[tensor] = sources
        self._note_param_reads(func, args, inputs, out, activation)
        effects = self._effects(func, args, kwargs, out)
        if effects is None:
            if in_film or not self.tracker.inside_noise_conv():  # (noise ops are counted from the structure)
                self.unsupported[str(func)] += 1
        elif isinstance(effects, Mapping):
            for category, n in effects.items():
                self._count(category, int(n), func, args, out, in_film)
        else:
            for effect in effects:
                index = self._apply(effect, func, out, in_film)
                if index is not None:
                    source = (index, source[1] + 1)
        leaves = [t for t in tree_leaves(out) if isinstance(t, torch.Tensor)]
        # Only tensors with something to remember are kept alive (so that their ids stay theirs): those
        # computed from the input or from a weight layer's output, and BN outputs. One computed from stored
        # tensors alone (a masked or noisy weight) has the default origin: it is freed as in a plain forward.
        norm_op = func in O.BN_OPS or func in O.NORM_OPS
        if activation or source != (-1, 0) or norm_op:
            for tensor in leaves:
                self.provenance[id(tensor)] = source
                if activation:
                    self.activations.add(id(tensor))
                self._keep.append(tensor)
        self._note_norm_uses(func, args, inputs)
        if norm_op and leaves and not is_norm(self.tracker.current()):  # (a norm module: its output, on leaving)
            self.norm_outputs[id(leaves[0])] = self.tracker.current()
        return out

    def _note_param_reads(self, func, args, inputs, out, activation: bool) -> None:
        """Track views of stored parameters, and how many of a parameter's entries each op that meets the data
        reads: a strided view reads the product of its sizes along the axes it does not repeat (an expanded
        axis has stride 0), so ``cls_token[..., :c].expand(B, -1, -1)`` reads c entries (SPEC 5: at a slim
        width, free parameters count their active slice)."""
        if getattr(func, "is_view", False) and args and isinstance(args[0], torch.Tensor):
            name = self.param_names.get(id(args[0])) or self.views.get(args[0])
            if name is not None:
                for tensor in tree_leaves(out):
                    if isinstance(tensor, torch.Tensor):
                        self.views[tensor] = name
            return
        if not activation:
            return
        for tensor in inputs:
            if id(tensor) in self.activations:
                continue
            name = self.param_names.get(id(tensor)) or self.views.get(tensor)
            if name is not None:
                entries = math.prod(n for n, st in zip(tensor.shape, tensor.stride(), strict=True) if st != 0)
                if self.param_reads.get(name, 0) is not None:
                    self.param_reads[name] = max(self.param_reads.get(name, 0), int(entries))
            else:
                for source in self.sources(tensor):
                    self.param_reads[source] = None

    def _check_batched(self, func, args, kwargs) -> None:
        """A conv called on an unbatched input ran on a trace input of the wrong rank: refuse it rather than
        count a 2-D conv over a 1-D input's channel axis."""
        try:
            conv = O.conv_call(func, args, kwargs)
        except (TypeError, ValueError, IndexError, AttributeError, KeyError):
            return
        x, weight = conv.x, conv.weight
        if isinstance(x, torch.Tensor) and isinstance(weight, torch.Tensor) and x.dim() != weight.dim():
            nd = weight.dim() - 2
            raise HwsimError(f"layer {self.tracker.name(self.tracker.current())!r} is a {nd}-D conv and got an "
                             f"input of {x.dim()} dims {tuple(x.shape)} (an unbatched call): the input size does "
                             f"not fit the model; give C and {nd} spatial size{'s' if nd > 1 else ''}")

    @staticmethod
    def _effects(func, args, kwargs, out):
        """What the op's handler says it costs (None: no handler, or one that cannot read this call)."""
        handler = O.HANDLERS.get(func)
        if handler is None:
            return None
        try:
            effects = handler(args, kwargs, out)
        except O.Unsupported:
            return None
        return () if effects is None else effects

    def _apply(self, effect, func, out, in_film: bool) -> int | None:
        """Record one effect of an op; returns the index of the weight layer it wrote, if any."""
        if in_film:  # the FiLM's own MLP: conditioning ops, counted apart (SPEC 5)
            if isinstance(effect, O.Conv):
                macs = _conv_macs(effect, out)
            elif isinstance(effect, O.Product):
                macs = math.prod(effect.dims)
            elif isinstance(effect, O.Attention):
                macs = math.prod(effect.qk) + math.prod(effect.av)
            else:
                raise TypeError(f"a handler returned {effect!r}, not an effect of hwsim.trace.ops")
            self.ops["film_mlp_macs"] += macs
            self.film_ops[id(self.tracker.current_film())]["mlp_macs"] += macs
            return None
        if isinstance(effect, O.Conv):
            return self._record_conv(effect, out)
        if isinstance(effect, O.Product):
            return self._record_product(effect, func)
        if isinstance(effect, O.Attention):
            self._append_matmul(*effect.qk)
            self._append_matmul(*effect.av)
            self.ops["softmax"] += effect.qk[0] * effect.qk[1] * effect.qk[3]  # one softmax element per score
            return None
        raise TypeError(f"a handler returned {effect!r}, not an effect of hwsim.trace.ops")

    def _note_norm_uses(self, func, args, inputs) -> None:
        """Record how each BN output is used: a BN whose output only ever enters residual adds as the
        shallower operand sits on a projection shortcut (an identity shortcut carrying a BN output, as in
        MobileNetV2, also feeds the next block's body, so its BN is not one)."""
        shallower: set[int] = set()
        operands = [a for a in args[:2] if isinstance(a, torch.Tensor)]
        if func in O.RESIDUAL_ADD_OPS and len(operands) == 2 and operands[0].shape == operands[1].shape:
            deepest = max(self.origin(t)[1] for t in operands)
            shallower = {id(t) for t in operands if self.origin(t)[1] < deepest}
            if not shallower and all(id(t) in self.norm_outputs for t in operands):
                # A projection shortcut as deep as the block body (one conv on each side): the shortcut is
                # the side whose conv has the smaller kernel (the 1 x 1 projection); equal kernels: neither
                sizes = [self._kernel_volume(self.origin(t)[0]) for t in operands]
                if sizes[0] != sizes[1]:
                    shallower = {id(operands[sizes.index(min(sizes))])}
        for tensor in inputs:
            if id(tensor) in self.norm_outputs:
                self.norm_uses[id(tensor)].append(id(tensor) in shallower)

    def _kernel_volume(self, index: int) -> int:
        if index < 0:
            return 0
        return math.prod(self.layers[index].get("kernel", ()) or (1,))

    @property
    def shortcut_norms(self) -> list[object]:
        norms = [m for key, m in self.norm_outputs.items() if self.norm_uses.get(key) and all(self.norm_uses[key])]
        return list(dict.fromkeys(norms))

    def _own_weight(self, weight: torch.Tensor) -> None:
        module = self.tracker.current()
        own = () if module is None else tuple(module.parameters(recurse=False))
        if not any(weight is p for p in own) and module not in self.computed_weights:
            self.computed_weights.append(module)

    def _record_conv(self, conv, out) -> int:
        x, weight = conv.x, conv.weight
        self._own_weight(weight)
        if self.first_conv is None and self.is_activation(x):
            self.first_conv = len(self.layers)
        nd = weight.dim() - 2
        in_size = tuple(int(v) for v in x.shape[-nd:]) if nd else ()
        out_size = tuple(int(v) for v in out.shape[-nd:]) if nd and isinstance(out, torch.Tensor) else ()
        # Each weight is used at every output position (at every input position for a transposed conv)
        positions = in_size if conv.transposed else out_size
        self.layers.append({
            "module": self.tracker.current(), "kind": "conv", "groups": conv.groups, "c_in": conv.c_in,
            "c_out": conv.c_out, "kernel": conv.kernel, "strides": conv.stride, "padding": conv.padding,
            "dilation": conv.dilation, "in_size": in_size, "out_size": out_size, "positions": positions,
            "transposed": conv.transposed, "weight": weight.shape, "bias": _shape(conv.bias),
            **self._regions(weight, conv.bias),
        })
        return len(self.layers) - 1

    def _record_product(self, product, func) -> int | None:
        """A linear layer (one stored operand; returns its index) or a matmul record (two activations)."""
        a, b, bias, (batch, n, k, m) = product.a, product.b, product.bias, product.dims
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
        if not product.linear:
            weight = weight.t() if stored_b else weight  # as [C_out, C_in], the layout of nn.Linear and masks
        else:
            self._own_weight(weight)
        self.layers.append({
            "module": self.tracker.current(), "kind": "linear", "groups": 1, "c_in": int(c_in), "c_out": int(c_out),
            "positions": (int(positions),), "weight": weight.shape,
            "bias": _shape(bias) if isinstance(bias, torch.Tensor) and bias.dim() <= 1 else None,
            **self._regions(product.b if stored_b else product.a,
                            bias if isinstance(bias, torch.Tensor) and bias.dim() <= 1 else None),
        })
        return len(self.layers) - 1

    def _regions(self, weight, bias) -> dict:
        w_names, w_region = self.region(weight)
        b_names, b_region = self.region(bias)
        return {"params_of": tuple(dict.fromkeys((*w_names, *b_names))), "weight_region": w_region,
                "bias_region": b_region}

    def _append_matmul(self, batch: int, n: int, k: int, m: int) -> None:
        if min(batch, n, k, m) < 1:
            return
        self.layers.append({
            "module": self.tracker.current(), "kind": "matmul", "groups": 1, "c_in": int(k), "c_out": int(m),
            "positions": (int(batch), int(n)), "weight": None, "bias": None,
        })

    def _count(self, category: str, n: int, func, args, out, in_film: bool) -> None:
        """Elements of an ``--ops all`` category (inside a FiLM: its affine ops; inside a noise conv: nothing,
        the noise adds are counted per conv from the structure)."""
        if in_film:
            self.ops["film_affine"] += n
            self.film_ops[id(self.tracker.current_film())]["affine"] += n
        elif self.tracker.inside_noise_conv():
            pass
        elif category == "elementwise" and func in O.RESIDUAL_ADD_OPS and all(
                isinstance(a, torch.Tensor) and a.shape == out.shape for a in args[:2]):
            self.ops["add"] += n
        else:
            self.ops[category] += n


def _conv_macs(conv, out) -> int:
    """MACs of a convolution: kernel x (C_i / g) x C_o x positions (input positions when transposed)."""
    nd = conv.weight.dim() - 2
    at = conv.x if conv.transposed else out
    return math.prod(conv.kernel) * (conv.c_in // conv.groups) * conv.c_out * math.prod(at.shape[-nd:])


def _shape(tensor: object) -> torch.Size | None:
    """A recorded operand's shape. Records keep no tensor, so that a weight computed in the forward (masked,
    noisy, sliced) is freed as the forward goes on instead of living until the trace is built."""
    return tensor.shape if isinstance(tensor, torch.Tensor) else None
