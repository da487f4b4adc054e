"""Variants on transformers and norm-free CNNs (SPEC 4.2), and the zoo's ``vit_tiny``.

The stand-ins (``tests/variant_standins.py``) are written as ConvNeXt, torchvision's ViT, Swin, timm's
BatchNormAct2d nets and SqueezeNet write them; every expected number below is derived by hand in the comments
(weights + biases per layer), never read back from the code under test.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from torch import nn

from hwsim.cli import cli
from hwsim.count import count
from hwsim.errors import HwsimError
from hwsim.hardware import get_preset
from hwsim.trace import trace_model
from models import create_model, set_knobs
from hwsim.variants import get_variant
from models.layers import Attention, CondConv2d, CondLinear, FiLM

STANDINS = Path(__file__).parent / "variant_standins.py"
MATRIX = ("base", "float", "oat", "floats-i", "floats-c", "float-slim", "oat-slim")


def film(c: int, d: int = 1) -> int:
    """FiLM(d, C): Linear(d, 2C) + Linear(2C, 2C) with biases = 2dC + 2C + 4C^2 + 2C."""
    return 2 * d * c + 2 * c + 4 * c * c + 2 * c


def convnext_block(c: int) -> int:  # dw 7x7 (49C + C), LayerNorm 2C, Linear(C, 4C), Linear(4C, C), layer scale C
    return 49 * c + c + 2 * c + (4 * c * c + 4 * c) + (4 * c * c + c) + c


def encoder_block(d: int, mlp: int) -> int:  # 2 LayerNorms, in_proj 3d^2 + 3d, out_proj d^2 + d, MLP
    return 4 * d + (3 * d * d + 3 * d) + (d * d + d) + (d * mlp + mlp) + (mlp * d + d)


def swin_block(c: int) -> int:  # as encoder_block with an MLP of 2C
    return encoder_block(c, 2 * c)


# name: (base params, weight layers but the logits one (one alpha each), FiLM channels, prunable weights)
EXPECTED = {
    # stem 4x4 conv 3->16 + bias, LayerNorm2d(16); block 16; LayerNorm2d(16) + 2x2 conv 16->32 + bias; block 32;
    # LayerNorm(32); head 32->10
    "convnext": (3 * 16 * 16 + 16 + 32 + convnext_block(16) + 32 + 16 * 32 * 4 + 32 + convnext_block(32) + 64 + 330,
                 8, (16, 16, 16, 32, 32),
                 49 * 16 + 2 * 16 * 64 + 16 * 32 * 4 + 49 * 32 + 2 * 32 * 128),
    # patch 8 conv 3->32 + bias, class token, 17 x 32 positions, 2 blocks, LayerNorm, head
    "vit": (3 * 64 * 32 + 32 + 32 + 17 * 32 + 2 * encoder_block(32, 64) + 64 + 330,
            1 + 2 * 4, (32,) * 5, 2 * (3 * 32 * 32 + 32 * 32 + 2 * 32 * 64)),
    # patch 4 conv 3->16 + bias, LayerNorm(16); 2 blocks at 16; merging LayerNorm(64) + Linear(64, 32) without
    # bias; block at 32
    "swin": (3 * 16 * 16 + 16 + 32 + 2 * swin_block(16) + 128 + 64 * 32 + swin_block(32) + 64 + 330,
             1 + 2 * 4 + 1 + 4, (16, 16, 16, 16, 16, 64, 32, 32, 32),
             2 * 8 * 16 * 16 + 64 * 32 + 8 * 32 * 32),
    # convs 3->16, 16->32 (3x3), 32->32 (3x3), shortcut 16->32 (1x1), no bias; 4 BNs; fc 32->10
    "bnact": (432 + 4608 + 9216 + 512 + 2 * (16 + 32 + 32 + 32) + 330, 4, (16, 32, 32), 4608 + 9216 + 512),
    # stem 3x3 3->16, squeeze 16->8, expand 8->16 (1x1) and (3x3), classifier conv 32->10, all with bias; 3 BNs
    "squeezenet": (448 + 136 + 144 + 1168 + 330 + 2 * (16 + 8 + 32), 4, (16, 8, 32), 128 + 128 + 1152),
}


def build(name: str, variant: str, **options):
    options.setdefault("bn", "single")
    options.setdefault("film_dim", 1)
    if variant.startswith("floats"):
        options.setdefault("density", 0.5)
    return create_model(f"{STANDINS}:{name}", variant, dataset="custom", input_size=(3, 32, 32), **options)


def costs(model):
    trace = trace_model(model, (3, 32, 32))
    return trace, count(model, trace, get_preset("asic65"))


def test_the_hand_derivations_themselves():
    assert [EXPECTED[m][0] for m in EXPECTED] == [16346, 24234, 16378, 15322, 2338]


@pytest.mark.parametrize("name", sorted(EXPECTED))
@pytest.mark.parametrize("variant", MATRIX)
def test_variant_matrix_on_the_standins(name, variant):
    base, alphas, films, prunable = EXPECTED[name]
    model = build(name, variant)
    trace, counts = costs(model)
    expected = base + (alphas if variant in ("float", "floats-i", "floats-c", "float-slim") else 0)
    if variant.startswith("oat"):
        expected += sum(film(c) for c in films)
    if variant.endswith("slim"):  # one switchable norm per width: the 0.5 copies add half of every norm
        norms = sum(p.numel() for n, p in model.named_parameters() if ".bns.0." in n)
        assert norms == sum(p.numel() for n, p in model.named_parameters() if ".bns.1." in n) / 2
        expected += norms
    assert counts.params.total == expected
    if variant == "floats-i":  # half the prunable weights, exactly (ties filled in order)
        assert counts.params.nonzero == expected - prunable + round(0.5 * prunable)
    logits = trace.flow.output_layers
    assert len(logits) == 1 and all(r.conditioning == "none" and not r.masked for r in trace.layers
                                    if r.name == logits[0])
    noisy = [r for r in trace.layers if r.conditioning == "noise"]
    assert len(noisy) == (alphas if variant in ("float", "floats-i", "floats-c", "float-slim") else 0)
    # every FiLM runs and is charged to a weight layer (Swin's patch norm and first block norm share one)
    assert len(trace.films) == (len(films) if variant.startswith("oat") else 0)
    assert all(f.owner is not None for f in trace.films)
    x = torch.rand(2, 3, 32, 32)
    set_knobs(model, lambda_n=0.4)
    assert model(x).shape == (2, 10)
    if variant.endswith("slim"):
        set_knobs(model, width=0.5)
        assert model(x).shape == (2, 10)  # the logits stay whole at every width


def test_slim_vit_keeps_whole_heads_and_the_hand_derived_macs():
    model = build("vit", "float-slim")
    set_knobs(model, width=0.5)
    trace, counts = costs(model)
    qkv = trace.layer("layers.0.self_attention.in_proj")
    # 2 of 4 heads of dimension 8: q, k and v rows of the 2 heads (48), the 16 features that arrive
    assert (qkv.c_in, qkv.c_out) == (16, 48)
    scores = next(r for r in trace.layers if r.kind == "matmul")
    assert (scores.w_out, scores.c_in) == (2, 8)  # 2 heads, head dimension 8 kept
    # patch conv 3->16 at 16 positions; per block at 17 tokens: 16x48 + 16x16 + 16x32 + 32x16; attention
    # 2 heads x (17 x 8 x 17 + 17 x 17 x 8); head 16 -> 10
    assert counts.macs == 3 * 64 * 16 * 16 + 2 * (17 * (16 * 48 + 16 * 16 + 16 * 32 + 32 * 16) + 2 * 2 * 17 * 17 * 8) \
        + 16 * 10


def test_slim_conv_classifier_keeps_its_outputs_and_reads_the_kept_channels():
    model = build("squeezenet", "float-slim")
    set_knobs(model, width=0.5)
    trace, counts = costs(model)
    classifier = trace.layer("classifier.1")
    assert (classifier.c_in, classifier.c_out) == (16, 10)
    # at 16 x 16: stem 3->8 (3x3), squeeze 8->4, expand 4->8 (1x1) and (3x3), classifier 16->10
    assert counts.macs == 256 * (3 * 8 * 9 + 8 * 4 + 4 * 8 + 4 * 8 * 9 + 16 * 10)


def test_conv_classifier_is_never_masked_nor_noised():
    model = build("squeezenet", "floats-i")
    classifier = model.classifier[1]
    assert type(classifier) is nn.Conv2d  # neither noise nor a mask reach the layer that writes the logits
    assert isinstance(model.stem[0], CondConv2d) and not hasattr(model.stem[0], "weight_mask")  # the first layer
    assert hasattr(model.squeeze[0], "weight_mask") and model.squeeze[0].noise_conditioned


def test_bnact_keeps_its_activation_after_the_film():
    model = build("bnact", "oat")
    bn1 = model.bn1
    assert isinstance(bn1, nn.Sequential) and isinstance(bn1[1], FiLM) and isinstance(bn1[-1], nn.ReLU)
    assert isinstance(bn1[0].act, nn.Identity)  # the norm itself no longer applies it
    assert type(model.shortcut[1]).__name__ == "BatchNormAct2d"  # projection shortcut: no FiLM
    # the FiLM's sigma can be negative: only an activation after it makes the block's output non-negative
    set_knobs(model, lambda_n=1.0)
    with torch.no_grad():
        bn1[1].mlp[2].bias.fill_(-5.0)
        assert float(bn1(torch.randn(2, 16, 4, 4)).min()) == 0.0


def test_layernorm2d_film_runs_over_channels_first():
    model = build("convnext", "oat")
    stem_film = model.stem[1][1]
    block_film = model.stage1.norm[1]
    assert (stem_film.channel_dim, block_film.channel_dim) == (1, -1)


def test_noise_reaches_every_linear_weight_through_the_knob():
    model = build("vit", "float")
    x = torch.rand(1, 3, 32, 32)
    model.eval()
    with torch.no_grad():
        clean = model(x)
        set_knobs(model, lambda_n=1.0)
        model.layers[0].mlp[0].alpha.fill_(0.0)  # noise still reaches attention and the other layers
        assert not torch.equal(model(x), clean)
        for module in model.modules():
            if hasattr(module, "alpha"):
                module.alpha.fill_(0.0)
        assert torch.allclose(model(x), clean, atol=1e-6)


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("need_weights", [True, False])
def test_attention_equals_multihead_attention(train, need_weights):
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(16, 4, batch_first=True)
    ours = Attention.from_multihead(mha, create_model("small_cnn").hwsim_knobs)
    mha.train(train), ours.train(train)
    x = torch.randn(3, 5, 16)
    pad = torch.tensor([[False] * 5, [False] * 4 + [True], [False] * 3 + [True] * 2])
    causal = torch.ones(5, 5, dtype=torch.bool).triu(1)
    memory = torch.randn(3, 5, 16)
    for args, kwargs in (((x, x, x), {}), ((x, x, x), {"key_padding_mask": pad}), ((x, x, x), {"attn_mask": causal}),
                         ((x, memory, memory), {"key_padding_mask": pad}), ((x, memory, x), {})):
        expected = mha(*args, need_weights=need_weights, **kwargs)
        got = ours(*args, need_weights=need_weights, **kwargs)
        assert torch.allclose(got[0], expected[0], atol=1e-5)
        assert (got[1] is None) == (expected[1] is None)
        if need_weights:
            assert torch.allclose(got[1], expected[1], atol=1e-5)


def test_a_conv2d_subclass_is_transformed_and_one_with_its_own_forward_is_refused(tmp_path):
    path = tmp_path / "sub.py"
    path.write_text(
        "import torch.nn.functional as F\nfrom torch import nn\n\n"
        "class Named(nn.Conv2d):\n    pass\n\n"
        "class Std(nn.Conv2d):\n    def forward(self, x):\n"
        "        w = self.weight - self.weight.mean()\n"
        "        return F.conv2d(x, w, self.bias, self.stride, self.padding)\n\n"
        "def plain():\n"
        "    return nn.Sequential(nn.Conv2d(3, 8, 3), Named(8, 8, 3), nn.Flatten(), nn.Linear(128, 10))\n\n"
        "def own():\n    return nn.Sequential(nn.Conv2d(3, 8, 3), Std(8, 8, 3), nn.Flatten(), nn.Linear(128, 10))\n")
    model = create_model(f"{path}:plain", "float", dataset="custom", input_size=(3, 8, 8))
    assert isinstance(model[1], CondConv2d) and model[1].noise_conditioned
    with pytest.raises(HwsimError, match=r"cannot transform layer '1': Std is not an nn.Conv2d"):
        create_model(f"{path}:own", "float", dataset="custom", input_size=(3, 8, 8))


def test_unresolvable_slimming_names_the_model_forward_not_an_empty_layer(tmp_path, capsys):
    from hwsim.cli import main

    path = tmp_path / "fixed.py"
    path.write_text(
        "import torch\nfrom torch import nn\n\n"
        "class Net(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
        "        self.a, self.b = nn.Conv2d(3, 8, 3), nn.Conv2d(8, 8, 3)\n"
        "        self.register_buffer('scale', torch.ones(1, 8, 1, 1))\n        self.fc = nn.Linear(8, 10)\n"
        "    def forward(self, x):\n        x = self.b(self.a(x)) * self.scale\n"
        "        return self.fc(x.mean(dim=(2, 3)))\n\ndef make():\n    return Net()\n")
    with pytest.raises(SystemExit) as exc:  # a buffer of 8 channels meets the 4 kept at width 0.5
        main(["count", f"{path}:make", "--variant", "float-slim", "--input-size", "16"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("\n") == 1
    assert "in layer 'Net.forward'" in err and "layer ''" not in err


def test_film_at_a_slim_width_runs_its_mlp_at_the_active_channels():
    model = create_model("vit_tiny", "oat-slim", film_dim=128, bn="single")
    set_knobs(model, width=0.5)
    trace = trace_model(model, (3, 32, 32))
    # FiLM(128, 32): Linear(128, 64) and Linear(64, 64) run, 128*64 + 64*64 MACs; not FiLM(128, 64)'s
    assert {f.mlp_macs for f in trace.films} == {128 * 64 + 64 * 64}
    assert {r.film_channels for r in trace.layers if r.conditioning == "film"} == {32}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_compare_runs_every_variant_on_the_standins(name):
    out = CliRunner().invoke(cli, ["compare", f"{STANDINS}:{name}", "--input-size", "32", "--format", "json"])
    assert out.exit_code == 0, out.output
    rows = json.loads(out.output[out.output.index("{"):])["variants"]
    assert [r["variant"] for r in rows] == ["base", "float", "oat", "floats-i", "floats-c", "float-slim", "oat-slim",
                                            "floats-slim"]
    assert rows[0]["params"] == EXPECTED[name][0]


# --- the zoo's vit_tiny -----------------------------------------------------------------------------------------

def vit_tiny_params(in_channels: int, side: int) -> int:
    """Patch conv 4x4 without bias, class token, positions ((side/4)^2 + 1) x 64, 3 blocks (2 LayerNorms,
    in_proj 64 -> 192, out_proj 64 -> 64, MLP 64 -> 128 -> 64, all biased), LayerNorm, head 64 -> 10."""
    tokens = (side // 4) ** 2 + 1
    return 16 * in_channels * 64 + 64 + tokens * 64 + 3 * encoder_block(64, 128) + 128 + 650


def vit_tiny_macs(in_channels: int, side: int) -> int:
    patches = (side // 4) ** 2
    tokens = patches + 1
    block = tokens * (64 * 192 + 64 * 64 + 64 * 128 + 128 * 64) + 4 * 2 * tokens * tokens * 16
    return 16 * in_channels * 64 * patches + 3 * block + 64 * 10


@pytest.mark.parametrize(("dataset", "channels", "side"), [("cifar10", 3, 32), ("mnist", 1, 28)])
def test_vit_tiny_golden_params_and_macs(dataset, channels, side):
    assert (vit_tiny_params(3, 32), vit_tiny_macs(3, 32)) == (108_490, 8_209_408)
    model = create_model("vit_tiny", dataset=dataset)
    trace, counts = trace_model(model, (channels, side, side)), None
    counts = count(model, trace, get_preset("asic65"))
    assert (counts.params.total, counts.macs) == (vit_tiny_params(channels, side), vit_tiny_macs(channels, side))
    assert counts.unsupported == {}


@pytest.mark.parametrize("variant", ["float", "oat", "floats-i", "floats-c", "float-slim", "oat-slim",
                                     "floats-slim"])
def test_vit_tiny_in_every_variant_learns_from_a_step(variant):
    torch.manual_seed(0)
    # (floats-c at 0.5 prunes every out_proj and fc2 of vit_tiny whole: the global ranking of input channels by
    # ||theta[:, c]||^2 favours the wider q, k, v and fc1 layers, and the class token then sees no patch)
    density = {"floats-c": 0.8}.get(variant, 0.5 if variant.startswith("floats") else 1.0)
    model = create_model("vit_tiny", variant, dataset="mnist", film_dim=1, bn="dual", density=density)
    x, y = torch.rand(8, 1, 28, 28), torch.randint(0, 10, (8,))
    set_knobs(model, lambda_n=torch.tensor([0.0, 1.0] * 4) if variant.startswith("oat") else 0.5)
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    noisy = [m for m in model.modules() if isinstance(m, (CondLinear, CondConv2d)) and m.noise_conditioned]
    learns = [m.alpha.grad is not None and m.alpha.grad != 0 for m in noisy]
    films = [m for m in model.modules() if isinstance(m, FiLM)]
    if variant.startswith("float"):
        assert len(noisy) == 1 + 4 * 3
        assert all(learns)
    if variant.startswith("oat"):
        assert len(films) == 7 and all(f.mlp[0].weight.grad.abs().sum() > 0 for f in films)


def test_vit_tiny_refuses_an_input_side_that_is_not_a_multiple_of_the_patch():
    with pytest.raises(HwsimError, match="multiple of 4"):
        create_model("vit_tiny", dataset="custom", input_size=(3, 30, 30))


@pytest.mark.parametrize("name", ["convnext", "bnact", "squeezenet"])
def test_slim_channels_match_torch_pruning_depgraph(name):
    """torch-pruning's DepGraph at ratio 0.5, keeping each coupled group's first channels, with the logits layer
    ignored (a conv for SqueezeNet) and ConvNeXt's layer scales as unwrapped parameters, gives every layer the
    (c_in, c_out, groups) of float-slim at width 0.5: LayerNorm2d, depthwise 7 x 7 convs, BatchNormAct2d and
    the fire module's concatenation included."""
    import importlib.util
    import sys

    tp = pytest.importorskip("torch_pruning")
    from hwsim.cost import ModelSetting, analyze

    class FirstKept(tp.importance.Importance):  # importance falls with the index: drop the last channels
        def __call__(self, group):
            return torch.arange(len(group[0].idxs), 0, -1, dtype=torch.float)

    spec = importlib.util.spec_from_file_location("variant_standins_dg", STANDINS)
    standins = importlib.util.module_from_spec(spec)
    sys.modules["variant_standins_dg"] = standins
    spec.loader.exec_module(standins)
    net = getattr(standins, name)().eval()
    logits = net.classifier[1] if name == "squeezenet" else [m for m in net.modules() if isinstance(m, nn.Linear)][-1]
    extra = {"unwrapped_parameters": [(net.stage1.gamma, 0), (net.stage2.gamma, 0)]} if name == "convnext" else {}
    tp.pruner.BasePruner(net, torch.rand(1, 3, 32, 32), importance=FirstKept(), pruning_ratio=0.5,
                         ignored_layers=[logits], **extra).step()
    pruned = trace_model(net, (3, 32, 32))
    slim = analyze(ModelSetting(f"{STANDINS}:{name}", "float-slim", width=0.5, input_size=(3, 32, 32))).trace
    shape = lambda t: [(r.name, r.c_in, r.c_out, r.groups) for r in t.layers]  # noqa: E731
    assert shape(slim) == shape(pruned)
    assert len(shape(slim)) == {"convnext": 9, "bnact": 5, "squeezenet": 5}[name]


