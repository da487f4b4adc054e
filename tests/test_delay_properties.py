"""Hypothesis properties of Eq. 7-9."""

from fractions import Fraction

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from hwsim.delay import LayerShape, delay_arrays, formula_codes, layer_arrays, layer_delay, model_delay
from hwsim.hardware import HardwareConfig

small = st.integers(min_value=1, max_value=64)
channels = st.integers(min_value=1, max_value=2048)
# Times in quarter-ns steps: representable exactly, so every product and sum is exact in float64.
times = st.integers(min_value=1, max_value=400).map(lambda q: q / 4)


@st.composite
def hardware(draw):
    return HardwareConfig(b_io=draw(st.integers(1, 256)), b_w=draw(st.integers(1, 32)), n_bank=draw(st.integers(1, 64)),
                          n_mult=draw(st.integers(1, 4096)), t_read_ns=draw(times), t_mult_ns=draw(times))


@st.composite
def layers(draw, formula=None):
    formula = formula or draw(st.sampled_from(["eq7", "eq8", "eq9"]))
    c_out = draw(channels)
    return LayerShape("l", "conv", k=draw(st.integers(1, 7)), c_in=draw(channels), c_out=c_out,
                      h_out=draw(small), w_out=draw(small), formula=formula,
                      film_dim=draw(st.sampled_from([0, 1, 128])), film_channels=c_out if formula == "eq9" else 0)


def exact(layer: LayerShape, hw: HardwareConfig) -> Fraction:
    """Eq. 7-9 with Fraction arithmetic and the reads term written as ceil(n / ((b_io / b_w) n_bank))."""
    def ceil(x: Fraction) -> int:
        return -(-x.numerator // x.denominator)

    w, f = layer.weights, layer.film_weights
    words = Fraction(hw.b_io, hw.b_w) * hw.n_bank
    reads = ceil(Fraction(w + f) / words)
    passes = ceil(Fraction(w, hw.n_mult)) * layer.positions
    if layer.formula == "eq8":
        passes += ceil(Fraction(w, hw.n_mult))
    if layer.formula == "eq9":
        passes += ceil(Fraction(f, hw.n_mult))
    return reads * Fraction(hw.t_read_ns) + passes * Fraction(hw.t_mult_ns)


@settings(max_examples=300, deadline=None)
@given(layers(), hardware())
def test_delay_is_non_negative_and_exact(layer, hw):
    d = layer_delay(layer, hw)
    assert d.delay_ns >= 0
    assert Fraction(d.delay_ns) == exact(layer, hw)


def with_(layer: LayerShape, **changes) -> LayerShape:
    values = {**layer.__dict__, **changes}
    if values["formula"] == "eq9":
        values["film_channels"] = values["c_out"]
    return LayerShape(**values)


@settings(max_examples=200, deadline=None)
@given(layers(), hardware(), st.sampled_from(["k", "c_in", "c_out", "h_out", "w_out"]), st.integers(1, 5))
def test_non_decreasing_in_shape(layer, hw, field, step):
    bigger = with_(layer, **{field: getattr(layer, field) + step})
    assert layer_delay(bigger, hw).delay_ns >= layer_delay(layer, hw).delay_ns


@settings(max_examples=200, deadline=None)
@given(layers(), hardware(), st.sampled_from(["t_read_ns", "t_mult_ns", "n_mult", "n_bank", "b_io"]),
       st.integers(1, 7))
def test_monotone_in_hardware(layer, hw, field, step):
    faster = HardwareConfig(**{**hw.as_dict(), field: getattr(hw, field) + step})
    before, after = layer_delay(layer, hw).delay_ns, layer_delay(layer, faster).delay_ns
    if field.startswith("t_"):
        assert after >= before  # slower timings never help
    else:
        assert after <= before  # more multipliers, banks or bandwidth never hurt


@settings(max_examples=200, deadline=None)
@given(layers("eq7"), hardware(), st.sampled_from([0, 1, 128]))
def test_relations_between_the_three_equations(layer, hw, d):
    t = layer_delay(layer, hw)
    t_f = layer_delay(with_(layer, formula="eq8"), hw)
    t_o = layer_delay(with_(layer, formula="eq9", film_dim=d), hw)
    assert t_f.delay_ns - t.delay_ns == -(-layer.weights // hw.n_mult) * hw.t_mult_ns
    assert t_f.reads == t.reads
    assert t_o.delay_ns >= t.delay_ns
    no_film = LayerShape(**{**layer.__dict__, "formula": "eq9", "film_dim": d, "film_channels": 0})
    assert no_film.film_weights == 0 and layer_delay(no_film, hw).delay_ns == t.delay_ns


@settings(max_examples=300, deadline=None)
@given(layers(), hardware())
def test_reads_term_equals_the_papers_fraction_form(layer, hw):
    d = layer_delay(layer, hw)
    words = Fraction(hw.b_io, hw.b_w) * hw.n_bank
    n = Fraction(layer.weights + layer.film_weights)
    assert d.reads == -(-(n / words).numerator // (n / words).denominator)


@settings(max_examples=50, deadline=None)
@given(st.lists(layers(), min_size=1, max_size=12), st.lists(hardware(), min_size=1, max_size=8))
def test_vectorised_equals_scalar_on_random_batches(batch, configs):
    arrays = layer_arrays(batch)
    col = lambda a: a[:, None]  # noqa: E731
    hw_field = lambda name: np.array([getattr(h, name) for h in configs])  # noqa: E731
    out = delay_arrays(col(arrays.weights), col(arrays.positions), col(arrays.formula), col(arrays.film),
                       **{name: hw_field(name) for name in ("b_io", "b_w", "n_bank", "n_mult", "t_read_ns", "t_mult_ns")})
    for j, hw in enumerate(configs):
        report = model_delay(batch, hw)
        for i, layer in enumerate(batch):
            d = layer_delay(layer, hw)
            assert (int(out.reads[i, j]), int(out.mult_passes[i, j]), float(out.delay_ns[i, j])) == (
                d.reads, d.mult_passes, d.delay_ns)
            assert report.layers[i] == d
    assert formula_codes(["eq7", "eq8", "eq9"]).tolist() == [0, 1, 2]
