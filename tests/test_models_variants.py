"""Every registered model x variant: builds, runs, trains, and its variant transformations are exact."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hwsim.errors import HwsimError

from models import VARIANTS, create_model, knobs, list_models, prune_, set_knobs
from models.layers import CondConv2d, FiLM
from models.pruning import prunable_convs

SMALL = ["small_cnn", "wrn40_2"]  # for the exactness checks that need two models side by side
SLIM_PAIRS = {"float-slim": "float", "oat-slim": "oat", "floats-slim": "floats-i"}


pytestmark = pytest.mark.usefixtures("one_thread")


def _x(batch: int = 2, size: int = 8, channels: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.rand(batch, channels, size, size, generator=torch.Generator().manual_seed(seed))


def _copy_into(dst: nn.Module, src: nn.Module, bn_offset: int = 0) -> None:
    """Load ``src``'s tensors into ``dst``; BN ``bns.k`` of src maps to ``bns.{k + bn_offset}`` of dst and a
    plain src BN maps to dst's BN_C. Everything of src must land in dst."""
    dst_state = dst.state_dict()
    for key, value in src.state_dict().items():
        target = key
        if ".bns." in key:
            head, tail = key.split(".bns.")
            k, rest = tail.split(".", 1)
            target = f"{head}.bns.{int(k) + bn_offset}.{rest}"
        elif target not in dst_state:
            head, leaf = key.rsplit(".", 1)
            target = f"{head}.bns.{bn_offset}.{leaf}"
        assert target in dst_state, key
        dst_state[target] = value.clone()
    dst.load_state_dict(dst_state)


def _randomise_bn_stats(model: nn.Module) -> None:
    gen = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=gen) + 0.5)


# Nets above ~5M parameters take seconds per build on a shared 2-core CPU, so the model x variant matrix runs
# them on the meta device (build, forward, backward graph and shapes, no values); FAST nets run for real, and
# test_big_models_train_for_real (marked slow) runs each big net once with real values.
FAST = {"small_cnn", "wrn40_2", "vit_tiny"}


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("name", list_models())
def test_every_model_variant_trains(name: str, variant: str) -> None:
    torch.manual_seed(0)
    device = torch.device("cpu" if name in FAST else "meta")
    with device:
        # (built for the 8 x 8 input it runs on: a ViT's positional embedding fixes its input size; floats-c at
        # 0.8: at 0.5 the global channel ranking prunes vit_tiny's out_proj and fc2 layers whole, and no
        # gradient reaches the alphas before them)
        density = (0.8 if variant == "floats-c" else 0.5) if variant.startswith("floats") and name in FAST else 1.0
        model = create_model(name, variant, film_dim=1 if name.startswith("wrn") else 128, density=density,
                             dataset="custom", input_size=(3, 8, 8))
        assert model.hwsim_info["variant"] == variant and model.hwsim_knobs.lambda_n == 0.0
        set_knobs(model, lambda_n=1.0)
        x = _x(size=8).to(device)
        out = model(x)
        assert out.shape == (2, 10) and out.device.type == device.type
        out.square().sum().backward()
    assert isinstance(model.linear, nn.Linear)  # the classifier stays a plain Linear
    noise_convs = [m for m in model.modules() if getattr(m, "noise_conditioned", False)]
    if "float" in variant:
        # every conv and linear layer but the classifier is noise-conditioned and every alpha is in the graph
        assert len(noise_convs) == sum(isinstance(m, (nn.Conv2d, CondConv2d, nn.Linear)) and m is not model.linear
                                       for m in model.modules())
        assert all(m.alpha.grad is not None for m in noise_convs)
    else:
        assert not noise_convs and not any("alpha" in n for n, _ in model.named_parameters())
    films = [m for m in model.modules() if isinstance(m, FiLM)]
    assert bool(films) == variant.startswith("oat")
    if device.type == "cpu":
        assert torch.isfinite(out).all()
        if "float" in variant:
            assert all(m.alpha.grad.abs().item() > 0 for m in noise_convs)
            with torch.no_grad():
                for conv in (noise_convs[0], noise_convs[-1]):
                    n_in = conv.in_channels if isinstance(conv, CondConv2d) else conv.in_features
                    w1, w2 = conv.effective_weight(n_in), conv.effective_weight(n_in)
                    assert not torch.equal(w1, w2), "noise must be redrawn at every forward"
                    with knobs(model, lambda_n=0.0):
                        plain = conv.weight * getattr(conv, "weight_mask", 1.0)
                        assert torch.equal(conv.effective_weight(n_in), plain)
    if variant.endswith("slim"):
        set_knobs(model, width=0.5)
        with torch.no_grad(), device:
            assert model(x).shape == (2, 10)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(set(list_models()) - FAST))
