"""What the conditional layers compute, checked through the public model API (create_model, set_knobs and
the tracer's markers: ``noise_conditioned`` convs, FiLM modules with ``film_dim`` / ``active_channels``),
so the tests survive a rewrite of the layer classes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from models import create_model, set_knobs


def _first_noise_conv(model: nn.Module) -> nn.Module:
    return next(m for m in model.modules() if getattr(m, "noise_conditioned", False))


def _noise_output(conv: nn.Module, model: nn.Module, x: torch.Tensor, seed: int) -> torch.Tensor:
    """Output at lambda_n = 1 minus output at lambda_n = 0 (no noise), the noise draw fixed by ``seed``."""
    set_knobs(model, lambda_n=0.0)
    clean = conv(x)
    set_knobs(model, lambda_n=1.0)
    torch.manual_seed(seed)
    return conv(x) - clean


@torch.no_grad()
def test_float_noise_is_scaled_by_the_weights_std(one_thread):
    """eta ~ N(0, std(theta)^2): scaling theta by 10 scales the injected noise by exactly 10, and its size
    matches alpha * std(theta) (the noise of a unit normal would be about 10x larger for these weights)."""
    model = create_model("small_cnn", "float", dataset="mnist")
    conv = _first_noise_conv(model)
    c_in = conv.weight.shape[1]
    x = torch.randn(1, c_in, 64, 64, generator=torch.Generator().manual_seed(1))
    noise = _noise_output(conv, model, x, seed=7)
    assert noise.abs().max() > 0
    with torch.no_grad():
        conv.weight.mul_(10)
    scaled = _noise_output(conv, model, x, seed=7)
    torch.testing.assert_close(scaled, 10 * noise, rtol=1e-4, atol=1e-5)
    with torch.no_grad():
        conv.weight.div_(10)
    # the noise output is conv(x, alpha s eta): per pixel a sum of k^2 C_in terms eta_j x_j, so its std is
    # alpha * std(theta) * sqrt(k^2 C_in) * std(x)
    k2c = conv.weight[0].numel()
    alpha = float(getattr(conv, "alpha"))
    expected = alpha * float(conv.weight.std()) * k2c**0.5 * float(x.std())
    assert float(noise.std()) == pytest.approx(expected, rel=0.25)
    assert float(conv.weight.std()) < 0.5  # so an unscaled N(0, 1) draw would miss by more than 2x


def _films(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if hasattr(m, "film_dim") and callable(getattr(m, "active_channels", None))]


@torch.no_grad()
def test_film_at_a_slim_width_reads_sigma_from_the_sigma_rows(one_thread):
    """FiLM's MLP outputs 2C rows: mu = rows [0, C), sigma = rows [C, 2C). At width 0.5 the first C/2 of
    each are used: sigma from rows [C, C + C/2), never from rows [C/2, C) (which belong to mu)."""
    model = create_model("small_cnn", "oat-slim", dataset="mnist")
    set_knobs(model, lambda_n=0.0, width=0.5)
    film = _films(model)[0]
    channels, active = film.channels, film.active_channels()
    assert active == channels // 2 and active > 0
    last = [m for m in film.modules() if isinstance(m, nn.Linear)][-1]
    assert last.out_features == 2 * channels
    last.weight.zero_()
    last.bias[:channels] = 1.0  # mu = leaky_relu(1) = 1: y = x + sigma
    last.bias[channels:] = 10.0 + torch.arange(channels, dtype=last.bias.dtype)  # sigma row C + i holds 10 + i
    x = torch.zeros(1, active, 2, 2)
    y = film(x)
    assert y.shape == (1, active, 2, 2)
    expected = (10.0 + torch.arange(active, dtype=y.dtype))[None, :, None, None].expand_as(y)
    torch.testing.assert_close(y, expected)