@pytest.mark.parametrize(("variant", "algorithm"), [
    ("base", "pgd-at"), ("float", "float"), ("oat", "oat"), ("base", "fast"), ("base", "free"), ("base", "trades"),
    ("base", "mart"), ("floats-i", "float"), ("float-slim", "float")])
def test_vit_tiny_trains_under_every_algorithm(tmp_path, variant, algorithm):
    """One epoch of 64 synthetic images through the trainer: the algorithm reaches vit_tiny's knobs (OAT's
    lambda, FLOAT's lambda_n) through models.set_knobs as on the CNNs, and the weights move."""
    from hwsim.train.config import make_config
    from hwsim.train.trainer import build_model, train

    options = {"model": "vit_tiny", "dataset": "synthetic", "synthetic_size": 64, "val_size": 16, "batch_size": 32,
               "attack_steps": 1, "epochs": 1, "device": "cpu", "variant": variant, "algorithm": algorithm}
    if variant == "floats-i":
        options["density"] = 0.5
    if algorithm == "free":
        options["replays"] = 1
    train(make_config(options), tmp_path / "run")
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(metrics) == 1 and torch.isfinite(torch.tensor(metrics[0]["train_loss"]))
    checkpoint = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)
    model = build_model(make_config(options))
    model.load_state_dict(checkpoint["model"])  # the trained network is the one the variant builds
    # SGD momentum = the last step's gradient: nonzero on the trainable parameters the algorithm reached
    momenta = [s["momentum_buffer"] for s in checkpoint["optimizer"]["state"].values()]
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert len(momenta) == len(trainable)
    assert sum(bool(m.abs().sum() > 0) for m in momenta) >= 0.9 * len(trainable)