def test_big_models_train_for_real(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name, "floats-slim", film_dim=1, density=0.5)
    set_knobs(model, lambda_n=1.0)
    out = model(_x(size=4))  # every net pools globally; 4x4 keeps the wide ones cheap
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    out.square().sum().backward()
    alphas = [m.alpha.grad for m in model.modules() if getattr(m, "noise_conditioned", False)]
    assert all(g is not None and g.abs().item() > 0 for g in alphas)


def test_noise_redrawn_per_forward_and_off_at_zero() -> None:
    model = create_model("small_cnn", "float").eval()
    x = _x(seed=3)
    with torch.no_grad():
        assert torch.equal(model(x), model(x))
        set_knobs(model, lambda_n=1.0)
        assert not torch.equal(model(x), model(x))


@pytest.mark.parametrize("name", ["small_cnn", "resnet18", "preact_resnet18", "wrn40_2"])
def test_float_at_lambda_zero_is_base_bit_for_bit(name: str) -> None:
    base = create_model(name)
    _randomise_bn_stats(base)
    flt = create_model(name, "float")
    _copy_into(flt, base)
    base.eval(), flt.eval()
    x = _x(size=8)
    with torch.no_grad():
        assert torch.equal(flt(x), base(x))
        with knobs(flt, lambda_n=0.4, lambda_th=0.5):  # Eq. 6 scale 0.8 > 0 -> noise, BN_C
            assert not torch.equal(flt(x), base(x))


@pytest.mark.parametrize("slim_variant", sorted(SLIM_PAIRS))
@pytest.mark.parametrize("name", SMALL)
@pytest.mark.parametrize("lam", [0.0, 1.0])
def test_slim_at_full_width_equals_unslimmed(name: str, slim_variant: str, lam: float) -> None:
    plain = create_model(name, SLIM_PAIRS[slim_variant], density=0.5 if "floats" in slim_variant else 1.0)
    _randomise_bn_stats(plain)
    slim = create_model(name, slim_variant, density=0.5 if "floats" in slim_variant else 1.0)
    _copy_into(slim, plain, bn_offset=2)  # widths (0.5, 1.0) x (BN_C, BN_A): width 1.0 owns bns.2, bns.3
    plain.eval(), slim.eval()
    set_knobs(plain, lambda_n=lam), set_knobs(slim, lambda_n=lam)
    x = _x()
    with torch.no_grad():
        torch.manual_seed(5)
        expected = plain(x)
        torch.manual_seed(5)
        assert torch.equal(slim(x), expected)
        set_knobs(slim, width=0.5)
        torch.manual_seed(5)
        assert not torch.allclose(slim(x), expected)


def _conv_out_channels(model: nn.Module, x: torch.Tensor) -> list[int]:
    seen: list[int] = []
    hooks = [m.register_forward_hook(lambda _m, _i, o: seen.append(o.shape[1]))
             for m in model.modules() if isinstance(m, CondConv2d)]
    model(x)
    for h in hooks:
        h.remove()
    return seen


def test_width_switching_changes_active_shapes_and_output() -> None:
    model = create_model("small_cnn", "oat-slim", widths=(0.25, 0.5, 1.0)).eval()
    x = _x()
    with torch.no_grad():
        full = model(x)
        assert _conv_out_channels(model, x) == [16, 32, 64]
        set_knobs(model, width=0.5)
        assert _conv_out_channels(model, x) == [8, 16, 32]
        assert [f.active_channels() for f in model.modules() if isinstance(f, FiLM)] == [8, 16, 32]
        assert not torch.allclose(model(x), full)
        with knobs(model, width=0.25):
            assert _conv_out_channels(model, x) == [4, 8, 16]
        assert model.hwsim_knobs.width == 0.5


@pytest.mark.parametrize("density", [0.1, 0.3, 0.77])
def test_irregular_masks_hit_density_within_one_weight(density: float) -> None:
    model = create_model("resnet18", "floats-i", density=density)
    convs = prunable_convs(model)
    total = sum(m.weight.numel() for m in convs)
    assert abs(sum(m.weight_mask.sum().item() for m in convs) - density * total) <= 1
    assert model.conv1 not in convs and not hasattr(model.linear, "weight_mask")  # stem, classifier dense
    kept = torch.cat([m.weight[m.weight_mask.bool()].abs() for m in convs])
    dropped = torch.cat([m.weight[~m.weight_mask.bool()].abs() for m in convs])
    assert kept.min() >= dropped.max()  # global magnitude ranking


@pytest.mark.parametrize("density", [0.1, 0.3, 0.77])
def test_channel_masks_keep_whole_channels_within_one_channel(density: float) -> None:
    model = create_model("resnet18", "floats-c", density=density)
    convs = prunable_convs(model)
    total = sum(m.weight.numel() for m in convs)
    nonzero = sum(m.weight_mask.sum().item() for m in convs)
    largest_channel = max(m.weight[:, 0].numel() for m in convs)
    assert 0 <= density * total - nonzero < largest_channel
    for m in convs:  # each input channel is all kept or all dropped
        per_channel = m.weight_mask.sum(dim=(0, 2, 3))
        assert torch.all((per_channel == 0) | (per_channel == m.weight[:, 0].numel()))


