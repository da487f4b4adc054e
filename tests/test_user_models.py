"""Every variant on a user's own PyTorch model (SPEC 4.1), by module surgery on the instance its factory returns.

The models are written here, from their papers, as a user would write them (never imported from ``models/``):
a CIFAR ResNet34 must cost exactly what the zoo's ``resnet34`` costs in every variant, layer by layer; a
MobileNetV2 from its paper's table must give the published parameter and MAC counts; a DenseNet-style
concatenation and grouped / depthwise convs must slim to the channel counts derived by hand.
"""

import json
import textwrap

import pytest
from click.testing import CliRunner

from hwsim.cli import cli, main
from hwsim.cost import ModelSetting, analyze
from hwsim.delay import film_weights
from hwsim.errors import HwsimError
from hwsim.trace import trace_model
from hwsim.variants import get_variant
from models import VARIANTS, create_model, set_knobs

RESNET34 = '''
import torch
import torch.nn.functional as F
from torch import nn


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet34(nn.Module):
    def __init__(self, classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        stages, cin = [], 64
        for n, cout, stride in zip((3, 4, 6, 3), (64, 128, 256, 512), (1, 2, 2, 2)):
            blocks = []
            for i in range(n):
                blocks.append(Block(cin, cout, stride if i == 0 else 1))
                cin = cout
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.linear = nn.Linear(512, classes)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return self.linear(torch.flatten(F.adaptive_avg_pool2d(out, 1), 1))


def make():
    return ResNet34()
'''

# MobileNetV2 (Sandler et al. 2018, Table 2): expansion t, channels c, repeats n, stride s of each stage.
MOBILENET_TABLE = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                   (6, 320, 1, 1))

MOBILENET = f'''
import torch
from torch import nn

TABLE = {MOBILENET_TABLE!r}


def conv_bn(cin, cout, k, stride=1, groups=1, act=True):
    layers = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    return nn.Sequential(*layers, nn.ReLU6()) if act else nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    def __init__(self, cin, cout, stride, t):
        super().__init__()
        hidden = cin * t
        layers = [conv_bn(cin, hidden, 1)] if t != 1 else []
        layers += [conv_bn(hidden, hidden, 3, stride, groups=hidden), conv_bn(hidden, cout, 1, act=False)]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        return x + self.body(x) if self.residual else self.body(x)


class MobileNetV2(nn.Module):
    def __init__(self, classes=1000):
        super().__init__()
        layers, cin = [conv_bn(3, 32, 3, 2)], 32
        for t, c, n, s in TABLE:
            for i in range(n):
                layers.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        layers.append(conv_bn(cin, 1280, 1))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, classes))

    def forward(self, x):
        x = self.features(x)
        return self.classifier(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def make():
    return MobileNetV2()
'''


@pytest.fixture(scope="module")
def user_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("user_models")
    (root / "resnet.py").write_text(RESNET34)
    (root / "mobilenet.py").write_text(MOBILENET)
    return {"resnet34": f"{root / 'resnet.py'}:make", "mobilenet_v2": f"{root / 'mobilenet.py'}:make"}


def _layer_rows(analysis, *, masks: bool = True):
    """Per layer: everything the counters and the delay model read (FiLM names aside: the user model's FiLM
    sits in ``nn.Sequential(bn, film)`` under the BN's name, the zoo's in its own attribute)."""
    rows = []
    for record, delay in zip(analysis.trace.layers, analysis.delay.layers, strict=True):
        row = (record.name, record.kind, record.k, record.stride, record.groups, record.c_in, record.c_out,
               record.h_out, record.w_out, record.params, record.formula, record.film_dim, record.film_channels,
               record.noise_adds, record.film_mlp_macs, record.film_affine_ops, record.masked, delay.delay_ns)
        rows.append(row + ((record.nonzero_params, record.c_in_eff) if masks else ()))
    return rows


RESNET_SETTINGS = [(v, {}) for v in VARIANTS if v not in ("floats-i", "floats-c", "floats-slim")] + [
    ("float-slim", {"width": 0.5}), ("oat-slim", {"width": 0.5}), ("floats-slim", {"width": 0.5}),
    ("floats-i", {}), ("floats-c", {}), ("floats-i", {"density": 0.5}),
    ("oat", {"film_dim": 128, "bn": "dual"}), ("float", {"bn": "dual"}),
]


