"""Closed-form delays computed by hand, under asic65 and under a preset where b_io / b_w is not an integer."""

import math

import numpy as np
import pytest

from hwsim.delay import (LayerShape, delay_grid, film_weights, hardware_grid, layer_delay, model_delay,
                         normalized_delay)
from hwsim.errors import HwsimError
from hwsim.hardware import HardwareConfig, get_preset, load_toml

ASIC65 = get_preset("asic65")


def conv(k, cin, cout, h, formula="eq7", d=0, groups=1, name="c", nnz=None):
    film = {"film_dim": d, "film_channels": cout} if formula == "eq9" else {}
    return LayerShape(name, "conv", k=k, c_in=cin, c_out=cout, h_out=h, w_out=h, groups=groups, formula=formula,
                      nnz=nnz, **film)


# (layer, reads, multiplier passes, delay in ns) under asic65: reads = ceil(8 W / 64), passes of 175 multipliers.
ASIC65_CASES = [
    # 3x3 64->64 at 32x32: W = 36864, 4608 reads; ceil(36864/175) = 211 passes x 1024 positions.
    (conv(3, 64, 64, 32), 4608, 216_064, 4608 * 9 + 216_064 * 4),  # 905,728 ns
    # Eq. 8 adds one pass of 211 to add the noise.
    (conv(3, 64, 64, 32, "eq8"), 4608, 216_275, 906_572),
    # Eq. 9, d = 1: F = 2*64 + 4*64^2 = 16512; reads ceil(8 (36864 + 16512) / 64) = 6672; ceil(16512/175) = 95.
    (conv(3, 64, 64, 32, "eq9", d=1), 6672, 216_064 + 95, 6672 * 9 + (216_064 + 95) * 4),  # 924,684 ns
    # Eq. 9, d = 128: F = 2*128*64 + 16384 = 32768; reads 8704 (8 * 69632 / 64); ceil(32768/175) = 188.
    (conv(3, 64, 64, 32, "eq9", d=128), 8704, 216_064 + 188, 8704 * 9 + (216_064 + 188) * 4),
    # Stem 3x3 3->64 at 32x32: W = 1728, 216 reads, 10 passes x 1024.
    (conv(3, 3, 64, 32), 216, 10_240, 42_904),
    # Depthwise 3x3, 64 groups at 16x16: W = 576, 72 reads, 4 passes x 256.
    (conv(3, 64, 64, 16, groups=64), 72, 1024, 4744),
    # Classifier 512->10: W = 5120, 640 reads, 30 passes.
    (LayerShape("fc", "linear", k=1, c_in=512, c_out=10), 640, 30, 5880),
]


@pytest.mark.parametrize(("layer", "reads", "passes", "delay"), ASIC65_CASES)
def test_closed_form_asic65(layer, reads, passes, delay):
    d = layer_delay(layer, ASIC65)
    assert (d.reads, d.mult_passes, d.delay_ns) == (reads, passes, delay)
    assert d.read_ns == reads * 9 and d.mult_ns == passes * 4


def test_non_integer_io_ratio_uses_exact_ceilings(hw6_path):
    hw = load_toml(hw6_path)  # b_io = 16, b_w = 6, n_bank = 5, n_mult = 100, t_read = 10, t_mult = 2
    layer = conv(1, 16, 40, 8)  # W = 640 weights: 3840 bits = exactly 48 reads of 80 bits
    assert math.ceil(layer.weights / ((hw.b_io / hw.b_w) * hw.n_bank)) == 49  # the float formula is off by one
    d = layer_delay(layer, hw)
    assert (d.reads, d.mult_passes, d.delay_ns) == (48, 7 * 64, 48 * 10 + 7 * 64 * 2)  # 1376 ns
    assert layer_delay(conv(1, 16, 40, 8, "eq8"), hw).delay_ns == 1376 + 7 * 2
    # Eq. 9: F = 2*40 + 4*1600 = 6480; reads = 6 * 7120 / 80 = 534 exactly; FiLM passes ceil(6480/100) = 65.
    oat = layer_delay(conv(1, 16, 40, 8, "eq9", d=1), hw)
    assert (oat.reads, oat.mult_passes, oat.delay_ns) == (534, 448 + 65, 5340 + (448 + 65) * 2)


def test_film_weights_formula():
    assert film_weights(1, 512) == 2 * 512 + 4 * 512**2
    assert film_weights(128, 64) == 2 * 128 * 64 + 4 * 64**2
    assert conv(3, 64, 64, 8).film_weights == 0  # only eq9 layers carry FiLM weights


