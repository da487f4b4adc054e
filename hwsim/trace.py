"""The one adapter between PyTorch and the cost model: trace a model's forward into layer records.

:func:`trace_model` runs one forward pass of batch 1 under a ``TorchDispatchMode`` (every aten op the model
executes) with a module tracker (which module each op runs in) and returns an immutable :class:`Trace`:

* a :class:`LayerRecord` per conv / linear op with the shapes that actually ran (active width, so slimmed
  models are counted as they run), parameter and nonzero counts (masks applied), MACs, and the
  conditioning the delay model needs: ``noise`` when the conv module is marked ``noise_conditioned``,
  ``film`` when the conv owns a FiLM module (found from the data flow, never from names: a FiLM belongs to
  the conv that last wrote the tensor entering it, following the deepest chain of convs through adds, so a
  shortcut conv never owns one);
* element counts of the other ops by category (``--ops all``) and the conditioning ops (noise adds,
  FiLM MLP MACs, FiLM affine ops);
* the ops it does not know, listed with their counts, never silently taken as free.

Counters (:mod:`hwsim.count`) and the delay model (:mod:`hwsim.delay`) read only these records.

The trace runs on the model's own device with real tensors by default, but convolutions are not
computed: the recorder answers each one with a zero tensor of the output shape PyTorch would give (a test
checks these shapes against real forward passes), so a trace costs no convolution arithmetic and no
oneDNN kernel warm-up. ``device="meta"`` runs on the meta
device instead (no compute; worth it for large inputs), but the first meta op of a process imports
``torch._dynamo`` (about 2 s), more than a whole CIFAR-size trace costs on a CPU.

Pruning is read from ``weight_mask`` buffers (kept by the FLOATS variants and by ``torch.nn.utils.prune``):
nonzero counts and the channels that survive channel pruning come from the mask, never from zeros that
happen to sit in a dense weight.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from hwsim.delay import LayerShape
from hwsim.errors import HwsimError

aten = torch.ops.aten

_CONV_OPS = {aten.conv2d.default, aten.convolution.default, aten._convolution.default, aten.conv1d.default}
_LINEAR_OPS = {aten.linear.default, aten.addmm.default, aten.mm.default}
_BN_OPS = {aten.batch_norm.default, aten.native_batch_norm.default,
           aten._native_batch_norm_legit_no_training.default, aten._native_batch_norm_legit.default,
           aten._native_batch_norm_legit.no_stats}
_ACT_OPS = {aten.relu.default, aten.relu_.default, aten.leaky_relu.default, aten.leaky_relu_.default,
            aten.hardtanh.default, aten.hardtanh_.default, aten.gelu.default, aten.silu.default,
            aten.silu_.default, aten.sigmoid.default, aten.tanh.default, aten.elu.default}
_POOL_OPS = {aten.adaptive_avg_pool2d.default, aten._adaptive_avg_pool2d.default, aten.avg_pool2d.default,
             aten.max_pool2d.default, aten.max_pool2d_with_indices.default, aten.mean.dim,
             aten.adaptive_max_pool2d.default}
_ELEMENTWISE_OPS = {aten.add.Tensor, aten.add_.Tensor, aten.sub.Tensor, aten.mul.Tensor, aten.mul_.Tensor,
                    aten.div.Tensor, aten.div_.Tensor, aten.add.Scalar, aten.mul.Scalar, aten.sub.Scalar}
# Ops that move or view data, or make tensors without arithmetic on activations: free by convention.
_FREE_OPS = {aten.view.default, aten._unsafe_view.default, aten.reshape.default, aten.t.default,
             aten.transpose.int, aten.permute.default, aten.expand.default, aten.slice.Tensor,
             aten.select.int, aten.unsqueeze.default, aten.squeeze.dim, aten.squeeze.default,
             aten.flatten.using_ints, aten.clone.default, aten.detach.default, aten.detach_.default,
             aten.alias.default,
             aten.empty.memory_format, aten.empty_like.default, aten.zeros_like.default, aten.ones_like.default,
             aten.full.default, aten.zeros.default, aten.ones.default, aten.new_empty.default,
             aten._to_copy.default, aten.copy_.default, aten.cat.default, aten.split.Tensor,
             aten.split_with_sizes.default, aten.contiguous.default, aten.dropout.default,
             aten.native_dropout.default, aten.lift_fresh.default, aten.index.Tensor, aten.index_select.default,
             aten.argsort.default, aten.sort.default, aten.nonzero.default, aten.arange.start, aten.arange.default,
             aten.scalar_tensor.default, aten.rand.default, aten.randn.default, aten.randn_like.default,
             aten.rand_like.default, aten._local_scalar_dense.default, aten.abs.default, aten.argmin.default,
             aten.lt.Scalar, aten.gt.Scalar, aten.gt.Tensor, aten.eq.Scalar, aten.all.default, aten.any.default,
             aten.std.correction, aten.std.default, aten.sum.default, aten.to.dtype,
             aten.to.dtype_layout, aten.to.device}

OP_CATEGORIES = ("bn", "activation", "add", "pool", "elementwise", "noise_add", "film_mlp_macs", "film_affine")


@dataclass(frozen=True)
class LayerRecord:
    """One conv or linear op as it ran.

    ``c_in`` / ``c_out`` are the active channels (the weight slice that ran); ``c_in_eff`` / ``c_out_eff``
    count only channels the mask keeps any weight of (channel pruning). ``params`` counts the active
    weight and bias, ``nonzero_params`` the entries the mask keeps (all of them without a mask). ``macs`` = k^2 (C_i / g) C_o H_o W_o of the
    effective shape: pruned channels are not computed, irregular zeros still are (see ``nonzero_macs``).
    """

    name: str
    kind: str  # "conv" | "linear"
    k: int
    stride: int
    groups: int
    c_in: int
    c_out: int
    h_out: int
    w_out: int
    params: int
    nonzero_params: int
    weight_nonzero: int
    c_in_eff: int
    c_out_eff: int
    conditioning: str = "none"  # "none" | "noise" | "film"
    film_name: str | None = None
    film_dim: int = 0
    film_channels: int = 0
    masked: bool = False
    noise_adds: int = 0  # conditioning ops of this layer per forward: the noise added to every active weight
    film_mlp_macs: int = 0  # ... the MLP of the FiLM it owns
    film_affine_ops: int = 0  # ... and that FiLM's elementwise affine ops

    @property
    def weights(self) -> int:
        return self.k * self.k * (self.c_in // self.groups) * self.c_out

    @property
    def macs(self) -> int:
        return self.shape().macs if self.weight_nonzero else 0  # a layer pruned to nothing computes nothing

    @property
    def nonzero_macs(self) -> int:
        return self.weight_nonzero * self.h_out * self.w_out

    @property
    def formula(self) -> str:
        return {"none": "eq7", "noise": "eq8", "film": "eq9"}[self.conditioning]

    def shape(self) -> LayerShape:
        """The delay model's view: effective (channel-pruned) shape, nnz when irregular zeros remain."""
        c_in, c_out = (self.c_in_eff, self.c_out_eff) if self.groups == 1 else (self.c_in, self.c_out)
        dense = self.k * self.k * (c_in // self.groups) * c_out
        nnz = self.weight_nonzero if self.weight_nonzero < dense else None
        return LayerShape(
            name=self.name, kind=self.kind, k=self.k, c_in=c_in, c_out=c_out, h_out=self.h_out, w_out=self.w_out,
            groups=self.groups, formula=self.formula, film_dim=self.film_dim if self.conditioning == "film" else 0,
            film_channels=self.film_channels if self.conditioning == "film" else 0, nnz=nnz,
        )


@dataclass(frozen=True)
class FilmRecord:
    """A FiLM module that ran: its encoding size d, channels (active), parameters and owning conv."""

    name: str
    film_dim: int
    channels: int
    params: int
    owner: str | None
    mlp_macs: int = 0  # MACs of its MLP per forward (batch 1)
    affine_ops: int = 0  # elementwise ops of y = x * act(mu) + act(sigma), activations included


@dataclass(frozen=True)
class Trace:
    """Everything counted from one forward pass (batch 1)."""

    input_size: tuple[int, ...]
    layers: tuple[LayerRecord, ...]
    films: tuple[FilmRecord, ...]
    ops: dict[str, int]
    unsupported: dict[str, int]
    noise_convs: tuple[str, ...] = field(default=())

    def layer(self, name: str) -> LayerRecord:
        for record in self.layers:
            if record.name == name:
                return record
        raise KeyError(name)

    def shapes(self) -> list[LayerShape]:
        """Delay-model shapes of the layers that compute: a layer pruned to no weight at all is skipped."""
        return [record.shape() for record in self.layers if record.weight_nonzero > 0]


class _Recorder(TorchDispatchMode):
    """Records conv / linear ops with their module, and the data flow needed for FiLM ownership."""

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        # A trace never runs under torch.compile. Returning True (the default) wraps __torch_dispatch__ in
        # torch._dynamo.disable, which imports torch._dynamo (1.5 s) on the first op of every process.
        return False

    def __init__(self, tracker: _ModuleStack) -> None:
        super().__init__()
        self.tracker = tracker
        self.layers: list[dict] = []
        self.ops: Counter[str] = Counter()
        self.unsupported: Counter[str] = Counter()
        self.film_ops: defaultdict[int, Counter[str]] = defaultdict(Counter)  # id(FiLM) -> its own op counts
        # id(tensor) -> (index of the conv that last wrote it, depth in convs). The tensors are kept alive
        # in `self._keep` so that ids are not reused while the trace runs.
        self.provenance: dict[int, tuple[int, int]] = {}
        self._keep: list[torch.Tensor] = []

    def origin(self, tensor: torch.Tensor) -> tuple[int, int]:
        return self.provenance.get(id(tensor), (-1, 0))

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        shape = _conv_output_shape(func, args, kwargs) if func in _SHAPE_ONLY_CONV_OPS else None
        if shape is not None:  # shapes are all a trace needs: skip the convolution's arithmetic
            out = torch.zeros(shape, dtype=args[0].dtype, device=args[0].device)
        else:
            out = func(*args, **kwargs)
        inputs = [a for a in tree_leaves((args, kwargs)) if isinstance(a, torch.Tensor)]
        source = max((self.origin(t) for t in inputs), key=lambda p: p[1], default=(-1, 0))
        in_film = self.tracker.inside_film()
        if func in _CONV_OPS and not in_film:
            source = (self._record_conv(args, kwargs, out), source[1] + 1)
        elif func in _LINEAR_OPS and not in_film:
            self._record_linear(func, args, out)
        else:
            self._count(func, args, out, in_film)
        for tensor in tree_leaves(out):
            if isinstance(tensor, torch.Tensor):
                self.provenance[id(tensor)] = source
                self._keep.append(tensor)
        return out

    def _record_conv(self, args, kwargs, out) -> int:
        weight = args[1]
        bias = args[2] if len(args) > 2 else kwargs.get("bias")
        stride = args[3] if len(args) > 3 else kwargs.get("stride", 1)
        groups = args[-1] if isinstance(args[-1], int) and len(args) >= 7 else kwargs.get("groups", 1)
        stride = stride[0] if isinstance(stride, (list, tuple)) else stride
        c_out, c_in_g, kh = weight.shape[0], weight.shape[1], weight.shape[2]
        self.layers.append({
            "module": self.tracker.current(), "kind": "conv", "k": int(kh), "stride": int(stride),
            "groups": int(groups), "c_in": int(c_in_g * groups), "c_out": int(c_out),
            "h_out": int(out.shape[-2]), "w_out": int(out.shape[-1]), "weight": weight, "bias": bias,
        })
        return len(self.layers) - 1

    def _record_linear(self, func, args, out) -> None:
        if func is aten.linear.default:
            weight, bias = args[1], (args[2] if len(args) > 2 else None)
            c_out, c_in = weight.shape
        elif func is aten.addmm.default:
            bias, weight = args[0], args[2].t()
            c_out, c_in = weight.shape
        else:  # mm
            weight, bias = args[1].t(), None
            c_out, c_in = weight.shape
        self.layers.append({
            "module": self.tracker.current(), "kind": "linear", "k": 1, "stride": 1, "groups": 1,
            "c_in": int(c_in), "c_out": int(c_out), "h_out": int(out.numel() // c_out), "w_out": 1,
            "weight": weight, "bias": bias,
        })

    def _count(self, func, args, out, in_film: bool) -> None:
        numel = out.numel() if isinstance(out, torch.Tensor) else sum(
            t.numel() for t in tree_leaves(out)[:1] if isinstance(t, torch.Tensor))
        if in_film:
            if func in _LINEAR_OPS:
                macs = _matmul_macs(func, args)
                self.ops["film_mlp_macs"] += macs
                self.film_ops[id(self.tracker.current_film())]["mlp_macs"] += macs
            elif func in _ELEMENTWISE_OPS or func in _ACT_OPS:
                self.ops["film_affine"] += numel
                self.film_ops[id(self.tracker.current_film())]["affine"] += numel
            elif func not in _FREE_OPS:
                self.unsupported[str(func)] += 1
        elif self.tracker.inside_noise_conv():
            pass  # noise ops are counted per conv from the structure (see trace_model); never unsupported
        elif func in _BN_OPS:
            self.ops["bn"] += numel
        elif func in _ACT_OPS:
            self.ops["activation"] += numel
        elif func in _POOL_OPS:
            self.ops["pool"] += args[0].numel()
        elif func in (aten.add.Tensor, aten.add_.Tensor) and all(
                isinstance(a, torch.Tensor) and a.shape == out.shape for a in args[:2]):
            self.ops["add"] += numel
        elif func in _ELEMENTWISE_OPS:
            self.ops["elementwise"] += numel
        elif func not in _FREE_OPS:
            self.unsupported[str(func)] += 1


_SHAPE_ONLY_CONV_OPS = {aten.conv2d.default, aten.convolution.default}


def _pair(value) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    value = tuple(value)
    return (value[0], value[0]) if len(value) == 1 else (value[0], value[1])


def _conv_output_shape(func, args, kwargs) -> tuple[int, ...] | None:
    """The output shape PyTorch gives a 2-D convolution, or None where we let the op run (transposed,
    unbatched or unusual arguments)."""
    names = ("input", "weight", "bias", "stride", "padding", "dilation")
    if func is aten.convolution.default:
        names += ("transposed", "output_padding", "groups")
    values = dict(zip(names, args))
    values.update(kwargs)
    x, weight = values["input"], values["weight"]
    if x.dim() != 4 or weight.dim() != 4 or values.get("transposed", False):
        return None
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


def _matmul_macs(func, args) -> int:
    """MACs of a linear / addmm / mm op: rows x in x out."""
    if func is aten.linear.default:
        x, weight = args[0], args[1]
        return x.numel() * weight.shape[0]
    a, b = (args[1], args[2]) if func is aten.addmm.default else (args[0], args[1])
    return a.shape[0] * a.shape[1] * b.shape[1]


class _ModuleStack:
    """A module tracker: the stack of modules whose forward is running, by qualified name."""

    def __init__(self, model: nn.Module) -> None:
        from models.layers import FiLM

        self.names = {id(m): name for name, m in model.named_modules()}
        self.film_types = (FiLM,)
        self.stack: list[nn.Module] = []
        self.films_seen: list[tuple[nn.Module, torch.Tensor]] = []
        self._handles = []
        for module in model.modules():
            self._handles.append(module.register_forward_pre_hook(self._enter))
            self._handles.append(module.register_forward_hook(self._leave))

    def _enter(self, module: nn.Module, inputs) -> None:
        if isinstance(module, self.film_types) and inputs and isinstance(inputs[0], torch.Tensor):
            self.films_seen.append((module, inputs[0]))
        self.stack.append(module)

    def _leave(self, module: nn.Module, inputs, output) -> None:
        self.stack.pop()

    def current(self) -> nn.Module:
        return self.stack[-1]

    def name(self, module: nn.Module) -> str:
        return self.names.get(id(module), type(module).__name__)

    def inside_film(self) -> bool:
        return any(isinstance(m, self.film_types) for m in self.stack)

    def current_film(self) -> nn.Module:
        return next(m for m in reversed(self.stack) if isinstance(m, self.film_types))

    def inside_noise_conv(self) -> bool:
        return bool(self.stack) and bool(getattr(self.stack[-1], "noise_conditioned", False))

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()


@contextmanager
def _tracking(model: nn.Module) -> Iterator[_ModuleStack]:
    tracker = _ModuleStack(model)
    try:
        yield tracker
    finally:
        tracker.close()


def _nonzero_channels(weight: torch.Tensor) -> tuple[int, int, int]:
    """(nonzero weights, input channels with a nonzero weight, output channels with a nonzero weight)."""
    nnz = int(torch.count_nonzero(weight))
    if nnz == weight.numel():  # dense: every channel has a nonzero weight (the common case, one pass)
        return nnz, weight.shape[1] if weight.dim() > 1 else 1, weight.shape[0]
    nz = weight != 0
    dims_out = tuple(range(1, weight.dim()))
    dims_in = (0, *range(2, weight.dim()))
    return nnz, int(nz.any(dim=dims_in).sum()), int(nz.any(dim=dims_out).sum())


def _mask_slice(module: nn.Module, shape: torch.Size) -> torch.Tensor | None:
    mask = getattr(module, "weight_mask", None)
    if mask is None:
        return None
    return mask[tuple(slice(0, n) for n in shape)]


def trace_model(model: nn.Module, input_size: Sequence[int], *, device: str | None = None) -> Trace:
    """Trace one forward of ``model`` on a batch of 1 with shape ``(1, *input_size)`` (``input_size`` = C, H, W).

    The model is run in eval mode (restored afterwards) under ``torch.inference_mode``. Knobs (lambda,
    width) are whatever is set on the model: set them first with ``models.set_knobs``.
    """
    input_size = tuple(int(v) for v in input_size)
    if len(input_size) != 3 or min(input_size) < 1:
        raise HwsimError(f"input size must be C,H,W with positive values, got {input_size}")
    was_training = model.training
    model.eval()
    try:
        with _tracking(model) as tracker, torch.inference_mode():
            recorder = _Recorder(tracker)
            if device == "meta":
                from torch.func import functional_call

                state = {k: torch.empty_like(v, device="meta")
                         for k, v in (*model.named_parameters(), *model.named_buffers())}
                x = torch.zeros((1, *input_size), device="meta")
                with recorder:
                    functional_call(model, state, (x,))
            else:
                first = next(iter(model.parameters()), None)
                x = torch.rand((1, *input_size), device=first.device if first is not None else "cpu")
                with recorder:
                    model(x)
            owners = {id(module): recorder.origin(tensor)[0] for module, tensor in tracker.films_seen}
            films_seen = [module for module, _ in tracker.films_seen]
            return _build_trace(model, tracker, recorder, input_size, owners, films_seen)
    except HwsimError:
        raise
    except RuntimeError as exc:
        raise HwsimError(f"tracing {type(model).__name__} on input {input_size} failed: "
                         f"{str(exc).splitlines()[0]}") from exc
    finally:
        model.train(was_training)


def _build_trace(model, tracker, recorder, input_size, owners, films_seen) -> Trace:
    film_of: dict[int, nn.Module] = {}
    film_records = []
    for film in films_seen:
        owner_index = owners[id(film)]
        owner_name = tracker.name(recorder.layers[owner_index]["module"]) if owner_index >= 0 else None
        if owner_index >= 0:
            if owner_index in film_of:
                raise HwsimError(f"two FiLM modules ({tracker.name(film_of[owner_index])}, {tracker.name(film)}) "
                                 f"belong to the same conv {owner_name}; Eq. 9 charges one FiLM per conv")
            film_of[owner_index] = film
        channels = film.active_channels() if hasattr(film, "active_channels") else film.channels
        own = recorder.film_ops[id(film)]
        film_records.append(FilmRecord(tracker.name(film), int(film.film_dim), int(channels),
                                       sum(p.numel() for p in film.parameters()), owner_name,
                                       int(own["mlp_macs"]), int(own["affine"])))

    layers, noise_convs, seen_names = [], [], Counter()
    noise_adds = 0
    for index, raw in enumerate(recorder.layers):
        module = raw["module"]
        name = tracker.name(module)
        seen_names[name] += 1
        if seen_names[name] > 1:  # a module called twice (weight sharing): keep both, apart
            name = f"{name}#{seen_names[name]}"
        weight, bias = raw["weight"], raw["bias"]
        # Pruning is read from the masks (`weight_mask`, as models.* and torch.nn.utils.prune keep it), never
        # from zeros that happen to be in a weight: a dense layer stays dense in the delay model.
        mask = _mask_slice(module, weight.shape)
        if mask is not None:
            nnz, in_nz, out_nz = _nonzero_channels(mask)
        else:
            nnz, in_nz, out_nz = weight.numel(), raw["c_in"], raw["c_out"]
        bias_n = bias.numel() if isinstance(bias, torch.Tensor) else 0
        noise = bool(getattr(module, "noise_conditioned", False))
        film = film_of.get(index)
        conditioning = "film" if film is not None else "noise" if noise else "none"
        if noise:
            noise_convs.append(name)
            noise_adds += weight.numel()
        layers.append(LayerRecord(
            name=name, kind=raw["kind"], k=raw["k"], stride=raw["stride"], groups=raw["groups"],
            c_in=raw["c_in"], c_out=raw["c_out"], h_out=raw["h_out"], w_out=raw["w_out"],
            params=weight.numel() + bias_n, nonzero_params=nnz + bias_n, weight_nonzero=nnz,
            c_in_eff=in_nz if raw["groups"] == 1 else raw["c_in"],  # (C_i / g for grouped convs: not shrunk)
            c_out_eff=out_nz, conditioning=conditioning,
            film_name=tracker.name(film) if film is not None else None,
            film_dim=int(film.film_dim) if film is not None else 0,
            film_channels=int(film.active_channels() if hasattr(film, "active_channels") else film.channels)
            if film is not None else 0,
            masked=mask is not None,
            noise_adds=weight.numel() if noise else 0,
            film_mlp_macs=int(recorder.film_ops[id(film)]["mlp_macs"]) if film is not None else 0,
            film_affine_ops=int(recorder.film_ops[id(film)]["affine"]) if film is not None else 0,
        ))
    ops = {category: int(recorder.ops.get(category, 0)) for category in OP_CATEGORIES}
    ops["noise_add"] = noise_adds
    return Trace(tuple(input_size), tuple(layers), tuple(film_records), ops, dict(recorder.unsupported),
                 tuple(noise_convs))
