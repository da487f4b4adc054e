"""SPEC 5.2: the tracer on layers people use every day, checked on small stand-ins against hand counts,
fvcore, torch.utils.flop_counter.FlopCounterMode and sum(p.numel()) (issue 18).

Each test names the bug of the old tracer it kills."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import prune
from torch.utils.flop_counter import FlopCounterMode

from hwsim.count import count
from hwsim.delay import LayerShape, model_delay
from hwsim.hardware import get_preset
from hwsim.trace import trace_model
from variant_standins import EncoderBlock as StandinEncoderBlock

ASIC65 = get_preset("asic65")


def _flop_counter_macs(net: nn.Module, input_size: tuple[int, ...]) -> int:
    """FlopCounterMode's conv + linear + matmul FLOPs / 2 (it counts 2 FLOPs per MAC)."""
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net(torch.rand(1, *input_size))
    return counter.get_total_flops() // 2


def _fvcore_macs(net: nn.Module, input_size: tuple[int, ...]) -> int:
    """fvcore's conv + linear + matmul MACs (fvcore counts one fused multiply-add as one flop)."""
    fvcore = pytest.importorskip("fvcore.nn")
    with torch.no_grad():
        analysis = fvcore.FlopCountAnalysis(net.eval(), torch.rand(1, *input_size))
        analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
        keep = {"conv", "_convolution", "addmm", "linear", "matmul", "mm", "bmm", "einsum"}
        return sum(n for op, n in analysis.by_operator().items() if op in keep)