@pytest.mark.parametrize(("variant", "options"), RESNET_SETTINGS)
def test_user_resnet34_costs_what_the_zoo_resnet34_costs(user_models, one_thread, variant, options):
    user = analyze(ModelSetting(user_models["resnet34"], variant, **options))
    zoo = analyze(ModelSetting("resnet34", variant, **options))
    # irregular masks rank each build's own random weights: per-layer nonzeros differ, their total does not
    dense = options.get("density", 1.0) == 1.0
    assert _layer_rows(user, masks=dense) == _layer_rows(zoo, masks=dense)
    for field in ("total", "active", "nonzero", "groups", "active_groups"):
        assert getattr(user.counts.params, field) == getattr(zoo.counts.params, field)
    assert (user.counts.macs, user.counts.memory_bytes, user.delay.delay_ns) == (
        zoo.counts.macs, zoo.counts.memory_bytes, zoo.delay.delay_ns)
    assert len(user.trace.films) == len(zoo.trace.films) == (33 if get_variant(variant).film else 0)


def test_user_resnet34_golden_numbers(user_models):
    assert analyze(ModelSetting(user_models["resnet34"], "oat")).counts.params.total == 31_403_978
    dual = analyze(ModelSetting(user_models["resnet34"], "oat", film_dim=128, bn="dual"))
    assert dual.counts.params.total == 33_355_466
    slim = analyze(ModelSetting(user_models["resnet34"], "float-slim", width=0.5))
    assert slim.trace.layer("layer1.0.conv1").c_in == 32 and slim.trace.layer("linear").c_out == 10


def test_oat_puts_no_film_on_projection_shortcut_bns(user_models):
    model = create_model(user_models["resnet34"], "oat", film_dim=1)
    films = {n for n, m in model.named_modules() if type(m).__name__ == "FiLM"}
    assert len(films) == 33
    assert not any("shortcut" in n for n in films) and "layer2.0.bn2.1" in films
    # the FiLM modules are the zoo's own class, marked for the tracer
    assert all(getattr(model.get_submodule(n), "film_conditioning", False) for n in films)


# --- MobileNetV2 from its paper's table ------------------------------------------------------------------

def _mobilenet(width: float = 1.0):
    """Conv shapes (k, c_in, c_out, groups, h_out) of MobileNetV2 at 224 from the table, at ``width``."""
    a = lambda c: max(1, int(round(width * c)))  # noqa: E731
    convs, size, cin = [(3, 3, a(32), 1, 112)], 112, 32
    for t, c, n, s in MOBILENET_TABLE:
        for i in range(n):
            hidden = cin * t
            if t != 1:
                convs.append((1, a(cin), a(hidden), 1, size))
            size //= s if i == 0 else 1
            convs.append((3, a(hidden), a(hidden), a(hidden), size))
            convs.append((1, a(hidden), a(c), 1, size))
            cin = c
    convs.append((1, a(cin), a(1280), 1, size))
    return convs