def test_groupnorm_gets_a_film_and_slims_by_thinning_its_groups(tmp_path):
    path = tmp_path / "gn.py"
    path.write_text(
        "from torch import nn\n\ndef make():\n    return nn.Sequential(\n"
        "        nn.Conv2d(3, 16, 3, padding=1), nn.GroupNorm(4, 16), nn.ReLU(),\n"
        "        nn.Conv2d(16, 32, 3, 2, 1), nn.GroupNorm(4, 32), nn.ReLU(),\n"
        "        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))\n")
    spec = f"{path}:make"
    base = 3 * 16 * 9 + 16 + 32 + 16 * 32 * 9 + 32 + 64 + 330  # convs with bias, GroupNorm affine, head
    oat = create_model(spec, "oat", dataset="custom", input_size=(3, 8, 8), film_dim=1, bn="single")
    assert sum(p.numel() for p in oat.parameters()) == base + film(16) + film(32)
    assert isinstance(oat[1][1], FiLM) and isinstance(oat[4][1], FiLM)
    slim = create_model(spec, "oat-slim", dataset="custom", input_size=(3, 8, 8), film_dim=1, bn="single")
    set_knobs(slim, width=0.5)
    norm = slim[4][0].active_norms()[0]
    assert (norm.num_groups, norm.num_channels) == (4, 16)  # 4 groups of 4 channels instead of 4 of 8
    assert slim(torch.rand(2, 3, 8, 8)).shape == (2, 10)