def _numel(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


# ------------------------------------------------------------------------------------------ N-d convs
def test_conv1d_counts_its_own_dimensionality():
    """Old: a Conv1d was a 2-D conv over its channel axis (589,824 MACs instead of 12,288)."""
    net = nn.Sequential(nn.Conv1d(4, 8, 3))  # L = 130 -> 128 outputs
    trace = trace_model(net, (4, 130))
    (record,) = trace.layers
    assert (record.kd, record.kh, record.kw, record.d_out, record.h_out, record.w_out) == (1, 1, 3, 1, 1, 128)
    assert record.kernel == (3,) and record.in_size == (130,) and record.out_size == (128,)
    report = count(net, trace, ASIC65)
    assert report.macs == 3 * 4 * 8 * 128 == 12_288
    assert report.macs == _flop_counter_macs(net, (4, 130)) == _fvcore_macs(net, (4, 130))
    assert report.params.total == report.params.active == _numel(net) == 3 * 4 * 8 + 8


def test_non_square_kernels_count_kh_kw():
    """Old: a 1x7 kernel counted as 1x1 and a 7x1 as 7x7 (32,768 / 229,376 MACs instead of 7 per pair)."""
    net = nn.Sequential(nn.Conv2d(16, 32, (1, 7), padding=(0, 3)), nn.Conv2d(32, 16, (7, 1), padding=(3, 0)))
    trace = trace_model(net, (16, 8, 8))
    a, b = trace.layers
    assert (a.kh, a.kw, a.k) == (1, 7, 0) and (b.kh, b.kw, b.k) == (7, 1, 0)
    assert a.padding == (0, 3) and b.padding == (3, 0)
    assert a.macs == b.macs == 7 * 16 * 32 * 64 == 229_376
    report = count(net, trace, ASIC65)
    assert report.macs == 2 * 229_376 == _flop_counter_macs(net, (16, 8, 8)) == _fvcore_macs(net, (16, 8, 8))
    # Eq. 7 with W = kh kw C_i C_o = 3584 weights: ceil(3584 * 8 / 64) reads, ceil(3584 / 175) x 64 passes
    layer = model_delay(trace.shapes(), ASIC65).layers[0]
    assert layer.layer.weights == 3584
    assert (layer.reads, layer.mult_passes) == (-(-3584 * 8 // 64), -(-3584 // 175) * 64)


def test_pruning_a_non_square_kernel_is_read_with_its_kh_kw():
    """Old: W = k^2 C_i C_o with k = 1 made the 1x7 layer's 7x larger nnz look dense."""
    conv = nn.Conv2d(8, 8, (1, 7), padding=(0, 3), bias=False)
    prune.l1_unstructured(conv, "weight", amount=0.5)  # 448 weights, 224 kept
    trace = trace_model(nn.Sequential(conv), (8, 4, 4))
    shape = trace.shapes()[0]
    assert (shape.weights, shape.nnz) == (448, 224)
    assert trace.layers[0].macs == 448 * 16  # irregular zeros are computed


@pytest.mark.parametrize("padding", ["same", "valid"])
def test_string_padding_counts_like_numeric(padding):
    """Old: padding="same" ran as aten.conv2d.padding, which no table knew: the conv vanished."""
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=padding), nn.Flatten(), nn.LazyLinear(10))
    size = 8 if padding == "same" else 6
    trace = trace_model(net, (3, 8, 8))
    conv = trace.layer("0")
    assert (conv.h_out, conv.w_out) == (size, size) and not trace.unsupported
    assert conv.padding == ((1, 1) if padding == "same" else (0, 0))
    report = count(net, trace, ASIC65)
    assert report.macs_by_kind["conv"] == 27 * 8 * size * size
    assert report.params.total == _numel(net) == 27 * 8 + 8 + 8 * size * size * 10 + 10
    assert [s.name for s in trace.shapes()] == ["0", "2"]


def test_conv3d_and_transposed_convs():
    net3 = nn.Sequential(nn.Conv3d(2, 4, (3, 1, 5), stride=(1, 2, 1), padding=(1, 0, 2)))
    trace = trace_model(net3, (2, 4, 6, 8))
    (r,) = trace.layers
    assert (r.kd, r.kh, r.kw) == (3, 1, 5) and r.out_size == (4, 3, 8) and r.strides == (1, 2, 1)
    assert r.k == 0 and r.shape().k == 0 and r.stride == 0  # no square kernel, no single stride
    assert r.macs == 15 * 2 * 4 * (4 * 3 * 8) == _flop_counter_macs(net3, (2, 4, 6, 8)) == _fvcore_macs(
        net3, (2, 4, 6, 8))
    # A transposed conv uses each weight at every input position: k^2 C_i C_o H_i W_i (fvcore's convention)
    up = nn.Sequential(nn.ConvTranspose2d(6, 4, 3, stride=2, padding=1, output_padding=1))
    trace = trace_model(up, (6, 5, 5))
    (t,) = trace.layers
    assert t.transposed and t.out_size == (10, 10) and t.in_size == (5, 5)
    assert (t.c_in, t.c_out) == (6, 4) and t.macs == 9 * 6 * 4 * 25 == _fvcore_macs(up, (6, 5, 5))
    assert count(up, trace, ASIC65).params.total == _numel(up)
    up1 = nn.Sequential(nn.ConvTranspose1d(3, 5, 4, groups=1))
    (t1,) = trace_model(up1, (3, 7)).layers
    assert t1.out_size == (10,) and t1.macs == 4 * 3 * 5 * 7 == _fvcore_macs(up1, (3, 7))


# ------------------------------------------------------------------------------------- transformers
class EncoderBlock(StandinEncoderBlock):
    """torchvision's ViT encoder block (pre-norm, nn.MultiheadAttention): the stand-in of
    ``tests/variant_standins.py`` at small default sizes."""

    def __init__(self, dim: int = 64, heads: int = 4, mlp: int = 128) -> None:
        super().__init__(dim, heads, mlp)


def _encoder_macs(n: int, d: int, mlp: int) -> int:
    """By hand: q, k, v and output projections, q k^T and attn v, and the MLP, over n tokens."""
    return n * d * 3 * d + n * d * d + 2 * n * n * d + 2 * n * d * mlp


@pytest.mark.parametrize("train", [True, False])
def test_encoder_block_counts_every_mac_in_train_and_eval_mode(train):
    """Old: in eval mode the fast path (aten._native_multi_head_attention) hid the projections and the
    products (360,768 of 885,056 MACs); in_proj_weight (applied with F.linear) was counted twice."""
    block = EncoderBlock().train(train)
    trace = trace_model(block, (17, 64))  # 17 tokens of 64 features
    assert not trace.unsupported
    report = count(block, trace, ASIC65)
    assert report.macs == _encoder_macs(17, 64, 128)
    assert block.training == train and torch.backends.mha.get_fastpath_enabled()  # both restored
    assert report.params.total == report.params.active == _numel(block)
    assert report.memory_bytes == _numel(block) * ASIC65.b_w // 8  # every parameter once, no BN or alpha
    # FlopCounterMode agrees on the weight layers in train mode (it misses sdpa on CPU: products apart)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        block.train()(torch.rand(1, 17, 64))
    linear = sum(v for op, v in counter.get_flop_counts()["Global"].items() if "addmm" in str(op) or "mm" in str(op)
                 and "bmm" not in str(op)) // 2
    assert linear == report.macs_by_kind["linear"] == 17 * 64 * 4 * 64 + 2 * 17 * 64 * 128


def test_transformer_encoder_layer_in_eval_mode():
    """nn.TransformerEncoderLayer in eval mode runs aten._transformer_encoder_layer_fwd: counted op by op."""
    layer = nn.TransformerEncoderLayer(64, 4, dim_feedforward=96, batch_first=True)
    trace = trace_model(layer, (9, 64))
    assert not trace.unsupported
    report = count(layer, trace, ASIC65)
    assert report.macs == _encoder_macs(9, 64, 96)
    assert report.macs_by_kind["matmul"] == 2 * 9 * 9 * 64
    assert report.params.total == report.params.active == _numel(layer)


# ---------------------------------------------------------------------------- parameters by identity
class KernelConv(nn.Module):
    """A conv whose weight is called ``kernel``, and a user scale called ``alpha`` (not FLOAT's)."""

    def __init__(self) -> None:
        super().__init__()
        self.kernel = nn.Parameter(torch.randn(8, 3, 3, 3))
        self.alpha = nn.Parameter(torch.ones(8, 1, 1))

    def forward(self, x):
        return F.conv2d(x, self.kernel, padding=1) * self.alpha


def test_a_weight_named_kernel_counts_once_and_a_user_alpha_is_no_float_alpha():
    """Old: `kernel` counted as backbone and as other (active > total); `alpha` was taken for FLOAT's
    (group alpha, out of memory and of weight decay)."""
    net = nn.Sequential(KernelConv(), nn.Flatten(), nn.Linear(8 * 4 * 4, 2))
    trace = trace_model(net, (3, 4, 4))
    params = count(net, trace, ASIC65).params
    assert params.total == params.active == _numel(net) == 216 + 8 + 256 + 2
    assert params.groups["alpha"] == 0 and params.groups["other"] == 8 and params.groups["backbone"] == 216 + 258
    assert count(net, trace, ASIC65).memory_bytes == _numel(net)  # 8 bits each, alpha included

    from hwsim.train.trainer import build_optimizer
    from hwsim.train.config import TrainConfig

    optimizer = build_optimizer(TrainConfig(weight_decay=5e-4), net)
    decayed = [p for g in optimizer.param_groups if g["weight_decay"] > 0 for p in g["params"]]
    assert any(p is net[0].alpha for p in decayed)


def test_float_alpha_is_recognised_by_its_marker():
    from models import create_model

    model = create_model("small_cnn", "float", dataset="mnist")
    trace = trace_model(model, (1, 28, 28))
    params = count(model, trace, ASIC65).params
    assert params.groups["alpha"] == 3  # one per conv, marked by its module
    assert params.total == _numel(model)


def test_a_parameter_shared_by_two_layers_counts_once():
    shared = nn.Linear(16, 16)
    net = nn.Sequential(shared, nn.ReLU(), shared)
    trace = trace_model(net, (4, 16))  # 4 tokens of 16 features, through the same layer twice
    report = count(net, trace, ASIC65)
    assert report.macs == 2 * 4 * 16 * 16  # computed twice
    assert report.params.total == report.params.active == report.params.nonzero == 272  # stored once
    assert report.memory_bytes == 272


def test_packed_qkv_slices_of_one_weight_count_once_each():
    """Cross attention slices in_proj_weight into q, k, v: three regions of one parameter, each counted once."""

    class Cross(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = nn.MultiheadAttention(32, 2, batch_first=True)
            self.memory = nn.Parameter(torch.randn(1, 5, 32))

        def forward(self, x):
            return self.attn(x, self.memory, self.memory, need_weights=False)[0]

    net = Cross()
    trace = trace_model(net, (7, 32))
    params = count(net, trace, ASIC65).params
    assert params.total == params.active == _numel(net) == 4 * 32 * 32 + 4 * 32 + 5 * 32


# ------------------------------------------------------------------------------------------- FiLMs
class TinyFiLM(nn.Module):
    """A FiLM-style module as a user would write one: marked, d = 1, MLP d -> 2C -> 2C."""

    film_conditioning = True

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.film_dim, self.channels = 1, channels
        self.mlp = nn.Sequential(nn.Linear(1, 2 * channels), nn.LeakyReLU(), nn.Linear(2 * channels, 2 * channels))

    def forward(self, x):
        h = self.mlp(torch.zeros(1, 1, device=x.device))
        mu, sigma = h[:, : self.channels, None, None], h[:, self.channels:, None, None]
        return x * F.leaky_relu(mu) + F.leaky_relu(sigma)


class DenseBlock(nn.Module):
    """DenseNet-style: the stem's BN + FiLM, then a dense layer whose BN + FiLM reads the same tensor (called
    by keyword), its conv's output concatenated with it."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.bn0, self.film0 = nn.BatchNorm2d(8), TinyFiLM(8)
        self.bn1, self.film1 = nn.BatchNorm2d(8), TinyFiLM(8)
        self.conv1 = nn.Conv2d(8, 4, 3, padding=1)
        self.bn2, self.film2 = nn.BatchNorm2d(12), TinyFiLM(12)
        self.conv2 = nn.Conv2d(12, 4, 1)

    def forward(self, x):
        x = F.relu(self.film0(self.bn0(self.stem(x))))
        y = self.conv1(F.relu(self.film1(x=self.bn1(x))))
        x = torch.cat([x, y], 1)  # 12 channels: the stem's 8 and conv1's 4
        return self.conv2(F.relu(self.film2(self.bn2(x))))


def test_several_films_fed_by_one_conv_add_their_f_and_keyword_calls_are_seen():
    """Old: two FiLMs reading the stem's output exited 2; a FiLM called with x=... was not seen."""
    net = DenseBlock()
    trace = trace_model(net, (3, 8, 8))
    # film2 reads the concatenation: the deepest writer of it is conv1
    assert {f.name: f.owner for f in trace.films} == {"film0": "stem", "film1": "stem", "film2": "conv1"}
    stem, conv1 = trace.layer("stem"), trace.layer("conv1")
    f8, f12 = 2 * 8 + 4 * 64, 2 * 12 + 4 * 144
    assert stem.conditioning == "film" and stem.film_weights == 2 * f8 and conv1.film_weights == f12
    shape = stem.shape()
    assert shape.film_weights == 2 * f8
    delay = model_delay([shape], ASIC65).layers[0]
    w = 27 * 8
    assert delay.reads == -(-(w + 2 * f8) * 8 // 64)
    assert delay.mult_passes == -(-w // 175) * 64 + -(-(2 * f8) // 175)
    assert conv1.shape().film_weights == f12 and conv1.shape().film_total == 0  # one FiLM: its own 2dC + 4C^2


# ---------------------------------------------------------------------------------- irregular masks
def _masked(conv: nn.Conv2d, mask: torch.Tensor) -> nn.Conv2d:
    prune.custom_from_mask(conv, "weight", mask)
    return conv


def test_irregular_zeros_never_shrink_channels_or_drop_layers():
    """Old: floats-i dropped the channels (MobileNetV3 -9.4%) and layers whose mask happened to be all zero
    from MACs and delay, though irregular zeros are computed."""
    torch.manual_seed(0)
    irregular = (torch.rand(8, 8, 3, 3) > 0.5).float()
    irregular[:, 3] = 0  # input channel 3 happens to lose every weight
    irregular[5] = 0  # and output channel 5
    empty = torch.zeros(8, 8, 3, 3)  # this layer's weights all happen to be pruned
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), _masked(nn.Conv2d(8, 8, 3, padding=1), irregular),
                        _masked(nn.Conv2d(8, 8, 3, padding=1), empty), nn.Conv2d(8, 2, 1))
    trace = trace_model(net, (3, 6, 6))
    one, two = trace.layer("1"), trace.layer("2")
    assert (one.c_in_eff, one.c_out_eff) == (8, 8) and (two.c_in_eff, two.c_out_eff) == (8, 8)
    dense = 27 * 8 * 36 + 2 * 576 * 36 + 16 * 36
    assert count(net, trace, ASIC65).macs == dense == sum(s.macs for s in trace.shapes())
    assert [s.name for s in trace.shapes()] == ["0", "1", "2", "3"]
    assert trace.shapes()[2].nnz == 0 and trace.shapes()[1].nnz == int(irregular.sum())


def test_channel_masks_still_shrink_channels():
    mask = torch.ones(8, 8, 3, 3)
    mask[:, 2:5] = 0  # three whole input channels, as FLOATS-c prunes
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), _masked(nn.Conv2d(8, 8, 3, padding=1), mask))
    record = trace_model(net, (3, 6, 6)).layer("1")
    assert (record.c_in_eff, record.c_out_eff) == (5, 8) and record.macs == 9 * 5 * 8 * 36