def _conv_macs(convs):
    return sum(k * k * (ci // g) * co * h * h for k, ci, co, g, h in convs)


def _conv_params(convs):
    return sum(k * k * (ci // g) * co for k, ci, co, g, _ in convs)


def test_mobilenet_v2_matches_the_published_counts(user_models, one_thread):
    base = analyze(ModelSetting(user_models["mobilenet_v2"], dataset="imagenet"))
    assert base.counts.params.total == 3_504_872  # the published figure
    assert base.counts.macs == 300_774_272  # the published figure (conv + linear multiply-accumulates)
    convs = _mobilenet()
    assert len(convs) == 52
    assert [(r.k, r.c_in, r.c_out, r.groups, r.h_out) for r in base.trace.layers if r.kind == "conv"] == convs
    assert base.counts.macs == _conv_macs(convs) + 1280 * 1000
    bn = 2 * sum(co for _, _, co, _, _ in convs)
    assert base.counts.params.total == _conv_params(convs) + bn + 1280 * 1000 + 1000
    assert base.counts.unsupported == {}


def test_mobilenet_v2_variants_by_hand(user_models, one_thread):
    path = user_models["mobilenet_v2"]
    base_params = 3_504_872
    flt = analyze(ModelSetting(path, "float", dataset="imagenet"))
    assert flt.counts.params.total == base_params + 52  # one alpha per conv, the classifier stays plain
    assert flt.counts.macs == 300_774_272 and len(flt.trace.noise_convs) == 52
    assert flt.trace.layer("classifier.1").formula == "eq7"

    # OAT d = 1: a FiLM after every BN (the identity shortcuts carry no BN): 2dC + 2C + 4C^2 + 2C params each
    oat = analyze(ModelSetting(path, "oat", dataset="imagenet"))
    channels = [co for _, _, co, _, _ in _mobilenet()]
    assert len(oat.trace.films) == 52
    assert oat.counts.params.groups["film"] == sum(2 * c + 2 * c + 4 * c * c + 2 * c for c in channels)
    assert oat.counts.params.total == base_params + sum(4 * c * c + 6 * c for c in channels)
    conv_f = sum(film_weights(1, c) for c in channels)
    assert sum(r.film_weights for r in (d.layer for d in oat.delay.layers)) == conv_f  # every conv owns one

    # FLOATS-i at density 0.5: masks on every conv but the stem, exactly half their weights kept
    fi = analyze(ModelSetting(path, "floats-i", dataset="imagenet", density=0.5))
    masked = [r for r in fi.trace.layers if r.masked]
    prunable = _conv_params(_mobilenet()[1:])
    assert len(masked) == 51 and not fi.trace.layers[0].masked
    assert sum(r.weight_nonzero for r in masked) == round(0.5 * prunable)

    # FLOAT slim at width 0.5: every channel group keeps round(C / 2); depthwise convs keep whole groups
    slim = analyze(ModelSetting(path, "float-slim", dataset="imagenet", width=0.5))
    half = _mobilenet(0.5)
    assert [(r.k, r.c_in, r.c_out, r.groups, r.h_out) for r in slim.trace.layers if r.kind == "conv"] == half
    assert slim.counts.macs == _conv_macs(half) + 640 * 1000
    assert slim.trace.layer("classifier.1").c_out == 1000


# --- channel coupling: concatenation, grouped and depthwise convs -----------------------------------------

COUPLED = '''
import torch
import torch.nn.functional as F
from torch import nn


class Dense(nn.Module):
    """DenseNet-style: each layer's 8 new channels are concatenated to its input."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.d1 = nn.Conv2d(16, 8, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(24)
        self.d2 = nn.Conv2d(24, 8, 3, padding=1, bias=False)
        self.transition = nn.Conv2d(32, 16, 1, bias=False)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = self.stem(x)
        x = torch.cat([x, self.d1(x)], 1)
        x = F.relu(self.bn(x))
        x = torch.cat([x, self.d2(x)], 1)
        x = self.transition(x)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class Grouped(nn.Module):
    """A grouped conv (4 groups of 4 -> 8) and a depthwise conv, joined by a residual add."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.grouped = nn.Conv2d(16, 32, 3, padding=1, groups=4, bias=False)
        self.depthwise = nn.Conv2d(32, 32, 3, padding=1, groups=32, bias=False)
        self.bn = nn.BatchNorm2d(32)
        self.pointwise = nn.Conv2d(32, 16, 1, bias=False)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = self.stem(x)
        y = self.grouped(x)
        y = F.relu(self.bn(self.depthwise(y))) + y
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(self.pointwise(y), 1), 1))


class FixedScale(nn.Module):
    """A learned per-channel scale of fixed size: slimming its input cannot be resolved."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.scale = Scale(16)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(self.scale(self.stem(x)), 1), 1))


class Scale(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(1, c, 1, 1))

    def forward(self, x):
        return x * self.gamma


class OddGroups(nn.Module):
    """4 groups of 3 channels: at width 0.5 the 6 kept channels do not split into 4 groups."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 12, 3, padding=1, bias=False)
        self.grouped = nn.Conv2d(12, 12, 3, padding=1, groups=4, bias=False)
        self.fc = nn.Linear(12, 10)

    def forward(self, x):
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(self.grouped(self.stem(x)), 1), 1))
'''


@pytest.fixture(scope="module")
def coupled(tmp_path_factory):
    path = tmp_path_factory.mktemp("coupled") / "nets.py"
    path.write_text(COUPLED)
    return lambda name: f"{path}:{name}"


def _shapes(analysis):
    return {r.name: (r.c_in, r.c_out, r.groups) for r in analysis.trace.layers}


def test_concatenation_slims_to_the_hand_derived_channels(coupled):
    a = analyze(ModelSetting(coupled("Dense"), "float-slim", width=0.5))
    # stem 16 -> 8; d1 reads 8, writes 4; the concat holds 8 + 4 = 12 (its BN keeps round(24 / 2) = 12);
    # d2 reads 12, writes 4; the transition reads 12 + 4 = 16 and writes 8; the classifier reads 8
    assert _shapes(a) == {"stem": (3, 8, 1), "d1": (8, 4, 1), "d2": (12, 4, 1), "transition": (16, 8, 1),
                          "fc": (8, 10, 1)}
    assert a.counts.macs == 1024 * (27 * 8 + 72 * 4 + 108 * 4 + 16 * 8) + 80


def test_grouped_and_depthwise_convs_slim_by_whole_groups(coupled):
    a = analyze(ModelSetting(coupled("Grouped"), "oat-slim", width=0.5))
    # stem 16 -> 8; the grouped conv keeps its 4 groups, each thinned to 2 in and 4 out: 8 -> 16; the
    # depthwise conv keeps 16 groups of one channel; the pointwise conv 16 -> 8
    assert _shapes(a) == {"stem": (3, 8, 1), "grouped": (8, 16, 4), "depthwise": (16, 16, 16),
                          "pointwise": (16, 8, 1), "fc": (8, 10, 1)}
    assert a.trace.layer("grouped").params == 9 * 2 * 16 and a.trace.layer("depthwise").params == 9 * 16
    # the FiLM after bn (16 active channels) belongs to the depthwise conv that wrote its input
    film = a.trace.films[0]
    assert (film.owner, film.channels) == ("depthwise", 16)
    full = analyze(ModelSetting(coupled("Grouped"), "oat-slim"))
    assert _shapes(full)["grouped"] == (16, 32, 4)


@pytest.mark.parametrize(("name", "layer"), [("FixedScale", "scale"), ("OddGroups", "grouped")])
def test_coupling_that_cannot_be_resolved_exits_2_naming_the_layer(coupled, capsys, name, layer):
    with pytest.raises(SystemExit) as exc:
        main(["count", coupled(name), "--variant", "float-slim"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("\n") == 1
    assert f"in layer '{layer}'" in err and "width 0.5" in err


def test_a_conv_with_a_computed_weight_is_refused(tmp_path):
    path = tmp_path / "std.py"
    path.write_text(textwrap.dedent('''
        import torch.nn.functional as F
        from torch import nn

        class StdConv(nn.Conv2d):
            def forward(self, x):
                w = (self.weight - self.weight.mean()) / (self.weight.std() + 1e-5)
                return F.conv2d(x, w, None, self.stride, self.padding)

        def make():
            return nn.Sequential(nn.Conv2d(3, 8, 3), StdConv(8, 8, 3), nn.Flatten(), nn.LazyLinear(10))
    '''))
    with pytest.raises(HwsimError, match=r"variant 'float' cannot transform layer '1': StdConv"):
        create_model(f"{path}:make", "float")


# --- the command line ---------------------------------------------------------------------------------------

def test_cli_user_model_in_every_variant_and_compare(coupled):
    runner = CliRunner()
    spec = coupled("Grouped")
    for variant in VARIANTS:
        out = runner.invoke(cli, ["delay", spec, "--variant", variant, "--format", "json"])
        assert out.exit_code == 0, out.output
        doc = json.loads(out.output)
        formulas = {layer["formula"] for layer in doc["layers"] if layer["kind"] == "conv"}
        record = get_variant(variant)
        assert formulas == ({"eq8"} if record.noise else {"eq9", "eq7"} if record.film else {"eq7"})
    out = runner.invoke(cli, ["compare", spec, "--width", "0.5", "--format", "json"])
    assert out.exit_code == 0, out.output
    rows = json.loads(out.output)["variants"]
    assert [r["variant"] for r in rows] == list(VARIANTS)
    by = {r["variant"]: r for r in rows}
    single = json.loads(runner.invoke(cli, ["count", spec, "--variant", "oat-slim", "--width", "0.5",
                                            "--format", "json"]).output)
    assert by["oat-slim"]["params"] == single["totals"]["params"]
    assert by["float-slim"]["macs"] < by["float"]["macs"]


def test_user_model_knobs_switch_width(coupled):
    model = create_model(coupled("Grouped"), "float-slim")
    set_knobs(model, width=0.5)
    assert model.hwsim_knobs.width == 0.5


# --- torch-pruning's DepGraph as the independent check of the channel coupling -------------------------------

@pytest.mark.parametrize(("model", "input_size"), [("resnet34", (3, 32, 32)), ("mobilenet_v2", (3, 224, 224)),
                                                   ("Dense", (3, 32, 32)), ("Grouped", (3, 32, 32))])
def test_slim_channels_match_torch_pruning_depgraph(user_models, coupled, one_thread, model, input_size):
    """Prune the base model with torch-pruning at ratio 0.5, keeping each coupled group's first channels,
    and compare every layer's (c_in, c_out, groups) with the float-slim variant at width 0.5."""
    import torch
    from torch import nn

    tp = pytest.importorskip("torch_pruning")
    from models import load_factory

    class FirstKept(tp.importance.Importance):  # importance falls with the index: drop the last channels
        def __call__(self, group):
            return torch.arange(len(group[0].idxs), 0, -1, dtype=torch.float)

    spec = user_models.get(model) or coupled(model)
    net = load_factory(spec)().eval()
    logits = [m for m in net.modules() if isinstance(m, nn.Linear)][-1]
    tp.pruner.BasePruner(net, torch.rand(1, *input_size), importance=FirstKept(), pruning_ratio=0.5,
                         ignored_layers=[logits]).step()
    pruned = trace_model(net, input_size)
    slim = analyze(ModelSetting(spec, "float-slim", width=0.5, input_size=input_size)).trace
    assert [(r.name, r.c_in, r.c_out, r.groups) for r in slim.layers] == [
        (r.name, r.c_in, r.c_out, r.groups) for r in pruned.layers]