def test_dual_norms_double_every_layernorm():
    single, dual = build("vit", "float"), build("vit", "float", bn="dual")
    extra = sum(p.numel() for p in dual.parameters()) - sum(p.numel() for p in single.parameters())
    assert extra == 5 * 2 * 32  # one more LayerNorm(32) (weight and bias) for each of the 5
    set_knobs(dual, lambda_n=1.0)
    norm = dual.layers[0].ln_1
    assert [type(n) for n in norm.bns] == [nn.LayerNorm, nn.LayerNorm]


def test_floats_c_prunes_whole_input_features_of_linears():
    model = create_model("vit_tiny", "floats-c", density=0.5)
    masks = [m.weight_mask for m in model.modules() if isinstance(m, CondLinear) and hasattr(m, "weight_mask")]
    assert len(masks) == 4 * 3  # in_proj, out_proj and both MLP layers of 3 blocks; not the head
    for mask in masks:  # a column (one input feature) is kept or pruned whole
        column = mask.amax(dim=0)
        assert torch.equal(mask, column.expand_as(mask))
    kept = sum(int(m.sum()) for m in masks) + sum(int(m.weight_mask.sum()) for m in model.modules()
                                                  if isinstance(m, CondConv2d) and hasattr(m, "weight_mask"))
    total = sum(m.numel() for m in masks)
    assert total - 192 < 2 * kept <= total  # density 0.5, short by less than the largest column (192 weights)