class SqueezeHead(nn.Module):
    """A conv classifier (SqueezeNet's): a 1x1 conv to the classes, then global average pooling."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 16, 3, stride=2), nn.ReLU(), nn.Conv2d(16, 32, 1), nn.ReLU())
        self.classifier = nn.Sequential(nn.Dropout(), nn.Conv2d(32, 10, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1))

    def forward(self, x):
        return self.classifier(self.features(x)).flatten(1)


def test_conv_classifier_counts_like_fvcore():
    net = SqueezeHead()
    trace = trace_model(net, (3, 17, 17))
    report = count(net, trace, ASIC65)
    assert report.macs == 27 * 16 * 64 + 16 * 32 * 64 + 32 * 10 * 64 == _fvcore_macs(net, (3, 17, 17))
    assert report.params.total == report.params.active == _numel(net)
    assert trace.flow.output_layers == ("classifier.1",)


# --------------------------------------------------------------------------------------- the op table
def test_register_op_adds_and_removes_a_handler():
    from hwsim import trace as T

    op = torch.ops.aten.cumsum.default

    class Cumsum(nn.Module):
        def forward(self, x):
            return torch.cumsum(x, 1)

    net = nn.Sequential(nn.Conv2d(3, 4, 1), Cumsum())
    assert trace_model(net, (3, 4, 4)).unsupported == {"aten.cumsum.default": 1}  # unknown: listed, not zero
    try:
        T.register_op(op, T.elements("elementwise"))
        traced = trace_model(net, (3, 4, 4))
        assert not traced.unsupported and traced.ops["elementwise"] == 64
        T.register_op(op, T.free)
        assert "aten.cumsum.default" in T.free_ops() and trace_model(net, (3, 4, 4)).ops["elementwise"] == 0
    finally:
        T.register_op(op, None)
    assert trace_model(net, (3, 4, 4)).unsupported == {"aten.cumsum.default": 1}
    assert "aten.view.default" in T.free_ops() and "aten.conv2d.default" not in T.free_ops()
    with pytest.raises(TypeError):
        T.register_op("aten.cumsum", T.free)


def test_a_registered_weight_handler_records_a_layer():
    """A handler may say an op is a product: here a user's op seen as a linear layer."""
    from hwsim import trace as T

    op = torch.ops.aten.mv.default

    class MatVec(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.randn(5, 12))

        def forward(self, x):
            return torch.mv(self.w, x.flatten())

    def mv(args, kwargs, out):
        w, x = args
        return [T.Product(w, x, None, (1, w.shape[0], w.shape[1], 1))]  # W @ x: x is the activation

    net = MatVec()
    try:
        T.register_op(op, mv)
        trace = trace_model(net, (3, 2, 2))
    finally:
        T.register_op(op, None)
    (layer,) = trace.layers
    assert layer.kind == "linear" and (layer.c_in, layer.c_out) == (12, 5) and layer.macs == 60
    assert count(net, trace, ASIC65).params.total == 60


