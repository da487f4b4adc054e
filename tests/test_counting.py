"""Golden numbers of SPEC 5 and the traced records, checked against the models' own shapes and fvcore."""

import json

import pytest
import torch
from click.testing import CliRunner

from hwsim.cli import cli
from hwsim.cost import ModelSetting, analyze, model_cost
from hwsim.count import fvcore_macs
from hwsim.trace import trace_model
from models import VARIANTS, create_model, list_models, set_knobs
from models.golden import GOLDEN_PARAMS, RESNET34_MACS

@pytest.mark.parametrize(("model", "variant", "options", "params"), GOLDEN_PARAMS)
def test_golden_params_through_the_api(model, variant, options, params):
    cost = model_cost(model, variant, **options)
    assert cost.params == params
    if model == "resnet34":
        assert cost.macs == RESNET34_MACS


def test_golden_numbers_through_the_cli():
    out = CliRunner().invoke(cli, ["count", "resnet34", "--format", "json"])
    assert out.exit_code == 0, out.output
    doc = json.loads(out.output)
    assert doc["totals"]["params"] == 21_282_122 and doc["totals"]["macs"] == RESNET34_MACS
    out = CliRunner().invoke(cli, ["count", "resnet34", "--variant", "oat", "--film-dim", "128", "--bn", "dual",
                                   "--format", "json"])
    assert json.loads(out.output)["totals"]["params"] == 33_355_466
    out = CliRunner().invoke(cli, ["count", "wrn16_8", "--variant", "oat", "--dataset", "svhn", "--format", "csv"])
    assert out.exit_code == 0 and "params" in out.output.splitlines()[0]


def test_resnet34_oat_film_ownership_and_group_counts():
    a = analyze(ModelSetting("resnet34", "oat"))
    films = a.trace.films
    assert len(films) == 33
    owners = {f.owner for f in films}
    assert len(owners) == 33 and not any("shortcut" in o for o in owners)
    assert a.trace.layer("conv1").film_name == "film1"
    assert a.trace.layer("layer2.0.conv2").film_name == "layer2.0.film2"
    assert a.trace.layer("layer2.0.shortcut.0").conditioning == "none"
    groups = a.counts.params.groups
    assert groups["film"] == 10_121_856 and groups["bn"] == 17_024 and groups["alpha"] == 0
    assert a.counts.memory_bytes == 21_265_098 + 10_121_856  # 8-bit weights, BN excluded


def test_preact_film_after_bn1_belongs_to_the_conv_that_last_wrote_the_residual_stream():
    trace = analyze(ModelSetting("wrn16_8", "oat")).trace
    owner = {f.name: f.owner for f in trace.films}
    first_block = [name for name in owner if name.endswith("film1")][0]
    assert owner[first_block] == "conv1"  # first block: the stem conv
    by_block = sorted(n for n in owner if n.endswith("film1"))
    second = by_block[1]  # second block of stage 1: the previous block's conv2, never a shortcut
    prefix = second.rsplit(".", 2)[0]
    assert owner[second].endswith("conv2") and owner[second].startswith(prefix)
    assert all("shortcut" not in o for o in owner.values())
    for name, o in owner.items():
        if name.endswith("film2"):
            assert o == name.replace("film2", "conv1")


def test_float_and_alpha_counts():
    a = analyze(ModelSetting("resnet34", "float"))
    assert a.counts.params.groups["alpha"] == 36  # one learnable alpha per conv
    assert a.counts.params.total == 21_282_122 + 36
    assert all(r.conditioning == "noise" for r in a.trace.layers if r.kind == "conv")
    assert a.trace.layer("linear").conditioning == "none"  # the classifier stays plain
    assert a.counts.ops["noise_add"] == 21_282_122 - 17_024 - 5130  # every conv weight, once per forward


@pytest.mark.parametrize("model", ["resnet34", "wrn40_2"])
def test_fvcore_cross_check_on_plain_models(model):
    net = create_model(model)
    ours = {r.name: r.macs for r in trace_model(net, (3, 32, 32)).layers}
    theirs = fvcore_macs(net, (3, 32, 32))
    assert ours == theirs


