"""The immutable results of a trace: one record per weight layer or activation product, per FiLM, and the
data-flow facts that module surgery needs. Counters and the delay model read only these."""

from __future__ import annotations

from dataclasses import dataclass, field

from hwsim.delay import LayerShape

#: Kinds of :class:`LayerRecord`: weight layers, and activation x activation products (SPEC 3).
RECORD_KINDS = ("conv", "linear", "matmul")


@dataclass(frozen=True)
class LayerRecord:
    """One conv, linear or activation x activation product as it ran.

    ``c_in`` / ``c_out`` are the active channels (the weight slice that ran); ``c_in_eff`` / ``c_out_eff``
    count only channels the mask keeps any weight of (channel pruning). ``params`` counts the active
    weight and bias, ``nonzero_params`` the entries the mask keeps (all of them without a mask). ``macs`` =
    k^2 (C_i / g) C_o H_o W_o of the effective shape: pruned channels are not computed, irregular zeros still
    are (see ``nonzero_macs``). A linear layer over tokens has ``h_out`` = the positions it runs at.

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

    @property
    def weights(self) -> int:
        """Stored weights of the active shape (0 for a matmul: both operands are activations)."""
        if self.kind == "matmul":
            return 0
        return self.k * self.k * (self.c_in // self.groups) * self.c_out

    @property
    def macs(self) -> int:
        if self.kind != "matmul" and self.weight_nonzero == 0:  # pruned to nothing: it does not run
            return 0
        return self.shape().macs

    @property
    def nonzero_macs(self) -> int:
        if self.kind == "matmul":
            return self.macs
        return self.weight_nonzero * self.h_out * self.w_out

    @property
    def formula(self) -> str:
        if self.kind == "matmul":
            return "matmul"
        return {"none": "eq7", "noise": "eq8", "film": "eq9"}[self.conditioning]

    def shape(self) -> LayerShape:
        """The delay model's view: effective (channel-pruned) shape, nnz when irregular zeros remain."""
        c_in, c_out = (self.c_in_eff, self.c_out_eff) if self.groups == 1 else (self.c_in, self.c_out)
        dense = self.k * self.k * (c_in // self.groups) * c_out
        nnz = self.weight_nonzero if self.kind != "matmul" and self.weight_nonzero < dense else None
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

    def layer(self, name: str) -> LayerRecord:
        for record in self.layers:
            if record.name == name:
                return record
        raise KeyError(name)

    def shapes(self) -> list[LayerShape]:
        """Delay-model shapes of the layers that compute: a layer pruned to no weight at all is skipped."""
        return [record.shape() for record in self.layers if record.kind == "matmul" or record.weight_nonzero > 0]