# -------------------------------------------------------------------------------------- properties
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@st.composite
def small_models(draw):
    """Small random CNNs: convs of random kernels (square or not), groups, shared layers, masks (irregular
    or by channel), a weight called `kernel`, a user `alpha`, BN, and a linear head."""
    torch.manual_seed(draw(st.integers(0, 2**16)))
    layers: list[nn.Module] = []
    channels = draw(st.sampled_from([2, 4]))
    first = nn.Conv2d(3, channels, 3, padding=1)
    layers.append(first)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["conv", "shared", "kernel", "bn", "masked"]))
        if kind == "conv":
            kh, kw = draw(st.sampled_from([(1, 1), (3, 3), (1, 3), (3, 1)]))
            groups = draw(st.sampled_from([1, channels]))
            layers.append(nn.Conv2d(channels, channels, (kh, kw), padding=(kh // 2, kw // 2), groups=groups,
                                    bias=draw(st.booleans())))
        elif kind == "shared":
            convs = [m for m in layers if isinstance(m, nn.Conv2d) and m.in_channels == m.out_channels]
            layers.append(convs[-1] if convs else nn.Conv2d(channels, channels, 1))
        elif kind == "kernel":
            layers.append(KernelConv2(channels))
        elif kind == "bn":
            layers.append(nn.BatchNorm2d(channels))
        else:
            conv = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
            if draw(st.booleans()):
                prune.random_unstructured(conv, "weight", amount=draw(st.floats(0.0, 1.0)))
            else:
                prune.random_structured(conv, "weight", amount=draw(st.floats(0.0, 1.0)), dim=1)
            layers.append(conv)
    layers += [nn.Flatten(), nn.Linear(channels * 16, 3)]
    return nn.Sequential(*layers)


class KernelConv2(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.kernel = nn.Parameter(torch.randn(channels, channels, 1, 3))
        self.alpha = nn.Parameter(torch.ones(1))

    def forward(self, x):
        return F.conv2d(x, self.kernel, padding=(0, 1)) * self.alpha


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(small_models(), st.sampled_from([4, 8]))
def test_counts_are_ordered_on_random_models(net, b_w):
    from dataclasses import replace

    hw = replace(ASIC65, b_w=b_w)
    trace = trace_model(net, (3, 4, 4))
    report = count(net, trace, hw)
    params = report.params
    stored = _numel(net)
    assert params.total == stored  # every stored tensor once (shared layers, `kernel`, user `alpha`)
    assert params.nonzero <= params.active <= params.total
    assert report.memory_bytes <= -(-stored * b_w // 8)
    assert report.nonzero_macs <= report.macs


def test_a_2d_conv_given_a_1d_input_is_refused_not_run_unbatched():
    """(1, 3, 32) reaches a Conv2d as an unbatched image: refused, naming the layer, never counted."""
    from hwsim.errors import HwsimError

    with pytest.raises(HwsimError, match="'0' is a 2-D conv and got an input of 3 dims"):
        trace_model(nn.Sequential(nn.Conv2d(3, 4, 1)), (3, 32))


# ------------------------------------------------------------------------------------------- the CLI
def _cli(capsys, *args: str) -> tuple[int, str, str]:
    from hwsim.cli import main

    with pytest.raises(SystemExit) as exc:
        main(list(args))
    out, err = capsys.readouterr()
    return exc.value.code, out, err


def test_count_a_user_conv1d_model_with_c_l_input(capsys, tmp_path):
    path = tmp_path / "seq.py"
    path.write_text("from torch import nn\n\ndef make():\n    return nn.Sequential(nn.Conv1d(4, 8, 3), nn.ReLU(),"
                    " nn.Conv1d(8, 8, 5, padding='same'))\n")
    code, out, err = _cli(capsys, "count", f"{path}:make", "--input-size", "4,130", "--no-cache", "--format",
                          "json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["totals"]["macs"] == 3 * 4 * 8 * 128 + 5 * 8 * 8 * 128
    first = doc["layers"][0]
    assert first["kernel"] == [3] and first["out_size"] == [128] and (first["kh"], first["kw"]) == (1, 3)


@pytest.mark.parametrize(("spec", "fragment"), [
    ("k=3,cin=4,cout=4,hout=8", "missing wout"),
    ("k=3,k=3,cin=4,cout=4,hout=8,wout=8", "k given twice"),
    ("kind=linear,k=3,cin=4,cout=4", "k does not apply to kind=linear"),
    ("k=3,kh=1,kw=7,cin=4,cout=4,hout=8,wout=8", "give k= (a square kernel) or kh= and kw=, not both"),
    ("kh=1,cin=4,cout=4,hout=8,wout=8", "missing kw"),
    ("kind=matmul,k=1,cin=4,cout=4,hout=8,wout=8", "valid kinds: conv, linear"),
])
def test_delay_layer_refuses_missing_twice_and_misplaced_keys(capsys, spec, fragment):
    """Old: a missing wout defaulted to 1, a key given twice kept the last, k=3 on kind=linear was ignored."""
    code, out, err = _cli(capsys, "delay", "--layer", spec)
    assert code == 2 and out == "" and err.count("\n") == 1 and fragment in err, err


def test_delay_layer_takes_kh_kw(capsys):
    code, out, err = _cli(capsys, "delay", "--layer", "kh=1,kw=7,cin=16,cout=32,hout=8,wout=8", "--format", "json")
    assert code == 0, err
    layer = json.loads(out)["layers"][0]
    assert (layer["kh"], layer["kw"], layer["macs"]) == (1, 7, 229_376)
    shape = LayerShape("x", "conv", kh=1, kw=7, c_in=16, c_out=32, h_out=8, w_out=8)
    assert layer["delay_ns"] == model_delay([shape], ASIC65).delay_ns
    # by hand: W = 3584; ceil(3584 * 8 / 64) = 448 reads of 9 ns, ceil(3584 / 175) = 21 x 64 passes of 4 ns
    assert layer["delay_ns"] == 448 * 9 + 21 * 64 * 4


def test_film_with_d_equal_2c_counts_its_encoding_layer_by_structure():
    """Old: with d = 128 = 2C the hidden Linear(2C, 2C) of a C = 64 FiLM was taken for the encoding layer
    (resnet18 oat-slim --film-dim 128 --width 0.5: FiLM group 1,924,736; SPEC 5 gives 1,904,256)."""
    from hwsim.cost import ModelSetting, analyze

    analysis = analyze(ModelSetting("resnet18", "oat-slim", film_dim=128, width=0.5))
    films = analysis.trace.films
    # by hand: FiLM(d, C_a) = Linear(d, 2 C_a) + Linear(2 C_a, 2 C_a) = 2 d C_a + 4 C_a^2 weights, 4 C_a biases
    assert analysis.counts.params.active_groups["film"] == sum(
        2 * 128 * f.channels + 4 * f.channels**2 + 4 * f.channels for f in films) == 1_904_256


DENSE_NET = '''import torch
from torch import nn


class Dense(nn.Module):
    """DenseNet-style: the stem's BN and the first dense layer's BN both read the stem's output."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.norm0 = nn.BatchNorm2d(8)
        self.norm1 = nn.BatchNorm2d(8)
        self.conv1 = nn.Conv2d(8, 4, 3, padding=1, bias=False)
        self.norm2 = nn.BatchNorm2d(12)
        self.fc = nn.Linear(12, 10)

    def forward(self, x):
        x = torch.relu(self.norm0(self.stem(x)))
        y = self.conv1(torch.relu(self.norm1(x)))
        x = torch.relu(self.norm2(torch.cat([x, y], 1)))
        return self.fc(x.mean((2, 3)))


def make():
    return Dense()
'''


def test_dense_concatenation_under_oat_adds_both_films_to_the_stem(capsys, tmp_path):
    """Old: two FiLMs reading the stem conv's output exited 2 (and took `hwsim compare` down whole)."""
    path = tmp_path / "dense.py"
    path.write_text(DENSE_NET)
    code, out, err = _cli(capsys, "count", f"{path}:make", "--variant", "oat", "--no-cache", "--format", "json")
    assert code == 0, err
    stem = next(layer for layer in json.loads(out)["layers"] if layer["name"] == "stem")
    f8 = 2 * 8 + 4 * 8 * 8  # d = 1, C = 8: two FiLMs (after norm0 and norm1) read the stem's output
    assert stem["conditioning"] == "film" and stem["film"].count("+") == 1
    code, out, err = _cli(capsys, "delay", f"{path}:make", "--variant", "oat", "--no-cache", "--format", "json")
    stem = next(layer for layer in json.loads(out)["layers"] if layer["name"] == "stem")
    assert stem["film_weights"] == 2 * f8
    code, out, err = _cli(capsys, "compare", f"{path}:make", "--no-cache", "--format", "json")
    assert code == 0, err
    assert "oat" in out


class OneConvBlock(nn.Module):
    """A residual block whose body is one conv, as deep as its 1 x 1 projection shortcut."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.conv = nn.Conv2d(8, 16, 3, padding=1)
        self.bn = nn.BatchNorm2d(16)
        self.proj = nn.Conv2d(8, 16, 1)
        self.proj_bn = nn.BatchNorm2d(16)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        return torch.relu(self.bn(self.conv(x)) + self.proj_bn(self.proj(x)))


def test_a_projection_shortcut_as_deep_as_the_body_gets_no_film():
    """Old: both BNs of the add were at depth 2, so the projection's BN was not found as a shortcut norm
    and would get a FiLM under oat."""
    flow = trace_model(OneConvBlock(), (3, 8, 8)).flow
    assert flow.shortcut_norms == ("proj_bn",)


def test_layer_shape_per_axis_fields_keep_k_for_square_kernels():
    import dataclasses

    from hwsim.errors import HwsimError

    square = LayerShape("a", "conv", 3, 4, 8, 5, 5)  # positional, as before kh / kw existed
    assert (square.kh, square.kw, square.weights, square.positions) == (3, 3, 288, 25)
    assert dataclasses.replace(square, k=5).weights == 25 * 32  # replace(k=...) still resizes a square kernel
    thin = LayerShape("b", "conv", kh=1, kw=7, c_in=4, c_out=8, h_out=5, w_out=5)
    assert (thin.k, thin.weights, thin.macs) == (0, 224, 224 * 25)
    cube = LayerShape("c", "conv", kd=3, kh=3, kw=3, c_in=2, c_out=2, d_out=4, h_out=5, w_out=6)
    assert (cube.k, cube.weights, cube.positions) == (0, 108, 120)  # a 3-D kernel is no square: k = 0
    with pytest.raises(HwsimError, match="k is the side of a square kernel"):
        LayerShape("d", "conv", k=3, kh=1, kw=7, c_in=4, c_out=8)


def test_meta_device_counts_like_real_tensors_on_an_encoder_block():
    block = EncoderBlock()
    real, meta = trace_model(block, (17, 64)), trace_model(block, (17, 64), device="meta")
    a, b = count(block, real, ASIC65), count(block, meta, ASIC65)
    assert (a.macs, a.params, a.memory_bytes) == (b.macs, b.params, b.memory_bytes)


def test_compare_leaves_out_a_refused_variant_with_the_models_reason(capsys, tmp_path):
    path = tmp_path / "nobn.py"
    path.write_text("from torch import nn\n\ndef make():\n    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), "
                    "nn.Conv2d(4, 4, 3), nn.Flatten(), nn.LazyLinear(10))\n")
    code, out, err = _cli(capsys, "compare", f"{path}:make", "--no-cache", "--format", "json")
    assert code == 0, err
    assert "left out: oat" in err and "hwsim: note: variant 'oat' puts a FiLM after every normalization" in err


def test_compare_leaves_out_a_variant_whose_trace_is_refused(capsys, tmp_path, monkeypatch):
    """A variant that fails while it is traced (not only one surgery refuses) is left out with its reason,
    instead of taking the whole comparison down (old: DenseNet-121 under oat exited 2 and compare with it)."""
    import hwsim.cost as cost
    from hwsim.errors import HwsimError

    real = cost.analyze

    def failing_oat(setting, *args, **kwargs):
        if setting.variant == "oat":
            raise HwsimError("tracing Net failed in layer 'x': a refusal")
        return real(setting, *args, **kwargs)

    monkeypatch.setattr("hwsim.shapecache.analyze", failing_oat)
    code, out, err = _cli(capsys, "compare", "small_cnn", "--dataset", "mnist", "--variants", "base,oat",
                          "--format", "json")
    assert code == 2 and "a refusal" in err  # named explicitly with --variants: refused, exit 2
    code, out, err = _cli(capsys, "compare", "small_cnn", "--dataset", "mnist", "--format", "json")
    assert code == 0, err
    assert "left out: oat" in err and "hwsim: note: tracing Net failed in layer 'x': a refusal" in err
    assert '"oat"' not in out and '"float"' in out
