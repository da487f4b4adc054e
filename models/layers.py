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

import copy
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


def _gate(w: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """``w * mask`` in value, but not in gradient: sparse learning regrows inactive weights by the momentum of
    their gradient (it keeps them at zero after every step)."""
    return w if mask is None else w - (w * (1 - mask)).detach()


def _add_noise(w: torch.Tensor, alpha: torch.Tensor, mask: torch.Tensor | None, state: KnobState) -> torch.Tensor:
    """FLOAT's ``w + s * alpha * eta``, ``eta ~ N(0, std(w)^2)`` drawn without gradient (masked like ``w``)."""
    scale = state.noise_scale()
    if scale == 0.0:
        return w
    with torch.no_grad():
        eta = torch.randn_like(w) * w.std()
        if mask is not None:
            eta = eta * mask
    return w + (scale * alpha) * eta


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
                 bias: bool = False, keep_outputs: bool = False) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.keep_outputs = keep_outputs  # a conv classifier: its outputs (the logits) stay whole at every width
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
        out_active = self.active_out()
        groups = in_active if self.in_channels == self.groups else self.groups
        if in_active % groups or out_active % groups:
            raise ValueError(f"grouped conv ({self.in_channels}->{self.out_channels}, groups={self.groups}): at "
                             f"width {self._knobs.width:g} its {in_active} input and {out_active} output channels "
                             f"do not split into {groups} equal groups")
        return groups

    def active_out(self) -> int:
        return self.out_channels if self.keep_outputs else self._knobs.active(self.out_channels)

    def effective_weight(self, in_active: int) -> torch.Tensor:
        w = self.weight
        out_active = self.active_out()
        in_per_group = in_active // self.active_groups(in_active) if self.groups > 1 else in_active
        if out_active != self.out_channels or in_per_group != w.shape[1]:
            w = w[:out_active, :in_per_group]
        mask = getattr(self, "weight_mask", None)
        if mask is not None:
            mask = mask[: w.shape[0], : w.shape[1]]
            w = _gate(w, mask)
        if self.noise_conditioned:
            w = _add_noise(w, self.alpha, mask, self._knobs)
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


def norm_features(norm: nn.Module) -> int:
    """The feature count C a normalization layer normalizes (BatchNorm, LayerNorm over one dim, GroupNorm)."""
    if isinstance(norm, nn.GroupNorm):
        return int(norm.num_channels)
    if isinstance(norm, nn.LayerNorm):
        if len(norm.normalized_shape) != 1:
            raise ValueError(f"a LayerNorm over {tuple(norm.normalized_shape)} normalizes more than one dimension; "
                             "only a LayerNorm over the feature dimension can be conditioned or sliced")
        return int(norm.normalized_shape[0])
    return int(norm.num_features)


def resize_norm(norm: nn.Module, channels: int) -> nn.Module:
    """A copy of ``norm`` (its class, forward, eps and momentum kept) over its first ``channels`` features:
    every parameter and buffer indexed by feature keeps its first ``channels`` entries."""
    full = norm_features(norm)
    new = copy.deepcopy(norm)
    if channels == full:
        return new
    if isinstance(norm, nn.GroupNorm) and channels % norm.num_groups:
        raise ValueError(f"GroupNorm({norm.num_groups}, {full}) at {channels} channels: they do not split into "
                         f"{norm.num_groups} groups")
    for name, tensor in [*new.named_parameters(recurse=False), *new.named_buffers(recurse=False)]:
        if tensor is not None and tensor.dim() >= 1 and tensor.shape[0] == full:
            sliced = tensor.detach()[:channels].clone()
            if isinstance(tensor, nn.Parameter):
                setattr(new, name, nn.Parameter(sliced, requires_grad=tensor.requires_grad))
            else:
                setattr(new, name, sliced)
    if isinstance(new, nn.GroupNorm):
        new.num_channels = channels
    elif isinstance(new, nn.LayerNorm):
        new.normalized_shape = (channels,)
    else:
        new.num_features = channels
    return new