def test_slim_width_counts_the_active_network():
    full = analyze(ModelSetting("resnet34", "float-slim", width=1.0))
    half = analyze(ModelSetting("resnet34", "float-slim", width=0.5))
    plain = analyze(ModelSetting("resnet34", "float"))
    assert full.counts.macs == plain.counts.macs and full.delay.delay_ns == plain.delay.delay_ns
    # conv weights shrink by 4 except the stem (input never slimmed: 2x) and the classifier (input only: 2x)
    stem, fc = half.trace.layer("conv1"), half.trace.layer("linear")
    assert (stem.c_in, stem.c_out, fc.c_in, fc.c_out) == (3, 32, 256, 10)
    assert half.counts.params.active < full.counts.params.active / 3
    assert half.counts.params.total == full.counts.params.total  # stored tensors are the same


@pytest.mark.parametrize("variant", ["floats-i", "floats-c"])
def test_pruned_counts(variant):
    a = analyze(ModelSetting("resnet34", variant, density=0.3))
    convs = [r for r in a.trace.layers if r.masked]
    prunable = sum(r.weights for r in convs)
    kept = sum(r.weight_nonzero for r in convs)
    slack = 1 if variant == "floats-i" else max(r.k * r.k * r.c_out for r in convs)
    assert abs(kept - 0.3 * prunable) <= slack
    if variant == "floats-c":  # whole input channels go: the delay model sees narrower convs
        assert any(r.c_in_eff < r.c_in for r in convs)
        assert a.counts.macs < RESNET34_MACS
    else:
        assert a.counts.macs == RESNET34_MACS and a.counts.nonzero_macs < 0.5 * RESNET34_MACS


def test_traced_shapes_agree_with_real_forward_shapes():
    net = create_model("wrn40_2", "oat", film_dim=1).eval()
    seen = {}
    hooks = [m.register_forward_hook(lambda m, i, o, n=n: seen.__setitem__(n, (tuple(i[0].shape), tuple(o.shape))))
             for n, m in net.named_modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    with torch.no_grad():
        net(torch.rand(1, 3, 32, 32))
    for h in hooks:
        h.remove()
    for record in trace_model(net, (3, 32, 32)).layers:
        x_shape, y_shape = seen[record.name]
        assert x_shape[1] == record.c_in and y_shape[1] == record.c_out
        if record.kind == "conv":
            assert y_shape[2:] == (record.h_out, record.w_out)


@pytest.mark.parametrize("model", sorted(set(list_models()) - {"wrn28_10", "wrn34_10"}))
@pytest.mark.parametrize("variant", VARIANTS)
def test_every_model_and_variant_traces(model, variant):
    a = analyze(ModelSetting(model, variant, density=0.5 if variant.startswith("floats") else 1.0))
    assert a.trace.unsupported == {}
    assert a.counts.macs > 0
    if variant == "base":
        assert a.delay.delay_ns == a.base_delay.delay_ns
    elif not variant.startswith("floats"):  # conditioning only adds work; pruning may remove more than it adds
        assert a.delay.delay_ns > a.base_delay.delay_ns
    formulas = {r.formula for r in a.trace.layers if r.kind == "conv"}
    expected = {"base": {"eq7"}, "oat": {"eq9", "eq7"}, "oat-slim": {"eq9", "eq7"}}.get(variant, {"eq8"})
    assert formulas <= expected and formulas & expected


def test_user_model_from_a_file(tmp_path):
    path = tmp_path / "net.py"
    path.write_text(
        "import torch.nn as nn\n"
        "def make():\n"
        "    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2, groups=4),"
        " nn.Flatten(), nn.LazyLinear(10) if False else nn.Linear(8 * 15 * 15, 10))\n")
    a = analyze(ModelSetting(f"{path}:make"))
    convs = [r for r in a.trace.layers if r.kind == "conv"]
    assert [(r.c_in, r.c_out, r.groups, r.h_out) for r in convs] == [(3, 8, 1, 32), (8, 8, 4, 15)]
    assert a.counts.macs == 27 * 8 * 1024 + 9 * 2 * 8 * 225 + 1800 * 10
    assert a.counts.params.total == (27 * 8 + 8) + (9 * 2 * 8 + 8) + (1800 * 10 + 10)


def test_dense_weights_with_an_accidental_zero_stay_dense():
    net = create_model("small_cnn")
    with torch.no_grad():
        net.features[4].weight[0, 0, 0, 0] = 0.0  # a zero that no mask put there
    record = trace_model(net, (3, 32, 32)).layer("features.4")
    assert record.weight_nonzero == record.weights and record.shape().nnz is None


def test_torch_prune_masks_are_read(tmp_path):
    from torch.nn.utils import prune

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.Flatten(), torch.nn.Linear(8 * 30 * 30, 10))
    prune.ln_structured(net[0], "weight", amount=0.5, n=2, dim=0)  # remove 4 of 8 output channels
    prune.l1_unstructured(net[2], "weight", amount=0.25)
    counts_trace = trace_model(net, (3, 32, 32))
    conv, fc = counts_trace.layers
    assert (conv.c_out, conv.c_out_eff, conv.weight_nonzero) == (8, 4, 4 * 27)
    assert fc.weight_nonzero == 7200 * 10 - 18000 and fc.shape().nnz == 54000
    from hwsim.count import param_counts

    params = param_counts(net, counts_trace)
    assert params.total == 8 * 27 + 8 + 72000 + 10  # weight_orig counted once, as the backbone
    assert params.nonzero == 4 * 27 + 8 + 54000 + 10


