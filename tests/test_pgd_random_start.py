"""PGD's random start, observed in its output (the public ``hwsim.train.attacks.pgd``)."""

from __future__ import annotations

import torch
from torch import nn

from hwsim.train.attacks import pgd


def _setup() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 10))
    x = torch.full((4, 3, 8, 8), 0.5)  # interior: the eps ball is not clipped by [0, 1]
    y = torch.arange(4)
    return model, x, y


def test_random_start_spreads_the_perturbation_over_the_eps_ball(one_thread):
    """One tiny step after the start: with a random start |x_adv - x| is spread uniformly over [0, eps]; without
    one every pixel moves by exactly the step."""
    model, x, y = _setup()
    eps, step = 0.1, 1e-4
    torch.manual_seed(1)
    adv = pgd(model, x, y, eps=eps, step_size=step, steps=1)
    delta = (adv - x).abs()
    assert float(delta.max()) <= eps + 1e-6
    assert 0.35 < float((delta > eps / 2).float().mean()) < 0.65  # uniform start: about half beyond eps/2
    assert float(delta.mean()) > 10 * step
    torch.manual_seed(2)
    assert not torch.equal(pgd(model, x, y, eps=eps, step_size=step, steps=1), adv)  # a fresh start each call

    plain = pgd(model, x, y, eps=eps, step_size=step, steps=1, random_start=False)
    torch.testing.assert_close((plain - x).abs(), torch.full_like(x, step))
