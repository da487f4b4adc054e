"""Analytical delay of conv and linear layers on a Von-Neumann ASIC: the FLOAT paper's Eq. 7, 8 and 9 (on a
systolic array, ``arch = "systolic"``: SCALE-Sim v3's compute cycles, :mod:`hwsim.systolic`), and their energy
(SPEC 3.1, :func:`model_energy`).

Memory reads and multiplies are sequential. For a layer with ``W = k^2 (C_i / g) C_o`` weights and an
``H_o x W_o`` output map (linear layers: ``k = 1``, ``H_o = W_o = 1``)::

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

import numpy as np

from hwsim.errors import HwsimError
from hwsim.hardware import HardwareConfig, field_problem
from hwsim.systolic import layer_cycles

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
    k: int
    c_in: int
    c_out: int
    h_out: int = 1
    w_out: int = 1
    groups: int = 1
    formula: str = "eq7"
    film_dim: int = 0
    film_channels: int = 0
    nnz: int | None = None

    def __post_init__(self) -> None:
        problems = []
        if self.kind not in LAYER_KINDS:
            problems.append(f"kind={self.kind!r} must be one of {', '.join(LAYER_KINDS)}")
        for name in ("k", "c_in", "c_out", "h_out", "w_out", "groups"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                problems.append(f"{name}={value!r} must be an integer >= 1")
        for name in ("film_dim", "film_channels"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 0:
                problems.append(f"{name}={value!r} must be an integer >= 0")
        if self.formula not in FORMULAS:
            problems.append(f"formula={self.formula!r} must be one of {', '.join(FORMULAS)}")
        elif (self.kind == "matmul") != (self.formula == "matmul"):
            problems.append(f"kind={self.kind!r} with formula={self.formula!r}: the matmul formula is for "
                            "kind matmul (two activations) only, and kind matmul takes no other")
        if not problems and self.c_in % self.groups:
            problems.append(f"c_in={self.c_in} must be divisible by groups={self.groups}")
        if not problems:  # in Python ints: numpy integer fields could wrap around silently
            k, c_in, c_out, groups = (int(getattr(self, f)) for f in ("k", "c_in", "c_out", "groups"))
            stored = k * k * (c_in // groups) * c_out + film_weights(int(self.film_dim), int(self.film_channels))
            macs = k * k * (c_in // groups) * c_out * int(self.h_out) * int(self.w_out)
            if stored > MAX_LAYER_WEIGHTS:
                problems.append(f"{stored} weights exceed the {MAX_LAYER_WEIGHTS} (2**40) a layer may have")
            elif macs > MAX_LAYER_MACS:
                problems.append(f"{macs} MACs exceed the {MAX_LAYER_MACS} (2**50) a layer may have")
        if not problems and self.nnz is not None and not 0 <= self.nnz <= self.weights:
            problems.append(f"nnz={self.nnz!r} must be between 0 and the layer's {self.weights} weights")
        if problems:
            raise HwsimError(f"invalid layer {self.name!r}: " + "; ".join(problems))

    @property
    def weights(self) -> int:
        """W = k^2 (C_i / g) C_o."""
        return self.k * self.k * (self.c_in // self.groups) * self.c_out

    @property
    def positions(self) -> int:
        """H_o W_o: output positions each weight is used at."""
        return self.h_out * self.w_out

    @property
    def macs(self) -> int:
        """Multiply-accumulates of one inference: W H_o W_o."""
        return self.weights * self.positions

    @property
    def film_weights(self) -> int:
        """F of Eq. 9 for a FiLM-owning layer, else 0."""
        return film_weights(self.film_dim, self.film_channels) if self.formula == "eq9" else 0

    @property
    def stored_nnz(self) -> int:
        """Nonzero weights (all of them when dense)."""
        return self.weights if self.nnz is None else self.nnz


@dataclass(frozen=True)
class LayerDelay:
    """Delay of one layer: exact integer counts and their times in ns.

    On a systolic array (``cycles`` set) the layer computes for ``cycles`` array cycles (SCALE-Sim v3,
    stall-free: no memory time), so ``reads = mult_passes = 0``, ``read_ns = 0`` and ``mult_ns`` is the
    compute time ``cycles x t_cycle_ns``.
    """

    layer: LayerShape
    reads: int  # parallel memory reads
    mult_passes: int  # passes of the multiplier array
    read_ns: float
    mult_ns: float
    cycles: int | None = None  # systolic arrays: compute cycles of all the layer's GEMMs

    @property
    def delay_ns(self) -> float:
        return self.read_ns + self.mult_ns


def _ceil_div(a, b):
    """Exact integer ceiling of a / b for non-negative integers (scalars or int64 arrays)."""
    return -(-a // b)


def layer_delay(layer: LayerShape, hw: HardwareConfig) -> LayerDelay:
    """The scalar path: Eq. 7/8/9 for one layer in Python integers (on a systolic array: its cycles)."""
    if hw.systolic:
        cycles = layer_cycles(layer, hw.array_rows, hw.array_cols, hw.dataflow, hw.vector_lanes)
        return LayerDelay(layer, 0, 0, 0.0, cycles * hw.t_cycle_ns, cycles)
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
    def cycles(self) -> int | None:
        """Total compute cycles on a systolic array (None on the Von-Neumann ASIC)."""
        return sum(d.cycles for d in self.layers) if self.hardware.systolic else None

    @property
    def read_ns(self) -> float:
        return 0.0 if self.hardware.systolic else self.reads * self.hardware.t_read_ns

    @property
    def mult_ns(self) -> float:
        if self.hardware.systolic:
            return self.cycles * self.hardware.t_cycle_ns
        return self.mult_passes * self.hardware.t_mult_ns

    @property
    def delay_ns(self) -> float:
        """Total delay, computed from the integer count totals (no float summation error)."""
        return self.read_ns + self.mult_ns


def model_delay(layers: Sequence[LayerShape], hw: HardwareConfig) -> DelayReport:
    """Delay of every layer in ``layers`` under ``hw`` (vectorised over layers) and the totals."""
    if not layers:
        return DelayReport(hw, ())
    if hw.systolic:
        return DelayReport(hw, tuple(layer_delay(layer, hw) for layer in layers))
    arrays = evaluate_layers(layers, hw)
    records = tuple(
        LayerDelay(layer, int(r), int(m), float(rn), float(mn))
        for layer, r, m, rn, mn in zip(
            layers, arrays.reads, arrays.mult_passes, arrays.read_ns, arrays.mult_ns, strict=True
        )
    )
    return DelayReport(hw, records)


# ------------------------------------------------------------------------------------------------- energy
@dataclass(frozen=True)
class OpEnergies:
    """Energy (pJ) of each action the energy model counts, from a configuration's energy fields (SPEC 3.1).

    The multiply and add energies are given at ``e_bits`` bits and scale to ``b_w`` bits by
    ``(b_w / e_bits)^2`` and ``b_w / e_bits`` (Horowitz: 8 -> 32 bit is x15.5 and x3.3); the accumulate (into the
    wide accumulator) and the read step are not scaled.
    """

    read: float  # one read step (n_bank banks x one b_io-bit access)
    mult: float  # one multiply at b_w bits
    add: float  # one add at b_w bits
    acc: float  # one accumulate
    rng: float  # one Gaussian sample

    @classmethod
    def of(cls, hw: HardwareConfig) -> OpEnergies:
        """The per-action energies of ``hw`` (an error naming the energy fields when it has none)."""
        hw.require_energy()
        scale = hw.b_w / hw.e_bits
        return cls(hw.e_read_pj, hw.e_mult_pj * scale * scale, hw.e_add_pj * scale, hw.e_acc_pj, hw.e_rng_pj)


@dataclass(frozen=True)
class EnergyCounts:
    """Exact integer counts of the actions a layer (or a model) performs in one inference (SPEC 3.1).

    ``reads``: read steps of weights (FiLM weights included, none for a matmul); ``macs``: multiply-accumulates
    of the layer (W' H_o W_o, W' = nnz with zero skipping); ``noise_ops``: FLOAT's alpha * eta and theta + s * eta,
    once per weight (W'); ``film_macs``: the FiLM MLP's F multiply-accumulates; ``affine_ops``: the FiLM affine's
    C H_o W_o multiply-adds.
    """

    reads: int
    macs: int
    noise_ops: int
    film_macs: int
    affine_ops: int

    def __add__(self, other: EnergyCounts) -> EnergyCounts:
        return EnergyCounts(*(a + b for a, b in zip(dataclasses.astuple(self), dataclasses.astuple(other),
                                                    strict=True)))

    def split(self, e: OpEnergies) -> dict[str, float]:
        """``energy_pj`` and its split ``read_pj``, ``mac_pj``, ``noise_pj``, ``film_pj`` under ``e``."""
        parts = {"read_pj": self.reads * e.read, "mac_pj": self.macs * (e.mult + e.acc),
                 "noise_pj": self.noise_ops * (e.mult + e.add + e.rng),
                 "film_pj": self.film_macs * (e.mult + e.acc) + self.affine_ops * (e.mult + e.add)}
        return {"energy_pj": parts["read_pj"] + parts["mac_pj"] + parts["noise_pj"] + parts["film_pj"], **parts}


def energy_counts(layer: LayerShape, hw: HardwareConfig) -> EnergyCounts:
    """The action counts of SPEC 3.1 for one layer under ``hw``'s storage options (bitmap storage changes the
    reads and zero skipping the multiplies, exactly as they change the delay; a systolic array skips none)::

        eq7:    reads(W) e_read + MACs (e_mult + e_acc)
        eq8:    eq7 + W (e_mult + e_add + e_rng)
        eq9:    reads(W + F) e_read + MACs (e_mult + e_acc) + F (e_mult + e_acc) + C H_o W_o (e_mult + e_add)
        matmul: MACs (e_mult + e_acc)

    >>> from hwsim.hardware import get_preset
    >>> conv = LayerShape("c", "conv", k=3, c_in=64, c_out=64, h_out=32, w_out=32, formula="eq8")
    >>> energy_counts(conv, get_preset("asic65"))      # 36864 weights: 4608 reads, 37748736 MACs
    EnergyCounts(reads=4608, macs=37748736, noise_ops=36864, film_macs=0, affine_ops=0)
    """
    w, nnz = layer.weights, layer.stored_nnz
    weight_bits = nnz * hw.b_w + w if hw.sparse_storage == "bitmap" and layer.nnz is not None else w * hw.b_w
    reads = 0 if layer.formula == "matmul" else _ceil_div(weight_bits + layer.film_weights * hw.b_w,
                                                          hw.b_io * hw.n_bank)
    multiplied = nnz if hw.zero_skip else w
    return EnergyCounts(
        reads=reads,
        macs=multiplied * layer.positions,
        noise_ops=multiplied if layer.formula == "eq8" else 0,
        film_macs=layer.film_weights,
        affine_ops=layer.film_channels * layer.positions if layer.formula == "eq9" else 0,
    )


@dataclass(frozen=True)
class LayerEnergy:
    """Energy of one layer: its action counts and their energies in pJ."""

    layer: LayerShape
    counts: EnergyCounts
    energy_pj: float
    read_pj: float
    mac_pj: float
    noise_pj: float
    film_pj: float


@dataclass(frozen=True)
class EnergyReport:
    """Per-layer energies of a model under one configuration; totals from the summed integer counts."""

    hardware: HardwareConfig
    layers: tuple[LayerEnergy, ...]

    @property
    def counts(self) -> EnergyCounts:
        return sum((e.counts for e in self.layers), EnergyCounts(0, 0, 0, 0, 0))

    @property
    def totals(self) -> dict[str, float]:
        """``energy_pj``, ``read_pj``, ``mac_pj``, ``noise_pj``, ``film_pj`` of the whole model."""
        return self.counts.split(OpEnergies.of(self.hardware))

    @property
    def energy_pj(self) -> float:
        return self.totals["energy_pj"]


def model_energy(layers: Sequence[LayerShape], hw: HardwareConfig) -> EnergyReport:
    """Energy (pJ) of every layer in ``layers`` under ``hw`` and the totals (SPEC 3.1). Energy asked of a
    configuration without the energy fields raises the error that names them.

    >>> from hwsim.hardware import get_preset
    >>> conv = LayerShape("c", "conv", k=3, c_in=64, c_out=64, h_out=32, w_out=32)
    >>> round(model_energy([conv], get_preset("asic65")).energy_pj)   # 4608 x 274 + 37748736 x (0.38 + 0.19)
    22779372
    """
    e = OpEnergies.of(hw)
    records = []
    for layer in layers:
        counts = energy_counts(layer, hw)
        records.append(LayerEnergy(layer, counts, **counts.split(e)))
    return EnergyReport(hw, tuple(records))


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
    if base.systolic:
        raise HwsimError(f"hardware_grid sweeps the Von-Neumann ASIC's fields; {base.name!r} is a systolic array "
                         "(sweep it with hwsim.sweep.SystolicSweep)")
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