class CondNorm(nn.Module):
    """Switchable (per width) and/or dual (norm_C, norm_A) normalization, of any kind.

    ``bns[i * n_cond + k]`` serves width ``widths[i]`` (over ``round(w * C)`` features) and condition ``k``
    (0 = clean, 1 = adversarial): each a copy of the template ``norm`` (:func:`resize_norm`), so a
    BatchNorm, a LayerNorm, a channels-first LayerNorm2d or a GroupNorm keeps its own forward. The
    adversarial norm is used iff ``lambda > lambda_th``; a per-sample lambda tensor routes each sample by
    index, so the running stats of each norm only see the samples routed to it.
    """

    def __init__(self, norm: nn.Module, state: KnobState, *, dual: bool) -> None:
        super().__init__()
        self.channels = norm_features(norm)
        self._knobs = state
        self.n_cond = 2 if dual else 1
        self.bns = nn.ModuleList(resize_norm(norm, max(1, int(round(w * self.channels))))
                                 for w in state.widths for _ in range(self.n_cond))

    def active_norms(self) -> list[nn.Module]:
        """The norms that serve the active width (norm_C and norm_A of it): the part of this layer that runs."""
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


class CondBatchNorm2d(CondNorm):
    """Switchable (per width) and/or dual (BN_C, BN_A) batch norm: :class:`CondNorm` of ``nn.BatchNorm2d``.

    ``bns[i * n_cond + k]`` is the BN for width ``widths[i]`` (with ``round(w * C)`` features) and condition
    ``k`` (0 = BN_C, 1 = BN_A). BN_A is used iff ``lambda > lambda_th``.
    """

    def __init__(self, channels: int, state: KnobState, *, dual: bool) -> None:
        nn.Module.__init__(self)
        self.channels = channels
        self._knobs = state
        self.n_cond = 2 if dual else 1
        self.bns = nn.ModuleList(
            nn.BatchNorm2d(max(1, int(round(w * channels)))) for w in state.widths for _ in range(self.n_cond)
        )


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
    the model's S_lambda ``state.lambda_set``) at lambda's position in that set. ``channel_dim`` is the axis
    of ``x`` that holds the C features: 1 after a BatchNorm or a channels-first LayerNorm2d, -1 after a
    LayerNorm over tokens. At a slim width the MLP itself runs at the active C_a (FiLM(d, C_a): the first
    C_a of mu's and of sigma's rows, in both layers), so what runs is what Eq. 9 and the params count. A
    scalar lambda runs the MLP once (batch 1) and broadcasts; a per-sample lambda tensor runs it per sample.
    """

    film_conditioning = True  # the marker hwsim's tracer recognises (Eq. 9 ownership)

    def __init__(self, film_dim: int, channels: int, state: KnobState, *, channel_dim: int = 1) -> None:
        super().__init__()
        if channel_dim not in (1, -1):
            raise ValueError(f"channel_dim must be 1 (channels first) or -1 (channels last), got {channel_dim!r}")
        self.film_dim, self.channels, self.channel_dim = film_dim, channels, channel_dim
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

    def _run_mlp(self, encoded: torch.Tensor, active: int) -> torch.Tensor:
        """``[mu | sigma]`` of the first ``active`` channels: the MLP FiLM(d, C_a) that the slice runs."""
        if active == self.channels:
            return self.mlp(encoded)
        first, act, second = self.mlp
        rows = torch.cat([torch.arange(active), self.channels + torch.arange(active)]).to(encoded.device)
        h = act(F.linear(encoded, first.weight.index_select(0, rows), first.bias.index_select(0, rows)))
        w2 = second.weight.index_select(0, rows).index_select(1, rows)
        return F.linear(h, w2, second.bias.index_select(0, rows))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        active = self.active_channels()
        h = self._run_mlp(self._encode(x.shape[0], x.device), active)
        mu, sigma = F.leaky_relu(h[:, :active]), F.leaky_relu(h[:, active:])
        ones = [1] * (x.dim() - 2)
        shape = (h.shape[0], active, *ones) if self.channel_dim == 1 else (h.shape[0], *ones, active)
        return x * mu.reshape(shape) + sigma.reshape(shape)

    def extra_repr(self) -> str:
        last = ", channels_last" if self.channel_dim == -1 else ""
        return f"film_dim={self.film_dim}, channels={self.channels}{last}"


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


class CondLinear(nn.Linear):
    """A linear layer whose effective weight may be sliced (slim), masked (FLOATS) and noised (FLOAT), like
    :class:`CondConv2d`: ``theta[rows, :C_in_active]`` times ``weight_mask`` plus ``s * alpha * eta``.

    Input features follow the input (its last dim). Output rows: all of them, or with ``slim`` the first
    ``round(w * units)`` units of each of ``parts`` blocks of ``units`` x ``unit`` rows (``out_units``
    = (parts, units, unit)): (1, C_out, 1) for a hidden layer, (3, heads, head_dim) for attention's packed
    q, k, v projection, which so keeps whole heads. With every option off it is ``nn.Linear``.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool, state: KnobState, *, noise: bool = False,
                 masked: bool = False, slim: bool = False, out_units: tuple[int, int, int] | None = None) -> None:
        super().__init__(in_features, out_features, bias)
        self._knobs = state
        self.noise_conditioned = noise
        self.slim = slim
        self.out_units = out_units or (1, out_features, 1)
        parts, units, unit = self.out_units
        if parts * units * unit != out_features:
            raise ValueError(f"out_units {self.out_units} do not make {out_features} output features")
        if noise:
            self.alpha = nn.Parameter(torch.tensor(ALPHA_INIT))
            self.noise_scale_params = ("alpha",)  # FLOAT's alpha, marked for hwsim's counters (SPEC 5.2)
        if masked:
            self.register_buffer("weight_mask", torch.ones_like(self.weight))

    def _rows(self) -> torch.Tensor | int | None:
        """The output rows that run: None for all, an int n for the first n, or an index tensor."""
        if not self.slim:
            return None
        parts, units, unit = self.out_units
        keep = self._knobs.active(units) * unit
        if keep == units * unit:
            return None
        if parts == 1:
            return keep
        return torch.cat([torch.arange(p * units * unit, p * units * unit + keep) for p in range(parts)])

    @staticmethod
    def _take(t: torch.Tensor | None, rows, columns: int | None) -> torch.Tensor | None:
        if t is None:
            return None
        if isinstance(rows, int):
            t = t[:rows]
        elif rows is not None:
            t = t.index_select(0, rows.to(t.device))
        return t[:, :columns] if columns is not None else t

    def effective(self, in_active: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        rows = self._rows()
        columns = in_active if in_active != self.in_features else None
        w = self._take(self.weight, rows, columns)
        mask = self._take(getattr(self, "weight_mask", None), rows, columns)
        w = _gate(w, mask)
        if self.noise_conditioned:
            w = _add_noise(w, self.alpha, mask, self._knobs)
        return w, self._take(self.bias, rows, None)

    def effective_weight(self, in_active: int) -> torch.Tensor:
        return self.effective(in_active)[0]

    def forward(self, x: torch.Tensor, part: int | None = None) -> torch.Tensor:
        """``x W^T + b``; ``part`` = i runs only the i-th of the ``parts`` row blocks (cross attention's q, k or v
        projection of a packed weight)."""
        weight, bias = self.effective(x.shape[-1])
        if part is not None:
            weight = weight.chunk(self.out_units[0])[part]
            bias = bias.chunk(self.out_units[0])[part] if bias is not None else None
        return F.linear(x, weight, bias)

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, noise={self.noise_conditioned}, masked={hasattr(self, 'weight_mask')}, "
                f"slim={self.slim}")


