"""Analytical delay of conv and linear layers on a Von-Neumann ASIC: the FLOAT paper's Eq. 7, 8 and 9.

Memory reads and multiplies are sequential. For a layer with ``W = kh kw (C_i / g) C_o`` weights (``k^2`` for a
square kernel; a Conv1d has ``kh = 1``, a Conv3d a third factor ``kd``) and ``H_o x W_o`` output positions (a
Conv1d: ``H_o = 1``; a Conv3d: ``D_o H_o W_o``; linear layers: ``k = 1``, ``H_o = W_o = 1``)::

    reads(n) = ceil(n * b_w / (b_io * n_bank))                  (integer arithmetic, never a float ceiling)
    Eq. 7, plain: t   = reads(W) t_read     + ceil(W / n_mult) H_o W_o t_mult
    Eq. 8, FLOAT: t_F = reads(W) t_read     + ceil(W / n_mult) (1 + H_o W_o) t_mult
    Eq. 9, OAT:   t_O = reads(W + F) t_read + ceil(W / n_mult) H_o W_o t_mult + ceil(F / n_mult) t_mult
                  with F = 2 d C + 4 C^2 FiLM weights (d: lambda-encoding dim, C: the FiLM's channels)

Activation x activation products (SPEC 3, formula ``matmul``, kind ``matmul``): for ``b`` products
``[N, K] @ [K, M]`` the K x M operand is the stationary one and nothing is read from weight memory::

    matmul:       t_M = b ceil(K M / n_mult) N t_mult
                  (a LayerShape with c_in = K, c_out = M, h_out = N, w_out = b, so W = K M, H_o W_o = N b)

Extensions (off by default, from :class:`~hwsim.hardware.HardwareConfig`): ``sparse_storage="bitmap"`` reads
``ceil((nnz b_w + W) / (b_io n_bank))`` words for a pruned weight tensor (values plus a 1-bit map) and
``zero_skip=True`` uses ``nnz`` in place of ``W`` in the multiply term.

Everything here is a pure function of layer shapes and hardware values: no torch, no pandas. Counts (reads
and multiplier passes) are exact integers; a time is ``count * t`` in ns, exact whenever the products are
representable (always for integer ns timings below 2**53). :func:`delay_arrays` evaluates many layers x many
hardware configurations in one broadcast numpy call; :func:`layer_delay` is the scalar path and agrees with it
exactly.

>>> from hwsim.hardware import get_preset
>>> conv = LayerShape("conv", "conv", k=3, c_in=64, c_out=64, h_out=32, w_out=32)
>>> d = layer_delay(conv, get_preset("asic65"))
>>> d.reads, d.mult_passes, d.delay_ns    # 36864 weights: 4608 reads of 9 ns, 211 x 1024 passes of 4 ns
(4608, 216064, 905728.0)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numbers


class _LazyNumpy:
    """numpy, imported on first use: the cached cost commands build layer shapes and take the scalar path
    (:func:`layer_delay`) without paying numpy's import (about half of a cached ``hwsim count``)."""

    def __getattr__(self, name: str):
        import numpy

        globals()["np"] = numpy
        return getattr(numpy, name)


np = _LazyNumpy()

from hwsim.errors import HwsimError
from hwsim.hardware import HardwareConfig, field_problem

FORMULAS = ("eq7", "eq8", "eq9", "matmul")
FORMULA_NAMES = {"eq7": "plain (Eq. 7)", "eq8": "FLOAT noise (Eq. 8)", "eq9": "OAT FiLM (Eq. 9)",
                 "matmul": "activation x activation product (no reads)"}
_FORMULA_CODE = {name: code for code, name in enumerate(FORMULAS)}
_MATMUL = _FORMULA_CODE["matmul"]
LAYER_KINDS = ("conv", "linear", "matmul")
#: Largest layer the delay model accepts: W + F stored weights, and MACs W H_o W_o of one inference. With
#: b_w <= 64 bits (:data:`hwsim.hardware.FIELD_BOUNDS`) a layer's read and pass counts stay below 2**51, so
#: the int64 arithmetic of :func:`delay_arrays` is exact, and so is a model total of up to 4,096 such layers.
MAX_LAYER_WEIGHTS = 2**40
MAX_LAYER_MACS = 2**50


