"""The immutable results of a trace: one record per weight layer or activation product, per FiLM, and the
data-flow facts that module surgery needs. Counters and the delay model read only these."""

from __future__ import annotations

from dataclasses import dataclass, field

from hwsim.delay import LayerShape, film_weights

#: Kinds of :class:`LayerRecord`: weight layers, and activation x activation products (SPEC 3).
RECORD_KINDS = ("conv", "linear", "matmul")


@dataclass(frozen=True)
class LayerRecord:
    """One conv, linear or activation x activation product as it ran.

    ``c_in`` / ``c_out`` are the active channels (the weight slice that ran); ``c_in_eff`` / ``c_out_eff``
    count only the channels that channel pruning keeps (a mask that removes whole input or output channels;
    irregular zeros never shrink them). ``params`` counts the active weight and bias, ``nonzero_params`` the
    entries the mask keeps (all of them without a mask). ``macs`` = kd kh kw (C_i / g) C_o x positions of the
    effective shape: pruned channels are not computed, irregular zeros still are (see ``nonzero_macs``).

    Geometry per spatial axis (SPEC 5.2): ``kernel``, ``strides``, ``padding``, ``dilation``, ``in_size`` and
    ``out_size`` have one entry per spatial axis of the conv (one for Conv1d, three for Conv3d; empty for
    linear and matmul records). The delay model's view folds them to ``kd, kh, kw`` (kernel, leading axes
    1: a Conv1d has ``kh = kd = 1``) and ``d_out, h_out, w_out``, the positions each weight is used at:
    the output positions of a conv, the input positions of a transposed conv (``transposed``). ``k`` is the
    side of a square 2-D kernel (0 for any other) and ``stride`` the stride when equal on every axis (0 else).
    A linear layer over tokens has ``h_out`` = the positions it runs at.

    A ``matmul`` record (``[b, N, K] @ [b, K, M]`` of two activations) has no stored weight (``params`` 0):
    ``c_in`` = K, ``c_out`` = M, ``h_out`` = N and ``w_out`` = b, so that its MACs are b N K M and the delay
    model's ``matmul`` formula charges ``b ceil(K M / n_mult) N`` multiplier passes and no reads.
    """

    name: str
    kind: str  # one of RECORD_KINDS
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
    kh: int = 0  # 0: k
    kw: int = 0
    kd: int = 1
    d_out: int = 1
    kernel: tuple[int, ...] = ()
    strides: tuple[int, ...] = ()
    padding: tuple[int, ...] = ()
    dilation: tuple[int, ...] = ()
    in_size: tuple[int, ...] = ()
    out_size: tuple[int, ...] = ()
    transposed: bool = False
    film_weights: int = 0  # F of Eq. 9: the FiLM weights of every FiLM this layer feeds (0: none)
    params_of: tuple[str, ...] = ()  # the stored parameters its weight and bias are read from, by name
    weight_region: str = ""  # which stored entries its weight reads ("": none known): equal keys, same entries
    bias_region: str = ""

    def __post_init__(self) -> None:
        if self.kh == 0 and self.kw == 0:
            object.__setattr__(self, "kh", self.k)
            object.__setattr__(self, "kw", self.k)

    @property
    def weights(self) -> int:
        """Stored weights of the active shape (0 for a matmul: both operands are activations)."""
        if self.kind == "matmul":
            return 0
        return self.kd * self.kh * self.kw * (self.c_in // self.groups) * self.c_out

    @property
    def macs(self) -> int:
        return self.shape().macs if self.c_in_eff and self.c_out_eff else 0

    @property
    def nonzero_macs(self) -> int:
        if self.kind == "matmul":
            return self.macs
        return self.weight_nonzero * self.d_out * self.h_out * self.w_out

    @property
    def formula(self) -> str:
        if self.kind == "matmul":
            return "matmul"
        return {"none": "eq7", "noise": "eq8", "film": "eq9"}[self.conditioning]

    def shape(self) -> LayerShape:
        """The delay model's view: effective (channel-pruned) shape, nnz when irregular zeros remain."""
        c_in, c_out = (self.c_in_eff, self.c_out_eff) if self.groups == 1 else (self.c_in, self.c_out)
        dense = self.kd * self.kh * self.kw * (c_in // self.groups) * c_out
        nnz = self.weight_nonzero if self.kind != "matmul" and self.weight_nonzero < dense else None
        film = self.conditioning == "film"
        # F summed over several FiLMs fed by this layer; 0 where it is the one FiLM's 2 d C + 4 C^2
        several = film and self.film_weights != film_weights(self.film_dim, self.film_channels)
        return LayerShape(
            name=self.name, kind=self.kind, k=self.k, kh=self.kh, kw=self.kw, kd=self.kd, c_in=c_in, c_out=c_out,
            d_out=self.d_out, h_out=self.h_out, w_out=self.w_out, groups=self.groups, formula=self.formula,
            film_dim=self.film_dim if film else 0, film_channels=self.film_channels if film else 0,
            film_total=self.film_weights if several else 0, nnz=nnz,
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
class DataFlow:
    """Facts about the graph that module surgery (SPEC 4.1) reads; names are module names.

    ``first_conv``: the first conv the input reaches (FLOATS leaves it unmasked). ``shortcut_norms``: BNs
    whose output enters a residual add as the shallower operand (in convs along the deepest chain): the
    BN of a projection shortcut, which gets no FiLM. ``output_layers``: the weight layers that write the
    model's outputs (slimming keeps their output channels). ``computed_weights``: modules that ran a conv
    or linear op whose weight is not one of their own parameters (a computed or borrowed weight).
    """

    first_conv: str | None = None
    shortcut_norms: tuple[str, ...] = ()
    output_layers: tuple[str, ...] = ()
    computed_weights: tuple[str, ...] = ()


@dataclass(frozen=True)
class Trace:
    """Everything counted from one forward pass (batch 1)."""

    input_size: tuple[int, ...]
    layers: tuple[LayerRecord, ...]
    films: tuple[FilmRecord, ...]
    ops: dict[str, int]
    unsupported: dict[str, int]
    noise_convs: tuple[str, ...] = field(default=())
    flow: DataFlow = field(default_factory=DataFlow)
    # stored parameter -> the most entries one op that met the data read from it (a view's slice), or None
    # where it was read through a computed copy (unknown: all its entries count); absent: never read
    param_reads: dict[str, int | None] = field(default_factory=dict)

    def layer(self, name: str) -> LayerRecord:
        for record in self.layers:
            if record.name == name:
                return record
        raise KeyError(name)

    def shapes(self) -> list[LayerShape]:
        """Delay-model shapes of the layers that compute: a layer channel-pruned to nothing is skipped (one
        with irregular zeros only, even all of its weights, still runs: the zeros are computed)."""
        return [record.shape() for record in self.layers if record.c_in_eff and record.c_out_eff]