def test_masked_weights_stay_zero_under_noise_and_prune_recomputes() -> None:
    model = create_model("small_cnn", "floats-i", density=0.3)
    set_knobs(model, lambda_n=1.0)
    conv = prunable_convs(model)[0]
    w = conv.effective_weight(conv.in_channels)
    assert torch.all(w[conv.weight_mask == 0] == 0) and torch.any(w != conv.weight * conv.weight_mask)
    prune_(model, 0.6, "channel")
    convs = prunable_convs(model)
    total = sum(m.weight.numel() for m in convs)
    assert sum(m.weight_mask.sum().item() for m in convs) > 0.5 * total


def test_dual_bn_routes_each_sample_by_its_lambda() -> None:
    torch.manual_seed(0)
    model = create_model("small_cnn", "oat", film_dim=128)
    x = _x(batch=4, size=8)
    lam = torch.tensor([0.0, 1.0, 0.0, 0.4])
    model.train()
    set_knobs(model, lambda_n=lam)
    model(x)  # one mixed training batch: each BN's stats see only the samples routed to it
    model.eval()
    with torch.no_grad():
        mixed = model(x)
        set_knobs(model, lambda_n=torch.tensor([0.0, 0.0]))
        clean = model(x[[0, 2]])
        set_knobs(model, lambda_n=torch.tensor([1.0, 0.4]))
        adv = model(x[[1, 3]])
    assert torch.allclose(mixed[[0, 2]], clean, atol=1e-6) and torch.allclose(mixed[[1, 3]], adv, atol=1e-6)
    # BN_C's running mean moved only with the two clean samples
    torch.manual_seed(0)
    ref = create_model("small_cnn", "oat", film_dim=128).train()
    set_knobs(ref, lambda_n=torch.tensor([0.0, 0.0]))
    ref(x[[0, 2]])
    assert torch.allclose(model.features[1].bns[0].running_mean, ref.features[1].bns[0].running_mean)


def test_irregular_pruning_keeps_exactly_round_d_p_filling_ties_in_module_then_index_order() -> None:
    model = create_model("small_cnn", "floats-i")
    convs = prunable_convs(model)
    with torch.no_grad():  # magnitudes 2 (every third weight) and 1: the threshold is a tie of thousands
        for m in convs:
            m.weight.copy_(torch.where(torch.arange(m.weight.numel()).view_as(m.weight) % 3 == 0, 2.0, -1.0))
    total = sum(m.weight.numel() for m in convs)
    twos = sum(int((m.weight.abs() == 2).sum()) for m in convs)
    keep = twos + 7
    prune_(model, keep / total, "irregular")
    masks = torch.cat([m.weight_mask.flatten() for m in convs])
    assert int(masks.sum()) == keep
    magnitudes = torch.cat([m.weight.abs().flatten() for m in convs])
    assert torch.all(masks[magnitudes == 2] == 1)
    ties_kept = (masks == 1) & (magnitudes == 1)
    assert ties_kept.nonzero().squeeze(1).tolist() == (magnitudes == 1).nonzero().squeeze(1)[:7].tolist()


def test_a_model_built_without_weight_init_draws_nothing_and_traces_the_same(monkeypatch) -> None:
    from hwsim.trace import trace_model
    from models.create import _RANDOM_INITS, skip_weight_init

    draws = []
    original = torch.nn.init.kaiming_uniform_
    monkeypatch.setattr(torch.nn.init, "kaiming_uniform_", lambda t, *a, **k: draws.append(t) or original(t, *a, **k))
    for variant in ("base", "float", "oat-slim"):
        draws.clear()
        lazy = create_model("small_cnn", variant, init_weights=False)
        assert draws == []  # not one conv or linear weight was drawn
        fresh = create_model("small_cnn", variant)
        assert len(draws) > 3
        assert trace_model(lazy, (3, 32, 32)) == trace_model(fresh, (3, 32, 32))
    before = {name: getattr(torch.nn.init, name) for name in _RANDOM_INITS}
    with pytest.raises(RuntimeError), skip_weight_init():  # the initialisers come back, even after an error
        raise RuntimeError
    assert {name: getattr(torch.nn.init, name) for name in _RANDOM_INITS} == before
    draws.clear()
    torch.nn.Linear(4, 4)
    assert len(draws) == 1
    with pytest.raises(HwsimError, match="ranks its initial weights"):
        create_model("small_cnn", "floats-i", density=0.5, init_weights=False)
    create_model("small_cnn", "floats-i", density=1.0, init_weights=False)  # masks all ones: nothing to rank
