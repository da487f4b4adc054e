"""The step protocol: one step of each algorithm pinned, the slimmable width loop, PGD-AT on a noisy model."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from hwsim.train.algorithms import AttackSettings, create_algorithm
from hwsim.train.protocol import StepContext
from models import create_model, knobs

ATTACK = AttackSettings(eps=8 / 255, step_size=2 / 255, steps=2)


def _batch(n: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, 3, 32, 32, generator=g), torch.randint(0, 10, (n,), generator=g)


# Values the pre-protocol trainer gave (``algorithm.loss(net, model, x, y)``, then backward and one SGD step)
# for this exact setting; the step protocol must reproduce them: (loss, sum of parameters, sum of |parameters|).
PINNED = {
    ("pgd-at", "base"): (2.5643622875213623, 116.90119574550931, 1049.5246046047957),
    ("float", "float"): (2.477907180786133, 229.75559949387554, 1162.6591409883913),
    ("oat", "oat"): (2.2945868968963623, 226.68592360134704, 3510.8375741751206),
}


@pytest.mark.parametrize("algorithm, variant", list(PINNED))
def test_one_step_of_each_algorithm_is_unchanged_by_the_protocol(one_thread, algorithm: str, variant: str) -> None:
    torch.manual_seed(0)
    model = create_model("small_cnn", variant).train()
    x, y = _batch()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    options = {"lambda_": 0.5} if algorithm == "pgd-at" else {}
    torch.manual_seed(1)
    loss = create_algorithm(algorithm, ATTACK, **options).train_step(StepContext.local(model, optimizer), x, y)
    with torch.no_grad():
        total = sum(float(p.double().sum()) for p in model.parameters())
        magnitude = sum(float(p.double().abs().sum()) for p in model.parameters())
    want = PINNED[(algorithm, variant)]
    assert float(loss) == pytest.approx(want[0], rel=1e-6)
    # rel 1e-7: float32 convolution kernels differ in their last bits between CPUs (an AMD EPYC gives 1.4e-8
    # relative on the sum); any change to the step itself moves these sums by far more
    assert total == pytest.approx(want[1], rel=1e-7)
    assert magnitude == pytest.approx(want[2], rel=1e-7)


def test_slim_step_accumulates_both_widths_like_two_hand_made_passes(one_thread) -> None:
    torch.manual_seed(0)
    model = create_model("small_cnn", "float-slim", widths=(0.5, 1.0)).train()
    reference = create_model("small_cnn", "float-slim", widths=(0.5, 1.0)).train()
    reference.load_state_dict(model.state_dict())
    x, y = _batch()
    algorithm = create_algorithm("pgd-at", ATTACK, lambda_=0.0)  # clean CE: no attack randomness
    bn = next(m for m in model.modules() if type(m).__name__ == "CondBatchNorm2d")
    stats_before = [norm.running_mean.clone() for norm in bn.bns]

    grads: dict[str, torch.Tensor] = {}

    class Capture:  # an after-step hook sees the accumulated gradients before they are cleared
        def after_step(self, ctx: StepContext) -> None:
            grads.update({n: p.grad.clone() for n, p in ctx.model.named_parameters() if p.grad is not None})

    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    ctx = StepContext.local(model, optimizer, hooks=(Capture(),))
    loss = algorithm.train_step(ctx, x, y)

    total = 0.0
    for width in (0.5, 1.0):  # by hand: one forward and backward per width, gradients summed
        with knobs(reference, width=width):
            part = F.cross_entropy(reference(x), y)
            part.backward()
            total += float(part.detach())
    assert float(loss) == pytest.approx(total, rel=1e-6)
    by_hand = {n: p.grad for n, p in reference.named_parameters() if p.grad is not None}
    assert grads.keys() == by_hand.keys()
    for name in by_hand:
        torch.testing.assert_close(grads[name], by_hand[name], rtol=1e-5, atol=1e-7)
    # the narrow width's gradient reaches only its slice: the wide-only rows come from width 1.0 alone
    conv = next(n for n in by_hand if n.endswith("weight") and by_hand[n].dim() == 4 and "features.4" in n)
    assert grads[conv][:16].abs().sum() > 0 and grads[conv][16:].abs().sum() > 0
    # the switchable BNs of both widths moved (one per width: bns[0] for 0.5, bns[2] for 1.0; BN_C of each)
    moved = [not torch.equal(before, norm.running_mean) for before, norm in zip(stats_before, bn.bns)]
    assert moved == [True, False, True, False]  # BN_A of each width is untouched by a clean-only step
    assert ctx.ledger.fwd == {0.5: 8, 1.0: 8} and ctx.ledger.bwd == {0.5: 8, 1.0: 8}
    assert ctx.ledger.optimizer_steps == 1


def test_pgd_at_with_noise_lambda_trains_with_the_noise_on(one_thread) -> None:
    torch.manual_seed(0)
    model = create_model("small_cnn", "float").train()
    x, y = _batch()
    scales: list[float] = []
    conv = next(m for m in model.modules() if getattr(m, "noise_conditioned", False))
    conv.register_forward_pre_hook(lambda m, inputs: scales.append(m._knobs.noise_scale()))
    algorithm = create_algorithm("pgd-at", ATTACK, lambda_=1.0, noise_lambda=0.7)
    algorithm.train_step(StepContext.local(model), x, y)
    assert scales == [pytest.approx(0.7)] * (ATTACK.steps + 1)  # attack steps and the training forward
    assert model.hwsim_knobs.lambda_n == 0.0  # restored
    plain = create_algorithm("pgd-at", ATTACK, lambda_=1.0)
    scales.clear()
    plain.train_step(StepContext.local(model), x, y)
    assert scales == [0.0] * (ATTACK.steps + 1)
