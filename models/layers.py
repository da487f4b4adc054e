"""Conditional layers and the factory that injects them into the base architectures.

A base definition (``resnet.py``, ``preact.py``, ``small_cnn.py``) asks a :class:`LayerFactory` for every
conv, norm, FiLM and classifier; the variant only changes the factory. Every conditional layer holds the
model's single :class:`~models.knobs.KnobState` (given at construction) and reads lambda / width from it.

Markers the tracer relies on (``hwsim.trace.modules``; hwsim never imports these classes): convs compute
through ``F.conv2d`` with the effective weight (sliced, masked, noise added); noise convs have
``noise_conditioned = True``; masked convs have a buffer ``weight_mask``; :class:`FiLM` has
``film_conditioning = True`` and exposes ``film_dim``, ``channels`` and ``active_channels()``; switchable
norms expose ``active_norms()``; the classifier is an ``nn.Linear``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from models.knobs import S_LAMBDA, KnobState

#: FLOAT's initial noise scaling factor alpha_l (paper Sec. 3.1; PNI-style initialisation).
ALPHA_INIT = 0.25


class Normalize(nn.Module):
    """Per-channel ``(x - mean) / std`` so the model takes inputs in [0, 1]."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class CondConv2d(nn.Module):
    """A bias-free conv whose effective weight may be sliced (slim), masked (FLOATS) and noised (FLOAT).

    Effective weight, in this order: ``theta[:round(w*C_out), :C_in_active]`` (slim; C_in follows the
    input), times ``weight_mask`` (masked), plus ``s * alpha * eta`` with ``eta ~ N(0, std(theta_eff)^2)``
    drawn fresh at every forward without gradient (noise). ``theta_eff`` is the sliced, masked weight, so
    the noise follows the weight slice (FLOATS slim, supplement Alg. 2: each width trains its own slice) and
    its std matches the tensor that actually runs; the noise is masked too so pruned weights stay zero.
    With ``s == 0`` no noise op runs at all, so the conv is bit-identical to ``nn.Conv2d``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int], stride, padding,
                 state: KnobState, *, noise: bool, masked: bool, groups: int = 1, dilation=1,
                 bias: bool = False) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.groups, self.dilation = groups, dilation
        self.noise_conditioned = noise
        self._knobs = state
        kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels // groups, kh, kw))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))  # nn.Conv2d's default init
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        if noise:
            self.alpha = nn.Parameter(torch.tensor(ALPHA_INIT))
            self.noise_scale_params = ("alpha",)  # the marker hwsim's counters recognise FLOAT's alpha by
        if masked:
            self.register_buffer("weight_mask", torch.ones_like(self.weight))

    def active_groups(self, in_active: int) -> int:
        """Groups that run when ``in_active`` input channels arrive.

        A grouped conv keeps its groups and thins each (ResNeXt 32x4d at width 0.5 is 32x2d, as
        torch-pruning's DepGraph prunes grouped convs); a depthwise conv (one input channel per group) keeps
        one group per active channel. Channels that do not split evenly into the groups cannot be resolved.
        """
        if self.groups == 1:
            return 1
        out_active = self._knobs.active(self.out_channels)
        groups = in_active if self.in_channels == self.groups else self.groups
        if in_active % groups or out_active % groups:
            raise ValueError(f"grouped conv ({self.in_channels}->{self.out_channels}, groups={self.groups}): at "
                             f"width {self._knobs.width:g} its {in_active} input and {out_active} output channels "
                             f"do not split into {groups} equal groups")
        return groups

    def effective_weight(self, in_active: int) -> torch.Tensor:
        w = self.weight
        out_active = self._knobs.active(self.out_channels)
        in_per_group = in_active // self.active_groups(in_active) if self.groups > 1 else in_active
        if out_active != self.out_channels or in_per_group != w.shape[1]:
            w = w[:out_active, :in_per_group]
        mask = getattr(self, "weight_mask", None)
        if mask is not None:
            mask = mask[: w.shape[0], : w.shape[1]]
            # the mask gates the weight's value but not its gradient: sparse learning regrows inactive
            # weights by the momentum of their gradient (it keeps them at zero after every step)
            w = w - (w * (1 - mask)).detach()
        if self.noise_conditioned:
            scale = self._knobs.noise_scale()
            if scale != 0.0:
                with torch.no_grad():
                    eta = torch.randn_like(w) * w.std()
                    if mask is not None:
                        eta = eta * mask
                w = w + (scale * self.alpha) * eta
        return w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.effective_weight(x.shape[1])
        bias = self.bias[: weight.shape[0]] if self.bias is not None else None
        return F.conv2d(x, weight, bias, self.stride, self.padding, self.dilation, self.active_groups(x.shape[1]))

    def extra_repr(self) -> str:
        groups = f", groups={self.groups}" if self.groups != 1 else ""
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}{groups}, noise={self.noise_conditioned}, "
                f"masked={hasattr(self, 'weight_mask')}")


class CondBatchNorm2d(nn.Module):
    """Switchable (per width) and/or dual (BN_C, BN_A) batch norm.

    ``bns[i * n_cond + k]`` is the BN for width ``widths[i]`` (with ``round(w * C)`` features) and condition
    ``k`` (0 = BN_C, 1 = BN_A). BN_A is used iff ``lambda > lambda_th``; a per-sample lambda tensor routes
    each sample by index, so running stats of each BN only see the samples routed to it.
    """

    def __init__(self, channels: int, state: KnobState, *, dual: bool) -> None:
        super().__init__()
        self.channels = channels
        self._knobs = state
        self.n_cond = 2 if dual else 1
        self.bns = nn.ModuleList(
            nn.BatchNorm2d(max(1, int(round(w * channels)))) for w in state.widths for _ in range(self.n_cond)
        )

    def active_norms(self) -> list[nn.BatchNorm2d]:
        """The BNs that serve the active width (BN_C and BN_A of it): the part of this layer that runs."""
        base = self._knobs.width_index() * self.n_cond
        return list(self.bns[base: base + self.n_cond])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        base = self._knobs.width_index() * self.n_cond
        if self.n_cond == 1:
            return self.bns[base](x)
        mask = self._knobs.adversarial_mask(x.shape[0], x.device)
        if mask is None:
            return self.bns[base + int(self._knobs.uniform_adversarial())](x)
        idx_c = (~mask).nonzero().squeeze(1)
        idx_a = mask.nonzero().squeeze(1)
        y = torch.cat([self.bns[base](x[idx_c]), self.bns[base + 1](x[idx_a])])
        return y[torch.argsort(torch.cat([idx_c, idx_a]))]


def orthogonal_encoding(film_dim: int, rows: int = len(S_LAMBDA), seed: int = 0) -> torch.Tensor:
    """The first ``rows`` rows of a fixed random ``film_dim x film_dim`` orthogonal matrix.

    OAT encodes lambda by the row of a random orthogonal matrix at lambda's position in S_lambda; only
    those ``rows = len(S_lambda)`` rows are ever read, so only they are stored. Fixed seed: the same encoding
    in every build, and a set's first k rows do not depend on its size (the default set keeps its encoding).
    """
    if not 1 <= rows <= film_dim:
        raise ValueError(f"an orthogonal encoding of size {film_dim} has at most {film_dim} rows, not {rows}")
    gen = torch.Generator().manual_seed(seed)
    # built on the CPU even under a ``torch.device("meta")`` context, then moved to the default device
    a = torch.randn(film_dim, film_dim, generator=gen, dtype=torch.float64, device="cpu")
    q, r = torch.linalg.qr(a)
    q = q * torch.sign(torch.diagonal(r))  # unique (Haar-distributed) Q
    return q[:rows].float().to(torch.get_default_device())


class FiLM(nn.Module):
    """OAT's feature-wise affine layer: ``y = x * leaky_relu(mu) + leaky_relu(sigma)`` per channel.

    ``(mu, sigma)`` = split of ``Linear(2C, 2C)(LeakyReLU(Linear(d, 2C)(enc(lambda))))``. ``enc`` is the raw
    lambda for ``film_dim == 1`` and otherwise the orthogonal row (buffer ``encoding``, one row per value of
    the model's S_lambda ``state.lambda_set``) at lambda's position in that set. At a slim width
    the first ``active_channels()`` of mu and sigma are used. A scalar lambda runs the MLP once (batch 1)
    and broadcasts; a per-sample lambda tensor runs it per sample.
    """

    film_conditioning = True  # the marker hwsim's tracer recognises (Eq. 9 ownership)

    def __init__(self, film_dim: int, channels: int, state: KnobState) -> None:
        super().__init__()
        self.film_dim, self.channels = film_dim, channels
        self._knobs = state
        self.mlp = nn.Sequential(nn.Linear(film_dim, 2 * channels), nn.LeakyReLU(),
                                 nn.Linear(2 * channels, 2 * channels))
        if film_dim > 1:
            self.register_buffer("encoding", orthogonal_encoding(film_dim, len(state.lambda_set)))

    def active_channels(self) -> int:
        return self._knobs.active(self.channels)

    def _encode(self, batch: int, device: torch.device) -> torch.Tensor:
        lam = self._knobs.lambdas(batch if isinstance(self._knobs.lambda_n, torch.Tensor) else 1, device)
        if self.film_dim == 1:
            return lam.unsqueeze(1).to(self.mlp[0].weight.dtype)
        s_lambda = torch.tensor(self._knobs.lambda_set, device=device)
        position = (lam.unsqueeze(1) - s_lambda).abs().argmin(dim=1)  # set_knobs checked membership
        return self.encoding[position]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.mlp(self._encode(x.shape[0], x.device))
        active = self.active_channels()
        mu = F.leaky_relu(h[:, :active])[:, :, None, None]
        sigma = F.leaky_relu(h[:, self.channels: self.channels + active])[:, :, None, None]
        return x * mu + sigma

    def extra_repr(self) -> str:
        return f"film_dim={self.film_dim}, channels={self.channels}"


class SlimLinear(nn.Linear):
    """A linear layer of a slim model: reads only the active input features (the last dim of its input).

    The classifier keeps all its outputs; a hidden layer given ``state`` also keeps only its first
    ``state.active(out_features)`` outputs.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 state: KnobState | None = None) -> None:
        super().__init__(in_features, out_features, bias)
        self._knobs = state

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self._knobs.active(self.out_features) if self._knobs is not None else self.out_features
        bias = self.bias[:out] if self.bias is not None else None
        return F.linear(x, self.weight[:out, : x.shape[-1]], bias)


@dataclass(frozen=True)
class LayerFactory:
    """What a variant injects into a base definition.

    ``noise``: FLOAT noise convs; ``masked``: FLOATS masks on prunable convs; ``dual``: BN_C/BN_A pairs;
    ``film_dim``: 0 for no FiLM, else the FiLM encoding size d. Slimmable-ness comes from
    ``len(state.widths) > 1``. With every option off the factory builds plain ``nn.Conv2d``/``BatchNorm2d``.
    """

    state: KnobState
    noise: bool = False
    masked: bool = False
    dual: bool = False
    film_dim: int = 0

    @property
    def slim(self) -> bool:
        return len(self.state.widths) > 1

    def conv(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
             *, prunable: bool = True) -> nn.Module:
        """A bias-free conv with ``padding = kernel_size // 2``. ``prunable=False`` for the stem."""
        padding = kernel_size // 2
        masked = self.masked and prunable
        if not (self.noise or masked or self.slim):
            return nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=False)
        return CondConv2d(in_channels, out_channels, kernel_size, stride, padding, self.state,
                          noise=self.noise, masked=masked)

    def norm(self, channels: int) -> nn.Module:
        if not (self.dual or self.slim):
            return nn.BatchNorm2d(channels)
        return CondBatchNorm2d(channels, self.state, dual=self.dual)

    def film(self, channels: int) -> nn.Module:
        """A FiLM after a body BN (OAT variants), identity otherwise."""
        return FiLM(self.film_dim, channels, self.state) if self.film_dim else nn.Identity()

    def linear(self, in_features: int, out_features: int) -> nn.Linear:
        return SlimLinear(in_features, out_features) if self.slim else nn.Linear(in_features, out_features)