def test_pruned_layer_storage_and_zero_skip():
    layer = conv(3, 64, 64, 8, nnz=3686)  # 10 % of 36864 weights nonzero
    dense = layer_delay(layer, ASIC65)  # default: dense storage, no zero skipping -> same as unpruned
    assert dense.delay_ns == layer_delay(conv(3, 64, 64, 8), ASIC65).delay_ns
    bitmap = HardwareConfig(sparse_storage="bitmap")
    # (3686 * 8 + 36864) bits / 64 = 1036.75 -> 1037 reads
    assert layer_delay(layer, bitmap).reads == 1037
    skip = HardwareConfig(zero_skip=True)
    assert layer_delay(layer, skip).mult_passes == math.ceil(3686 / 175) * 64


def test_model_totals_are_exact_sums():
    layers = [case[0] for case in ASIC65_CASES[:1]] + [conv(3, 3, 64, 32, name="stem"),
                                                        LayerShape("fc", "linear", k=1, c_in=512, c_out=10)]
    report = model_delay(layers, ASIC65)
    assert report.delay_ns == 905_728 + 42_904 + 5880
    assert report.reads == 4608 + 216 + 640
    assert [d.delay_ns for d in report.layers] == [905_728, 42_904, 5880]


def test_normalized_delay_statistics():
    base = model_delay([conv(3, 64, 64, 32, name="a"), conv(3, 3, 64, 32, name="b")], ASIC65).layers
    float_ = model_delay([conv(3, 64, 64, 32, "eq8", name="a"), conv(3, 3, 64, 32, "eq8", name="b")], ASIC65).layers
    stats = normalized_delay(float_, base)
    assert stats.ratios == (("a", 906_572 / 905_728), ("b", (42_904 + 40) / 42_904))
    assert stats.min == 906_572 / 905_728 and stats.max == (42_904 + 40) / 42_904
    assert stats.mean == pytest.approx((906_572 / 905_728 + 42_944 / 42_904) / 2, rel=1e-15)
    assert normalized_delay(base, base).mean == 1.0  # no conditional layers


def test_grid_matches_scalar_path():
    layers = [case[0] for case in ASIC65_CASES]
    grid = hardware_grid(ASIC65, n_mult=[1, 64, 175, 1000], n_bank=[1, 4], b_io=[8, 16, 64])
    out = delay_grid(layers, grid)
    assert out.delay_ns.shape == (len(layers), 24)
    for j in range(len(grid)):
        hw = HardwareConfig(b_io=int(grid.b_io[j]), n_bank=int(grid.n_bank[j]), n_mult=int(grid.n_mult[j]))
        for i, layer in enumerate(layers):
            d = layer_delay(layer, hw)
            assert (out.reads[i, j], out.mult_passes[i, j], out.delay_ns[i, j]) == (d.reads, d.mult_passes, d.delay_ns)


def test_grid_validates_values():
    with pytest.raises(HwsimError, match=r"n_mult=0 must be an integer in \[1, 4294967296\]"):
        hardware_grid(ASIC65, n_mult=[0, 8])
    with pytest.raises(HwsimError, match="unknown grid field"):
        hardware_grid(ASIC65, banks=[1])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"k": 0}, "k=0 must be an integer >= 1"),
        ({"c_in": 6, "groups": 4}, "c_in=6 must be divisible by groups=4"),
        ({"formula": "eq10"}, "formula='eq10' must be one of eq7, eq8, eq9"),
        ({"kind": "attention"}, "kind='attention'"),
        ({"nnz": 10**9}, "nnz=1000000000 must be between 0"),
    ],
)
def test_layer_validation(kwargs, message):
    base = {"name": "x", "kind": "conv", "k": 3, "c_in": 8, "c_out": 8, "h_out": 4, "w_out": 4}
    with pytest.raises(HwsimError, match=message):
        LayerShape(**{**base, **kwargs})


def test_delay_arrays_are_integer_exact_for_huge_layers():
    huge = conv(3, 4096, 4096, 1)  # 150,994,944 weights; 8 * W still fits int64 exactly
    d = layer_delay(huge, ASIC65)
    out = delay_grid([huge], hardware_grid(ASIC65))
    assert d.reads == 150_994_944 // 8 and int(out.reads[0, 0]) == d.reads
    assert np.asarray(out.mult_passes).dtype == np.int64


def test_bitmap_is_charged_only_to_pruned_layers_of_a_model():
    hw = HardwareConfig(sparse_storage="bitmap")
    dense, pruned = conv(3, 64, 64, 8, name="dense"), conv(3, 64, 64, 8, name="pruned", nnz=3686)
    report = model_delay([dense, pruned], hw)
    assert [d.reads for d in report.layers] == [4608, 1037]  # 8 W / 64 dense; (8 nnz + W) / 64 with the map
    assert report.layers == tuple(layer_delay(layer, hw) for layer in (dense, pruned))
