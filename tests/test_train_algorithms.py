"""FLOAT and OAT training steps on the real small_cnn: BN / noise routing, alpha gradient, OAT weighting."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from models import create_model, knobs
from hwsim.errors import HwsimError
from hwsim.train.algorithms import OAT_LAMBDAS, AttackSettings, create_algorithm, sample_oat_lambdas
from hwsim.train.protocol import StepContext

ATTACK = AttackSettings(eps=8 / 255, step_size=2 / 255, steps=2)


def _batch(n: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, 3, 32, 32, generator=g), torch.randint(0, 10, (n,), generator=g)


def test_float_routes_clean_half_to_bn_c_without_noise_and_adversarial_half_to_bn_a_with_noise() -> None:
    torch.manual_seed(0)
    model = create_model("small_cnn", "float").train()
    x, y = _batch(8)
    events: list[tuple[str, int, bool]] = []  # (which BN, batch size, grad enabled) of loss forwards
    noise: list[tuple[int, bool]] = []  # (batch size, conv output differs from the noiseless conv)

    first_bn = next(m for m in model.modules() if type(m).__name__ == "CondBatchNorm2d")
    first_bn.bns[0].register_forward_hook(lambda m, i, o: events.append(("C", i[0].shape[0], m.training)))
    first_bn.bns[1].register_forward_hook(lambda m, i, o: events.append(("A", i[0].shape[0], m.training)))
    conv = next(m for m in model.modules() if getattr(m, "noise_conditioned", False))

    def conv_hook(m: nn.Module, inputs: tuple[torch.Tensor], out: torch.Tensor) -> None:
        plain = F.conv2d(inputs[0], m.weight, None, m.stride, m.padding)
        noise.append((inputs[0].shape[0], not torch.allclose(out, plain)))

    conv.register_forward_hook(conv_hook)
    loss = create_algorithm("float", ATTACK).loss(StepContext.local(model), x, y)
    train_mode = [(bn, n) for bn, n, training in events if training]
    assert train_mode == [("C", 4), ("A", 4)]  # attack forwards (eval mode) are excluded
    assert all(bn == "A" for bn, _, training in events if not training)  # attack at lambda = 1
    assert noise[0] == (4, False)  # clean half: noise off
    assert all(flag for _, flag in noise[1:])  # attack + adversarial half: noise on
    loss.backward()
    alphas = [m.alpha for m in model.modules() if getattr(m, "noise_conditioned", False)]
    assert alphas and all(a.grad is not None and a.grad.abs() > 0 for a in alphas)
    assert model.hwsim_knobs.lambda_n == 0.0  # knobs restored after the step


def test_float_loss_is_half_clean_plus_half_adversarial() -> None:
    torch.manual_seed(0)
    model = create_model("small_cnn", "float").eval()  # eval: BN stats fixed so the replay is exact
    x, y = _batch(8)
    torch.manual_seed(1)
    loss = create_algorithm("float", ATTACK).loss(StepContext.local(model), x, y)
    torch.manual_seed(1)
    with knobs(model, lambda_n=0.0):
        lc = F.cross_entropy(model(x[:4]), y[:4])
    with knobs(model, lambda_n=1.0):
        x_adv = ATTACK.run(model, x[4:], y[4:])
        la = F.cross_entropy(model(x_adv), y[4:])
    assert loss.item() == pytest.approx(0.5 * lc.item() + 0.5 * la.item(), rel=1e-5)


def test_oat_lambda_sampling_share_of_zeros() -> None:
    torch.manual_seed(0)
    lam = sample_oat_lambdas(128)
    assert int((lam == 0).sum()) == math.ceil(128 / 6) == 22  # OAT reference: ceil(B / |S_lambda|)
    assert bool((lam[:22] == 0).all()) and bool((lam[22:] > 0).all())
    assert {round(v, 6) for v in lam[22:].tolist()} <= set(OAT_LAMBDAS[1:])
    counts = torch.stack([sample_oat_lambdas(128)[22:] for _ in range(50)]).flatten()
    for value in OAT_LAMBDAS[1:]:  # non-zero choices uniform: each about 1/5 of the rest
        assert abs(float((counts - value).abs().lt(1e-6).float().mean()) - 0.2) < 0.03


def test_oat_loss_matches_hand_computation() -> None:
    torch.manual_seed(0)
    model = create_model("small_cnn", "oat").eval()
    x, y = _batch(12)
    torch.manual_seed(7)
    loss = create_algorithm("oat", ATTACK).loss(StepContext.local(model), x, y)
    torch.manual_seed(7)
    lam = sample_oat_lambdas(12)
    n0 = int((lam == 0).sum())
    with knobs(model, lambda_n=lam):
        lc = F.cross_entropy(model(x), y, reduction="none")
    with knobs(model, lambda_n=lam[n0:]):
        x_adv = ATTACK.run(model, x[n0:], y[n0:])
        la = F.cross_entropy(model(x_adv), y[n0:], reduction="none")
    by_hand = sum((1 - lam[i]) * lc[i] + (lam[i] * la[i - n0] if i >= n0 else 0) for i in range(12)) / 12
    assert n0 == 2
    assert loss.item() == pytest.approx(float(by_hand.detach()), rel=1e-5)


def test_pgd_at_weights_and_registry_errors() -> None:
    torch.manual_seed(0)
    model = create_model("small_cnn").eval()
    x, y = _batch(4)
    clean = create_algorithm("pgd-at", ATTACK, lambda_=0.0).loss(StepContext.local(model), x, y)
    assert clean.item() == pytest.approx(F.cross_entropy(model(x), y).item(), rel=1e-6)
    with pytest.raises(HwsimError, match="unknown algorithm 'bogus'; valid: fast, float, free, mart, oat, pgd-at, trades"):
        create_algorithm("bogus", ATTACK)