def test_meta_trace_matches_the_default_trace():
    net = create_model("resnet18", "oat", film_dim=1, bn="single")
    cpu, meta = trace_model(net, (3, 32, 32)), trace_model(net, (3, 32, 32), device="meta")
    assert cpu.layers == meta.layers and cpu.films == meta.films and cpu.ops == meta.ops


@pytest.mark.parametrize("model", list_models())
def test_traced_shapes_agree_with_the_modules_for_every_model(model):
    for variant, knob in (("base", None), ("oat", None), ("float-slim", 0.5)):
        net = create_model(model, variant, film_dim=1, dataset="custom", input_size=(3, 16, 16))
        if knob is not None:
            set_knobs(net, width=knob)
        seen = {}
        convs = [(n, m) for n, m in net.named_modules() if hasattr(m, "weight") and getattr(m, "weight").dim() == 4]
        hooks = [m.register_forward_hook(lambda m, i, o, n=n: seen.__setitem__(n, (i[0].shape, o.shape)))
                 for n, m in convs]
        net.eval()
        with torch.no_grad():
            net(torch.rand(1, 3, 16, 16))
        for h in hooks:
            h.remove()
        records = {r.name: r for r in trace_model(net, (3, 16, 16)).layers if r.kind == "conv"}
        assert sorted(records) == sorted(seen)
        for name, (x_shape, y_shape) in seen.items():
            r = records[name]
            assert (r.c_in, r.c_out, r.h_out, r.w_out) == (x_shape[1], y_shape[1], y_shape[2], y_shape[3])


def test_pruned_runs_are_costed_with_their_trained_masks(tmp_path):
    from hwsim.cost import build_model

    setting = ModelSetting("small_cnn", "floats-c", density=0.5)
    net = build_model(setting)
    with torch.no_grad():  # a mask no fresh build would draw: keep input channels 0..3 of every pruned conv
        for module in net.modules():
            if hasattr(module, "weight_mask"):
                module.weight_mask.zero_()
                module.weight_mask[:, :4] = 1.0
    path = tmp_path / "last.pt"
    torch.save({"model": net.state_dict()}, path)
    trained = model_cost("small_cnn", "floats-c", density=0.5, masks=str(path))
    fresh = model_cost("small_cnn", "floats-c", density=0.5)
    # conv2 (16->32, 16x16 out) and conv3 (32->64, 8x8 out) now read 4 input channels each
    stem, fc = 27 * 16 * 32 * 32, 64 * 16 * 10
    assert trained.macs == stem + 9 * 4 * 32 * 16 * 16 + 9 * 4 * 64 * 8 * 8 + fc
    assert trained.macs != fresh.macs
    wrong = tmp_path / "other.pt"
    torch.save({"model": create_model("small_cnn", "float").state_dict()}, wrong)
    with pytest.raises(Exception, match="2 of the model.s 2 masks are missing"):
        model_cost("small_cnn", "floats-c", density=0.5, masks=str(wrong))


def test_conditioning_ops_are_listed_per_layer():
    from hwsim.delay import film_weights

    oat = analyze(ModelSetting("resnet34", "oat")).trace
    stem = oat.layer("conv1")
    # FiLM(1, 64) MLP on one lambda: Linear(1, 128) + Linear(128, 128) = 2 d C + 4 C^2 MACs, Eq. 9's F
    assert stem.film_mlp_macs == 128 + 128 * 128 == film_weights(1, 64)
    # x * act(mu) + act(sigma) on 64 x 32 x 32, two activations of 64, and the hidden LeakyReLU of 128
    assert stem.film_affine_ops == 2 * 64 * 32 * 32 + 2 * 64 + 128
    assert sum(r.film_mlp_macs for r in oat.layers) == oat.ops["film_mlp_macs"]
    assert sum(r.film_affine_ops for r in oat.layers) == oat.ops["film_affine"]
    assert oat.layer("layer2.0.shortcut.0").film_mlp_macs == 0
    flt = analyze(ModelSetting("resnet34", "float")).trace
    assert all(r.noise_adds == r.weights for r in flt.layers if r.kind == "conv")
    assert flt.layer("linear").noise_adds == 0