def test_cross_attention_sequence_first_in_every_variant(tmp_path):
    """nn.MultiheadAttention with batch_first=False attending to a learned memory: q from the tokens, k and v
    from the memory, each a row block of the packed weight (counted once each: 3 x 16 x 16 weights)."""
    path = tmp_path / "cross.py"
    path.write_text(
        "import torch\nfrom torch import nn\n\nclass Net(nn.Module):\n    def __init__(self):\n"
        "        super().__init__()\n        self.embed = nn.Conv2d(3, 16, 4, 4)\n"
        "        self.norm = nn.LayerNorm(16)\n"
        "        self.memory = nn.Parameter(torch.randn(5, 1, 16))\n        self.attn = nn.MultiheadAttention(16, 4)\n"
        "        self.head = nn.Linear(16, 10)\n"
        "    def forward(self, x):\n        x = self.norm(self.embed(x).flatten(2).permute(2, 0, 1))\n"
        "        m = self.memory.expand(-1, x.shape[1], -1)\n"
        "        return self.head((x + self.attn(x, m, m, need_weights=False)[0]).mean(0))\n\n"
        "def make():\n    return Net()\n")
    x = torch.rand(2, 3, 8, 8)
    for variant in MATRIX:
        model = create_model(f"{path}:make", variant, dataset="custom", input_size=(3, 8, 8), film_dim=1, bn="single",
                             density=0.5 if variant.startswith("floats") else 1.0)
        trace, counts = trace_model(model, (3, 8, 8)), None
        counts = count(model, trace, get_preset("asic65"))
        # conv 3*16*16 + 16, LayerNorm 32, memory 80, attention 4 * 16^2 + 4 * 16, head 170; an alpha for the conv,
        # in_proj and out_proj; a FiLM(1, 16); the slim LayerNorm's half-width copy
        expected = 784 + 32 + 80 + 1088 + 170 + 3 * get_variant(variant).noise + film(16) * variant.startswith("oat")
        assert counts.params.total == expected + 16 * variant.endswith("slim")
        assert [r.name for r in trace.layers if r.name.startswith("attn.in_proj")] == [
            "attn.in_proj", "attn.in_proj#2", "attn.in_proj#3"]
        assert model(x).shape == (2, 10)