class Attention(nn.Module):
    """Multi-head attention with ``nn.MultiheadAttention``'s call, outputs and parameters, built from two
    :class:`CondLinear` layers so that the variants reach its weights: ``in_proj`` (the packed q, k, v
    projection, E -> 3E) and ``out_proj`` (E -> E).

    At a slim width it keeps the first ``round(w * heads)`` whole heads (the head dimension stays): the q, k
    and v rows of those heads in ``in_proj`` and their columns in ``out_proj``, whose outputs are slimmed
    like any hidden layer's. Module surgery puts it in place of every ``nn.MultiheadAttention``
    (:func:`from_multihead`), so the weights PyTorch applies functionally (``in_proj_weight``) are layers that
    noise, masks and slicing reach, and it never takes PyTorch's fused inference path.
    """

    def __init__(self, embed_dim: int, num_heads: int, state: KnobState, *, bias: bool = True, dropout: float = 0.0,
                 batch_first: bool = False, noise: bool = False, masked: bool = False, slim: bool = False) -> None:
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim {embed_dim} does not split into {num_heads} heads")
        self.embed_dim, self.num_heads, self.head_dim = embed_dim, num_heads, embed_dim // num_heads
        self.dropout, self.batch_first = dropout, batch_first
        self.in_proj = CondLinear(embed_dim, 3 * embed_dim, bias, state, noise=noise, masked=masked, slim=slim,
                                  out_units=(3, num_heads, self.head_dim))
        self.out_proj = CondLinear(embed_dim, embed_dim, bias, state, noise=noise, masked=masked, slim=slim)

    @classmethod
    def from_multihead(cls, mha: nn.MultiheadAttention, state: KnobState, **flags: bool) -> Attention:
        """The equivalent of ``mha`` (same weights, same outputs); raises ValueError for what it cannot copy."""
        if not mha._qkv_same_embed_dim or mha.bias_k is not None or mha.add_zero_attn:
            raise ValueError("an nn.MultiheadAttention with kdim/vdim, add_bias_kv or add_zero_attn")
        new = cls(mha.embed_dim, mha.num_heads, state, bias=mha.in_proj_bias is not None, dropout=mha.dropout,
                  batch_first=mha.batch_first, **flags)
        with torch.no_grad():
            new.in_proj.weight.copy_(mha.in_proj_weight)
            new.out_proj.weight.copy_(mha.out_proj.weight)
            if mha.in_proj_bias is not None:
                new.in_proj.bias.copy_(mha.in_proj_bias)
                new.out_proj.bias.copy_(mha.out_proj.bias)
        return new.to(device=mha.in_proj_weight.device, dtype=mha.in_proj_weight.dtype)

    def _mask(self, attn_mask, key_padding_mask, batch: int, heads: int, dtype) -> torch.Tensor | None:
        """One additive float mask broadcastable to (B, heads, L, S), from MultiheadAttention's two masks
        (bool: True = not allowed; float: added to the scores)."""
        masks = []
        for m in (attn_mask, key_padding_mask):
            if m is None:
                continue
            if m.dtype == torch.bool:
                m = torch.zeros(m.shape, dtype=dtype, device=m.device).masked_fill(m, float("-inf"))
            masks.append(m.to(dtype))
        if not masks:
            return None
        total = None
        if attn_mask is not None:
            total = masks.pop(0)
            if total.dim() == 3:  # (B * H, L, S): keep the active heads
                total = total.view(batch, self.num_heads, *total.shape[1:])[:, :heads]
        if key_padding_mask is not None:
            pad = masks.pop(0)[:, None, None, :]
            total = pad if total is None else total + pad
        return total

    def forward(self, query: torch.Tensor, key: torch.Tensor | None = None, value: torch.Tensor | None = None,
                key_padding_mask: torch.Tensor | None = None, need_weights: bool = True,
                attn_mask: torch.Tensor | None = None, average_attn_weights: bool = True,
                is_causal: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        key = query if key is None else key
        value = key if value is None else value
        inputs = [t if self.batch_first or t.dim() == 2 else t.transpose(0, 1) for t in (query, key, value)]
        unbatched = inputs[0].dim() == 2
        if unbatched:
            inputs = [t.unsqueeze(0) for t in inputs]
        x = inputs[0]
        b, n, _ = x.shape
        if key is query and value is query:  # self-attention: one packed projection
            qkv = self.in_proj(x)
            heads = qkv.shape[-1] // (3 * self.head_dim)
            q, k, v = qkv.view(b, n, 3, heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        else:  # cross attention: q, k and v rows of the packed weight, each on its own input
            q, k, v = (self.in_proj(t, part=i) for i, t in enumerate(inputs))
            heads = q.shape[-1] // self.head_dim
            q, k, v = (t.view(b, t.shape[1], heads, self.head_dim).transpose(1, 2) for t in (q, k, v))
        mask = self._mask(attn_mask, key_padding_mask, b, heads, q.dtype)
        p = self.dropout if self.training else 0.0
        weights = None
        if need_weights:
            scores = (q @ k.transpose(-2, -1)) * self.head_dim ** -0.5
            if mask is not None:
                scores = scores + mask
            elif is_causal:
                causal = torch.ones(n, k.shape[2], dtype=torch.bool, device=x.device).triu(1)
                scores = scores.masked_fill(causal, float("-inf"))
            attn = scores.softmax(dim=-1)
            weights = attn.mean(dim=1) if average_attn_weights else attn
            out = F.dropout(attn, p, self.training) @ v
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p,
                                                 is_causal=is_causal and mask is None)
        out = self.out_proj(out.transpose(1, 2).reshape(b, n, heads * self.head_dim))
        if unbatched:
            out, weights = out.squeeze(0), (weights.squeeze(0) if weights is not None else None)
        elif not self.batch_first:
            out = out.transpose(0, 1)
        return out, weights

    def extra_repr(self) -> str:
        return f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, batch_first={self.batch_first}"


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
             *, prunable: bool = True, padding: int | None = None) -> nn.Module:
        """A bias-free conv with ``padding = kernel_size // 2`` unless given. ``prunable=False`` for the stem."""
        padding = kernel_size // 2 if padding is None else padding
        masked = self.masked and prunable
        if not (self.noise or masked or self.slim):
            return nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=False)
        return CondConv2d(in_channels, out_channels, kernel_size, stride, padding, self.state,
                          noise=self.noise, masked=masked)

    def norm(self, channels: int) -> nn.Module:
        if not (self.dual or self.slim):
            return nn.BatchNorm2d(channels)
        return CondBatchNorm2d(channels, self.state, dual=self.dual)

    def film(self, channels: int, *, channel_dim: int = 1) -> nn.Module:
        """A FiLM after a body norm (OAT variants), identity otherwise; ``channel_dim=-1`` after a LayerNorm
        over tokens."""
        return FiLM(self.film_dim, channels, self.state, channel_dim=channel_dim) if self.film_dim else nn.Identity()

    def layer_norm(self, features: int) -> nn.Module:
        """A LayerNorm over the last dim; switchable / dual like :meth:`norm` where the variant asks for it."""
        if not (self.dual or self.slim):
            return nn.LayerNorm(features)
        return CondNorm(nn.LayerNorm(features), self.state, dual=self.dual)

    def dense(self, in_features: int, out_features: int) -> nn.Linear:
        """A hidden linear layer (biased): noise, masks and slicing as the variant's convs get them."""
        if not (self.noise or self.masked or self.slim):
            return nn.Linear(in_features, out_features)
        return CondLinear(in_features, out_features, True, self.state, noise=self.noise, masked=self.masked,
                          slim=self.slim)

    def attention(self, dim: int, heads: int) -> Attention:
        """Multi-head self-attention over (B, N, dim) tokens, its projections conditioned like :meth:`dense`."""
        return Attention(dim, heads, self.state, batch_first=True, noise=self.noise, masked=self.masked,
                         slim=self.slim)

    def linear(self, in_features: int, out_features: int) -> nn.Linear:
        return SlimLinear(in_features, out_features) if self.slim else nn.Linear(in_features, out_features)