def test_unknown_ops_are_listed_not_counted_as_zero():
    class Odd(torch.nn.Module):  # ops no table knows: a running sum and a log-cumsum-exp
        def forward(self, x):
            return torch.logcumsumexp(torch.cumsum(x, 1), 2)

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.GroupNorm(2, 8), torch.nn.Softplus(), Odd())
    trace = trace_model(net, (3, 16, 16))
    assert set(trace.unsupported) == {"aten.cumsum.default", "aten.logcumsumexp.default"}
    assert trace.ops["norm"] == 8 * 14 * 14 and trace.ops["activation"] == 8 * 14 * 14  # GroupNorm, Softplus
    out = CliRunner().invoke(cli, ["count", "torch.nn:Identity"])  # a package.module:factory spec
    assert out.exit_code == 0 and "params" in out.output
    lazy = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.Flatten(), torch.nn.LazyLinear(10))
    trace = trace_model(lazy, (3, 16, 16))  # its first forward draws the linear weights: no compute, no op
    assert trace.unsupported == {} and trace.layers[1].params == 8 * 14 * 14 * 10 + 10


def test_a_film_at_a_slim_width_counts_its_active_channels_in_params_and_delay_alike():
    half = analyze(ModelSetting("small_cnn", "oat-slim", width=0.5))
    channels = [f.channels for f in half.trace.films]
    assert channels == [8, 16, 32]  # 16, 32, 64 at full width
    # FiLM(d = 1, C_a): 2 d C_a + 4 C_a^2 weights plus 2 C_a + 2 C_a biases
    assert half.counts.params.active_groups["film"] == sum(2 * c + 4 * c * c + 4 * c for c in channels)
    assert half.counts.params.groups["film"] == sum(2 * c + 4 * c * c + 4 * c for c in (16, 32, 64))
    assert sum(d.layer.film_weights for d in half.delay.layers) == sum(2 * c + 4 * c * c for c in channels)


def test_modern_activations_and_norms_are_counted_not_unsupported():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.Hardswish(), torch.nn.Hardsigmoid(),
                              torch.nn.SiLU(), torch.nn.GELU(), torch.nn.Flatten(), torch.nn.Unflatten(1, (8, 196)),
                              torch.nn.LayerNorm(196), torch.nn.Softmax(-1))
    trace = trace_model(net, (3, 16, 16))
    n = 8 * 14 * 14
    assert trace.unsupported == {}
    assert (trace.ops["activation"], trace.ops["norm"], trace.ops["softmax"]) == (4 * n, n, n)


def test_compare_builds_a_pruned_network_once_for_both_granularities(monkeypatch):
    import dataclasses

    import hwsim.cost
    from hwsim.cost import compare

    builds = []
    real = hwsim.cost.build_model
    monkeypatch.setattr(hwsim.cost, "build_model", lambda s, *a, **k: builds.append(s.variant) or real(s, *a, **k))
    setting = ModelSetting("wrn40_2", density=0.3)
    chosen = ("floats-i", "float", "floats-c", "floats-slim")
    results = {s.variant: a for s, a in compare(setting, chosen)}
    assert builds == ["floats-i", "float", "floats-slim"]  # floats-c re-prunes the floats-i build
    for variant in ("floats-i", "floats-c"):
        alone = analyze(dataclasses.replace(setting, variant=variant))
        assert results[variant].trace == alone.trace
        assert results[variant].counts == alone.counts and results[variant].delay == alone.delay
    assert results["floats-c"].counts.macs < results["floats-i"].counts.macs  # channels, not weights, dropped


def test_a_weight_computed_in_the_forward_is_not_kept_alive_by_the_trace():
    import weakref

    class Computed(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.randn(8, 3, 3, 3))
            self.alive = None

        def forward(self, x):
            w = self.weight * 2  # as a masked or noisy conv computes its weight
            ref = weakref.ref(w)
            y = torch.nn.functional.conv2d(x, w)
            del w
            self.alive = ref() is not None
            return y

    net = Computed()
    trace = trace_model(net, (3, 8, 8))
    assert net.alive is False
    assert (trace.layers[0].params, trace.layers[0].c_out, trace.layers[0].h_out) == (216, 8, 6)