def film_weights(film_dim: int, channels: int) -> int:
    """FiLM weights counted by Eq. 9: ``2 d C + 4 C^2`` (biases ignored, as in the paper).

    >>> film_weights(1, 64)   # the paper's 2 C_o + 4 C_o^2 for C_o = 64
    16512
    """
    return 2 * film_dim * channels + 4 * channels * channels


@dataclass(frozen=True)
class LayerShape:
    """The shape of one conv or linear layer and the delay formula it gets.

    ``formula`` is chosen by the tracer from what the model does, never from the layer's name: ``eq8`` for
    a noise-conditioned weight, ``eq9`` for a conv that owns a FiLM module (``film_dim`` = its d,
    ``film_channels`` = its C), ``eq7`` otherwise. ``nnz`` is the number of nonzero weights when the layer is
    pruned (``None``: dense).
    """

    name: str
    kind: str
    k: int = 0  # side of a square 2-D kernel (0 for any other: read kh, kw, kd); where kh == kw, k decides
    c_in: int = 0
    c_out: int = 0
    h_out: int = 1
    w_out: int = 1
    groups: int = 1
    formula: str = "eq7"
    film_dim: int = 0
    film_channels: int = 0
    nnz: int | None = None
    kh: int = 0  # kernel height and width (0: k); a Conv1d has kh = 1, kw = its kernel
    kw: int = 0
    kd: int = 1  # kernel depth and output depth of a Conv3d (1 otherwise)
    d_out: int = 1
    film_total: int = 0  # F of Eq. 9 summed over several FiLMs fed by this layer (0: one FiLM(film_dim, C))

    def __post_init__(self) -> None:
        problems = []
        if self.kind not in LAYER_KINDS:
            problems.append(f"kind={self.kind!r} must be one of {', '.join(LAYER_KINDS)}")
        kernel_problem = self._settle_kernel()
        if kernel_problem:
            problems.append(kernel_problem)
        square = ("k",) if self.kh == self.kw and self.kd == 1 else ()
        for name in (*square, "kh", "kw", "kd", "c_in", "c_out", "h_out", "w_out", "d_out", "groups"):
            value = getattr(self, name)
            if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
                problems.append(f"{name}={value!r} must be an integer >= 1")
        for name in ("film_dim", "film_channels", "film_total"):
            value = getattr(self, name)
            if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 0:
                problems.append(f"{name}={value!r} must be an integer >= 0")
        if self.formula not in FORMULAS:
            problems.append(f"formula={self.formula!r} must be one of {', '.join(FORMULAS)}")
        elif (self.kind == "matmul") != (self.formula == "matmul"):
            problems.append(f"kind={self.kind!r} with formula={self.formula!r}: the matmul formula is for "
                            "kind matmul (two activations) only, and kind matmul takes no other")
        if not problems and self.c_in % self.groups:
            problems.append(f"c_in={self.c_in} must be divisible by groups={self.groups}")
        if not problems:  # in Python ints: numpy integer fields could wrap around silently
            kernel = int(self.kd) * int(self.kh) * int(self.kw)
            c_in, c_out, groups = (int(getattr(self, f)) for f in ("c_in", "c_out", "groups"))
            stored = kernel * (c_in // groups) * c_out + (int(self.film_total) or film_weights(
                int(self.film_dim), int(self.film_channels)))
            macs = kernel * (c_in // groups) * c_out * int(self.d_out) * int(self.h_out) * int(self.w_out)
            if stored > MAX_LAYER_WEIGHTS:
                problems.append(f"{stored} weights exceed the {MAX_LAYER_WEIGHTS} (2**40) a layer may have")
            elif macs > MAX_LAYER_MACS:
                problems.append(f"{macs} MACs exceed the {MAX_LAYER_MACS} (2**50) a layer may have")
        if not problems and self.nnz is not None and not 0 <= self.nnz <= self.weights:
            problems.append(f"nnz={self.nnz!r} must be between 0 and the layer's {self.weights} weights")
        if problems:
            raise HwsimError(f"invalid layer {self.name!r}: " + "; ".join(problems))

    def _settle_kernel(self) -> str | None:
        """Fill ``kh`` / ``kw`` from ``k`` (a square kernel) or ``k`` from equal ``kh`` / ``kw``; a problem
        when they disagree."""
        k, kh, kw = self.k, self.kh, self.kw
        if not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in (k, kh, kw)):
            return f"k={k!r}, kh={kh!r}, kw={kw!r} must be integers"
        if (kh == 0 and kw == 0) or (k != 0 and kh == kw):  # square: k decides (dataclasses.replace(k=...))
            object.__setattr__(self, "kh", k)
            object.__setattr__(self, "kw", k)
        elif k == 0 and kh == kw and self.kd == 1:  # (a 3-D kernel keeps k = 0: it is no square)
            object.__setattr__(self, "k", kh)
        elif k != 0:
            return f"k={k} with kh={kh}, kw={kw}: k is the side of a square kernel; give kh and kw alone (k=0)"
        return None

    @property
    def kernel(self) -> int:
        """Weights per input-output channel pair: kd kh kw (k^2 for a square 2-D kernel)."""
        return self.kd * self.kh * self.kw

    @property
    def weights(self) -> int:
        """W = kh kw (C_i / g) C_o (times kd for a 3-D kernel)."""
        return self.kernel * (self.c_in // self.groups) * self.c_out

    @property
    def positions(self) -> int:
        """H_o W_o (times D_o for a 3-D output): output positions each weight is used at."""
        return self.d_out * self.h_out * self.w_out

    @property
    def macs(self) -> int:
        """Multiply-accumulates of one inference: W H_o W_o."""
        return self.weights * self.positions

    @property
    def film_weights(self) -> int:
        """F of Eq. 9 for a FiLM-owning layer, else 0 (``film_total`` where several FiLMs add theirs)."""
        if self.formula != "eq9":
            return 0
        return self.film_total or film_weights(self.film_dim, self.film_channels)

    @property
    def stored_nnz(self) -> int:
        """Nonzero weights (all of them when dense)."""
        return self.weights if self.nnz is None else self.nnz


@dataclass(frozen=True)
class LayerDelay:
    """Delay of one layer: exact integer counts and their times in ns."""

    layer: LayerShape
    reads: int  # parallel memory reads
    mult_passes: int  # passes of the multiplier array
    read_ns: float
    mult_ns: float

    @property
    def delay_ns(self) -> float:
        return self.read_ns + self.mult_ns


def _ceil_div(a, b):
    """Exact integer ceiling of a / b for non-negative integers (scalars or int64 arrays)."""
    return -(-a // b)


def layer_delay(layer: LayerShape, hw: HardwareConfig) -> LayerDelay:
    """The scalar path: Eq. 7/8/9 for one layer in Python integers."""
    w, f, nnz = layer.weights, layer.film_weights, layer.stored_nnz
    weight_bits = nnz * hw.b_w + w if hw.sparse_storage == "bitmap" and layer.nnz is not None else w * hw.b_w
    reads = _ceil_div(weight_bits + f * hw.b_w, hw.b_io * hw.n_bank)
    passes = _ceil_div(nnz if hw.zero_skip else w, hw.n_mult)
    mult_passes = passes * layer.positions
    if layer.formula == "matmul":
        reads = 0  # both operands are activations: no stored weight to read (SPEC 3)
    if layer.formula == "eq8":
        mult_passes += passes  # one extra pass adds the scaled noise to every weight
    elif layer.formula == "eq9":
        mult_passes += _ceil_div(f, hw.n_mult)  # the FiLM MLP
    return LayerDelay(layer, reads, mult_passes, reads * hw.t_read_ns, mult_passes * hw.t_mult_ns)


@dataclass(frozen=True)
class DelayArrays:
    """Broadcast results of :func:`delay_arrays` (int64 counts, float64 ns)."""

    reads: np.ndarray
    mult_passes: np.ndarray
    read_ns: np.ndarray
    mult_ns: np.ndarray
    delay_ns: np.ndarray


def delay_arrays(
    weights,
    positions,
    formula,
    film=0,
    nnz=None,
    *,
    b_io,
    b_w,
    n_bank,
    n_mult,
    t_read_ns,
    t_mult_ns,
    bitmap=False,
    zero_skip: bool = False,
) -> DelayArrays:
    """The vectorised path: Eq. 7/8/9 over broadcast arrays of layers and hardware values.

    ``weights`` (W), ``positions`` (H_o W_o), ``formula`` (codes 0/1/2 for eq7/eq8/eq9, see
    :func:`formula_codes`), ``film`` (F, used where the code is 2) and ``nnz`` (nonzero weights; ``None``
    = dense) describe layers; ``bitmap`` (a bool, or one per layer) charges the 1-bit map of bitmap storage
    to those layers; the hardware arguments may be scalars or arrays. All inputs broadcast
    together, so layer arrays of shape ``(L, 1)`` against hardware arrays of shape ``(H,)`` give ``(L, H)``.
    Inputs are not validated here (hot path): build them from validated :class:`LayerShape` and
    :class:`~hwsim.hardware.HardwareConfig` values, or with :func:`layer_arrays` and :func:`hardware_grid`.
    """
    w = np.asarray(weights, dtype=np.int64)
    code = np.asarray(formula, dtype=np.int64)
    f = np.where(code == 2, np.asarray(film, dtype=np.int64), 0)
    b_w = np.asarray(b_w, dtype=np.int64)
    n_mult = np.asarray(n_mult, dtype=np.int64)
    sparse = nnz is not None
    k = np.asarray(nnz, dtype=np.int64) if sparse else w
    weight_bits = np.where(bitmap, k * b_w + w, w * b_w) if sparse else w * b_w
    reads = _ceil_div(weight_bits + f * b_w, np.asarray(b_io, dtype=np.int64) * np.asarray(n_bank, dtype=np.int64))
    reads = np.where(code == _MATMUL, 0, reads)  # activation x activation: nothing stored to read
    passes = _ceil_div(k if zero_skip else w, n_mult)
    mult_passes = passes * np.asarray(positions, dtype=np.int64)
    mult_passes = mult_passes + np.where(code == 1, passes, 0) + np.where(code == 2, _ceil_div(f, n_mult), 0)
    read_ns = reads * np.asarray(t_read_ns, dtype=np.float64)
    mult_ns = mult_passes * np.asarray(t_mult_ns, dtype=np.float64)
    return DelayArrays(reads, mult_passes, read_ns, mult_ns, read_ns + mult_ns)


def formula_codes(formulas: Iterable[str]) -> np.ndarray:
    """Integer codes (0, 1, 2, 3) for formula names (``eq7``, ``eq8``, ``eq9``, ``matmul``)."""
    try:
        return np.array([_FORMULA_CODE[f] for f in formulas], dtype=np.int64)
    except KeyError as exc:
        raise HwsimError(f"unknown formula {exc.args[0]!r}; valid formulas: {', '.join(FORMULAS)}") from None


@dataclass(frozen=True)
class LayerArrays:
    """Struct-of-arrays form of a list of :class:`LayerShape` (each a 1-D int64 array)."""

    weights: np.ndarray
    positions: np.ndarray
    formula: np.ndarray
    film: np.ndarray
    nnz: np.ndarray | None


def layer_arrays(layers: Sequence[LayerShape]) -> LayerArrays:
    """Pack validated layer shapes into arrays for :func:`delay_arrays`."""
    sparse = any(layer.nnz is not None for layer in layers)
    return LayerArrays(
        weights=np.array([layer.weights for layer in layers], dtype=np.int64),
        positions=np.array([layer.positions for layer in layers], dtype=np.int64),
        formula=formula_codes(layer.formula for layer in layers),
        film=np.array([layer.film_weights for layer in layers], dtype=np.int64),
        nnz=np.array([layer.stored_nnz for layer in layers], dtype=np.int64) if sparse else None,
    )


def evaluate_layers(layers: Sequence[LayerShape], hw: HardwareConfig) -> DelayArrays:
    """Eq. 7/8/9 for every layer under one configuration, vectorised over layers.

    Dense layers in a partly pruned list keep dense storage: the bitmap of ``sparse_storage="bitmap"`` is
    only charged to layers that carry an ``nnz``.
    """
    arrays = layer_arrays(layers)
    bitmap = hw.sparse_storage == "bitmap" and np.array([layer.nnz is not None for layer in layers])
    return delay_arrays(
        arrays.weights,
        arrays.positions,
        arrays.formula,
        arrays.film,
        arrays.nnz,
        b_io=hw.b_io,
        b_w=hw.b_w,
        n_bank=hw.n_bank,
        n_mult=hw.n_mult,
        t_read_ns=hw.t_read_ns,
        t_mult_ns=hw.t_mult_ns,
        bitmap=bitmap,
        zero_skip=hw.zero_skip,
    )


@dataclass(frozen=True)
class DelayReport:
    """Per-layer delays of a model (or a list of layers) under one configuration, with exact totals."""

    hardware: HardwareConfig
    layers: tuple[LayerDelay, ...]

    @property
    def reads(self) -> int:
        return sum(d.reads for d in self.layers)

    @property
    def mult_passes(self) -> int:
        return sum(d.mult_passes for d in self.layers)

    @property
    def read_ns(self) -> float:
        return self.reads * self.hardware.t_read_ns

    @property
    def mult_ns(self) -> float:
        return self.mult_passes * self.hardware.t_mult_ns

    @property
    def delay_ns(self) -> float:
        """Total delay, computed from the integer count totals (no float summation error)."""
        return self.read_ns + self.mult_ns


def model_delay(layers: Sequence[LayerShape], hw: HardwareConfig) -> DelayReport:
    """Delay of every layer in ``layers`` under ``hw`` (vectorised over layers) and the totals."""
    if not layers:
        return DelayReport(hw, ())
    arrays = evaluate_layers(layers, hw)
    records = tuple(
        LayerDelay(layer, int(r), int(m), float(rn), float(mn))
        for layer, r, m, rn, mn in zip(
            layers, arrays.reads, arrays.mult_passes, arrays.read_ns, arrays.mult_ns, strict=True
        )
    )
    return DelayReport(hw, records)


@dataclass(frozen=True)
class NormalizedDelay:
    """Per-layer ``t_V / t`` over a set of layers and its min / mean / max (paper Fig. 7c)."""

    ratios: tuple[tuple[str, float], ...]

    @property
    def min(self) -> float:
        return min((r for _, r in self.ratios), default=1.0)

    @property
    def mean(self) -> float:
        return sum(r for _, r in self.ratios) / len(self.ratios) if self.ratios else 1.0

    @property
    def max(self) -> float:
        return max((r for _, r in self.ratios), default=1.0)


def normalized_delay(
    variant: Sequence[LayerDelay], base: Sequence[LayerDelay], *, conditional_only: bool = True
) -> NormalizedDelay:
    """``t_V / t`` per layer, pairing the variant's layers with the base model's by name.

    With ``conditional_only`` (the paper's Fig. 7c) only conv layers whose formula is Eq. 8 or 9 count; with
    none of them the statistics are 1.0 (the variant costs what the base costs).
    """
    base_by_name = {d.layer.name: d for d in base}
    ratios = []
    for d in variant:
        if conditional_only and (d.layer.kind != "conv" or d.layer.formula == "eq7"):
            continue
        if d.layer.name not in base_by_name:
            raise HwsimError(f"layer {d.layer.name!r} of the variant has no counterpart in the base model")
        ratios.append((d.layer.name, d.delay_ns / base_by_name[d.layer.name].delay_ns))
    return NormalizedDelay(tuple(ratios))


@dataclass(frozen=True)
class HardwareGrid:
    """Many hardware configurations as arrays that broadcast together.

    A dense grid holds one entry per configuration (1-D arrays of equal length); an open grid (``sparse=True``
    in :func:`hardware_grid`) gives each field its own axis, like ``numpy.meshgrid(..., sparse=True)``, so
    that terms depending on a few fields are computed once per distinct value and only the final sum spans
    every configuration.
    """

    b_io: np.ndarray
    b_w: np.ndarray
    n_bank: np.ndarray
    n_mult: np.ndarray
    t_read_ns: np.ndarray
    t_mult_ns: np.ndarray

    @property
    def shape(self) -> tuple[int, ...]:
        return np.broadcast_shapes(*(getattr(self, f).shape for f in _GRID_FIELDS))

    def __len__(self) -> int:
        return int(np.prod(self.shape))


_GRID_FIELDS = ("b_io", "b_w", "n_bank", "n_mult", "t_read_ns", "t_mult_ns")


def hardware_grid(base: HardwareConfig, *, sparse: bool = False, **axes: Sequence[float]) -> HardwareGrid:
    """The Cartesian product of value lists over some fields, the other fields taken from ``base``.

    Every value is validated as :class:`HardwareConfig` validates it (one error naming all bad values).

    >>> from hwsim.hardware import get_preset
    >>> len(hardware_grid(get_preset("asic65"), n_mult=[64, 128], n_bank=[2, 4, 8]))
    6
    >>> hardware_grid(get_preset("asic65"), sparse=True, n_mult=[64, 128], n_bank=[2, 4, 8]).shape
    (1, 1, 3, 2, 1, 1)
    """
    unknown = sorted(set(axes) - set(_GRID_FIELDS))
    if unknown:
        raise HwsimError(f"unknown grid field(s) {', '.join(unknown)}; valid fields: {', '.join(_GRID_FIELDS)}")
    problems: list[str] = []
    for name, values in axes.items():  # each distinct value once, by the rule HardwareConfig applies to it
        for value in dict.fromkeys(np.asarray(values).tolist()):
            problem = field_problem(name, value)
            if problem is not None:
                problems.append(problem)
    if problems:
        raise HwsimError("invalid hardware grid: " + "; ".join(dict.fromkeys(problems)))
    lists = [np.asarray(axes.get(name, [getattr(base, name)])) for name in _GRID_FIELDS]
    mesh = np.meshgrid(*lists, indexing="ij", sparse=sparse)
    return HardwareGrid(*(m if sparse else m.ravel() for m in mesh))


def delay_grid(layers: Sequence[LayerShape], grid: HardwareGrid) -> DelayArrays:
    """Eq. 7/8/9 for every layer x every configuration of ``grid``: arrays of shape ``(layers, *grid.shape)``.

    For a dense grid that is ``(layers, configs)``. Counts and partial times are returned as read-only
    broadcast views (no copies); ``delay_ns`` is a full array. Dense layers only (pruned layers carry
    storage options that live on a single configuration).
    """
    arrays = layer_arrays(layers)
    ndim = len(grid.shape)
    col = lambda a: a.reshape((-1,) + (1,) * ndim)  # noqa: E731
    out = delay_arrays(
        col(arrays.weights),
        col(arrays.positions),
        col(arrays.formula),
        col(arrays.film),
        **{name: getattr(grid, name) for name in _GRID_FIELDS},
    )
    full = (len(layers), *grid.shape)
    return DelayArrays(*(np.broadcast_to(getattr(out, f), full) for f in DelayArrays.__dataclass_fields__))


def model_delay_grid(layers: Sequence[LayerShape], grid: HardwareGrid) -> np.ndarray:
    """Total delay (ns) of a whole model for every configuration of ``grid`` (shape ``grid.shape``).

    Totals are summed from the integer counts (exact), as :attr:`DelayReport.delay_ns` does. Pruned layers
    count with their dense storage and full multiply term here: storage options (bitmap, zero skipping) live
    on single configurations, see :func:`model_delay`. Computed through :func:`model_totals_grid`, so an open
    grid costs one sum per distinct hardware value, not per layer x configuration.
    """
    return model_totals_grid(layers, grid).delay_ns()


@dataclass(frozen=True)
class GridTotals:
    """Whole-model totals over a hardware grid, kept in factors.

    Reads depend only on ``(b_io, b_w, n_bank)`` and multiplier passes only on ``n_mult`` (Eq. 7-9), so on an
    open grid ``reads`` has the shape of those three axes and ``mult_passes`` that of the ``n_mult`` axis (each
    broadcastable to ``grid.shape``); a configuration's delay is ``reads t_read + mult_passes t_mult``.
    """

    grid: HardwareGrid
    reads: np.ndarray  # int64, broadcastable to grid.shape
    mult_passes: np.ndarray  # int64, broadcastable to grid.shape

    @property
    def read_ns(self) -> np.ndarray:
        """``reads t_read`` (broadcastable to ``grid.shape``: it does not span the ``n_mult`` and t_mult axes)."""
        return self.reads * self.grid.t_read_ns

    @property
    def mult_ns(self) -> np.ndarray:
        return self.mult_passes * self.grid.t_mult_ns

    def delay_ns(self, flat: np.ndarray | None = None) -> np.ndarray:
        """Total delay of every configuration (shape ``grid.shape``) or, given flat C-order indices into the
        grid, of those configurations only (a 1-D array: constant memory for a sweep written in chunks)."""
        if flat is None:
            return self.read_ns + self.mult_ns
        coords = np.unravel_index(flat, self.grid.shape)
        return take_flat(self.read_ns, coords) + take_flat(self.mult_ns, coords)


def take_flat(array: np.ndarray, coords: tuple[np.ndarray, ...]) -> np.ndarray:
    """Values of ``array`` (broadcastable to a grid) at the grid coordinates ``coords`` (one index array per
    axis, as :func:`numpy.unravel_index` gives them), without broadcasting ``array`` to the whole grid."""
    array = np.asarray(array)
    array = array.reshape((1,) * (len(coords) - array.ndim) + array.shape)
    index = tuple(c if n > 1 else np.zeros_like(c) for c, n in zip(coords, array.shape, strict=True))
    return array[index]


def model_totals_grid(layers: Sequence[LayerShape], grid: HardwareGrid) -> GridTotals:
    """Exact integer totals of reads and multiplier passes of a model over ``grid``, per axis (see
    :class:`GridTotals`): the sum over layers spans only the hardware values each count depends on, so a
    million-configuration open grid costs about what its longest axis costs. Dense layers (as in
    :func:`model_delay_grid`).

    >>> from hwsim.hardware import get_preset
    >>> conv = LayerShape("conv", "conv", k=3, c_in=64, c_out=64, h_out=32, w_out=32)
    >>> t = model_totals_grid([conv, conv], hardware_grid(get_preset("asic65"), sparse=True, n_mult=[175, 350]))
    >>> t.reads.size, t.mult_passes.size, t.delay_ns().ravel().tolist()
    (1, 2, [1811456.0, 951296.0])
    """
    dense = [dataclasses.replace(layer, nnz=None) for layer in layers]
    arrays = layer_arrays(dense) if dense else None
    ndim = len(grid.shape)
    if arrays is None:
        zero = np.zeros((1,) * ndim, dtype=np.int64)
        return GridTotals(grid, zero, zero)
    col = lambda a: a.reshape((-1,) + (1,) * ndim)  # noqa: E731
    layer_args = (col(arrays.weights), col(arrays.positions), col(arrays.formula), col(arrays.film))
    # Two calls of the one formula: reads with n_mult held at 1, passes with the memory fields held at 1.
    reads = delay_arrays(*layer_args, b_io=grid.b_io, b_w=grid.b_w, n_bank=grid.n_bank, n_mult=1,
                         t_read_ns=0.0, t_mult_ns=0.0).reads
    passes = delay_arrays(*layer_args, b_io=1, b_w=1, n_bank=1, n_mult=grid.n_mult,
                          t_read_ns=0.0, t_mult_ns=0.0).mult_passes
    return GridTotals(grid, np.asarray(reads).sum(axis=0), np.asarray(passes).sum(axis=0))
