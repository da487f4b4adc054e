"""Hardware input hardening: every field bounded so the arithmetic stays exact, TOML files complete and
small, ``--set`` / ``--grid`` / ``--input-size`` parsed strictly. Each bad input exits 2 with one line that
names the value and the allowed range; each good one gives the exact answer."""

from __future__ import annotations

import json
import math

import pytest

from hwsim.cli import main
from hwsim.delay import MAX_LAYER_MACS, MAX_LAYER_WEIGHTS, LayerShape, layer_delay, model_delay
from hwsim.errors import HwsimError
from hwsim.hardware import (
    FIELD_BOUNDS,
    MAX_TOML_BYTES,
    REQUIRED_FIELDS,
    HardwareConfig,
    apply_overrides,
    check_grid_size,
    get_preset,
    list_presets,
    load_hardware,
    load_toml,
    parse_grid_axis,
)

LAYER = "k=3,cin=64,cout=64,hout=32,wout=32"
BIG = "1" + "0" * 30  # a 31-digit number


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(list(args))
    out, err = capsys.readouterr()
    return exc.value.code, out, err


def assert_one_line_error(capsys, args, *fragments: str) -> str:
    code, out, err = run_cli(capsys, *args)
    assert code == 2, (code, out, err)
    assert err.startswith("hwsim: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err and out == ""
    for fragment in fragments:
        assert fragment in err, (fragment, err)
    return err


def toml_text(hw: HardwareConfig, **changes) -> str:
    values = {name: getattr(hw, name) for name in REQUIRED_FIELDS} | changes
    return "".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items())


# ------------------------------------------------------------------------------------ field bounds
@pytest.mark.parametrize("name", list(FIELD_BOUNDS))
def test_each_bound_is_inclusive_and_one_past_it_is_refused(name):
    lo, hi = FIELD_BOUNDS[name]
    assert getattr(HardwareConfig(**{name: hi}), name) == hi
    assert getattr(HardwareConfig(**{name: lo}), name) == lo
    above = hi + 1 if isinstance(hi, int) else math.nextafter(hi, math.inf)
    with pytest.raises(HwsimError, match=rf"{name}=\S+ must be an? (integer|number) in \["):
        HardwareConfig(**{name: above})


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        (f"n_mult={BIG}", f"n_mult={BIG} must be an integer in [1, 4294967296]"),  # was an OverflowError
        ("t_read_ns=1e308", "t_read_ns=1e+308 must be a number in [1e-06, 1e+09]"),  # was delay inf, nan
        ("t_mult_ns=inf", "t_mult_ns=inf must be a number in [1e-06, 1e+09]"),
        ("t_mult_ns=nan", "t_mult_ns=nan must be a number in [1e-06, 1e+09]"),
        ("t_read_ns=5e-324", "t_read_ns=5e-324 must be a number in [1e-06, 1e+09]"),
        ("b_w=65", "b_w=65 must be an integer in [1, 64]"),
        ("n_bank=" + "9" * 5000, "(5002 characters) must be an integer in [1, 65536]"),  # past int()'s limit
        ("zero_skip=maybe", "zero_skip='maybe' must be true or false"),
    ],
)
def test_out_of_range_override_is_one_line_exit_2(capsys, override, fragment):
    assert_one_line_error(capsys, ["delay", "--layer", LAYER, "--set", override], fragment)


def test_largest_allowed_values_give_finite_exact_delays():
    """At every upper bound, on the largest allowed layer, counts are exact and times finite."""
    lo = {name: FIELD_BOUNDS[name][0] for name in FIELD_BOUNDS}
    hi = {name: FIELD_BOUNDS[name][1] for name in FIELD_BOUNDS}
    layer = LayerShape("big", "conv", k=1, c_in=2**20, c_out=2**20, h_out=2**5, w_out=2**5)
    assert layer.weights == MAX_LAYER_WEIGHTS and layer.macs == MAX_LAYER_MACS
    for values in (lo, hi, {**lo, "b_w": 64, "t_read_ns": 1e9, "t_mult_ns": 1e9}):
        hw = HardwareConfig(**values)
        scalar = layer_delay(layer, hw)
        vector = model_delay([layer, layer], hw)
        reads = -(-(2**40 * hw.b_w) // (hw.b_io * hw.n_bank))
        passes = -(-(2**40) // hw.n_mult) * 2**10
        assert (scalar.reads, scalar.mult_passes) == (reads, passes)
        assert (vector.layers[1].reads, vector.layers[1].mult_passes) == (reads, passes)  # int64 path agrees
        assert vector.reads == 2 * reads and math.isfinite(vector.delay_ns) and vector.delay_ns > 0
        assert scalar.delay_ns == reads * hw.t_read_ns + passes * hw.t_mult_ns


def test_a_layer_past_the_size_limit_is_refused(capsys):
    with pytest.raises(HwsimError, match=r"weights exceed the 1099511627776 \(2\*\*40\)"):
        LayerShape("x", "conv", k=1, c_in=2**20, c_out=2**20 + 1)
    with pytest.raises(HwsimError, match=r"MACs exceed the 1125899906842624 \(2\*\*50\)"):
        LayerShape("x", "linear", k=1, c_in=2**20, c_out=2**20, h_out=2**10 + 1)
    assert_one_line_error(capsys, ["delay", "--layer", f"k=3,cin={BIG},cout=64,hout=32,wout=32"],
                          "a layer may have")


# ------------------------------------------------------------------------------------ --set parsing
@pytest.mark.parametrize(("word", "value"), [("yes", True), ("YES", True), ("on", True), ("1", True),
                                             ("true", True), ("no", False), ("off", False), ("0", False),
                                             ("False", False)])
def test_zero_skip_words(word, value):
    assert apply_overrides(get_preset("asic65"), [f"zero_skip={word}"]).zero_skip is value


def test_zero_skip_yes_changes_the_delay(capsys):
    """A pruned layer costs fewer multiply passes with zero skipping: `yes` must switch it on."""
    pruned = LayerShape("p", "conv", k=3, c_in=64, c_out=64, h_out=32, w_out=32, nnz=18432)
    hw = apply_overrides(get_preset("asic65"), ["zero_skip=yes"])
    assert layer_delay(pruned, hw).mult_passes == -(-18432 // 175) * 1024  # nnz, not W, in the multiply term
    code, out, _ = run_cli(capsys, "hw", "show", "--set", "zero_skip=yes", "--format", "json")
    assert code == 0 and json.loads(out)["zero_skip"] is True


# ------------------------------------------------------------------------------------ TOML files
def test_hw_path_without_toml_suffix_is_read_as_a_file(tmp_path, capsys):
    path = tmp_path / "myhw"  # no .toml suffix
    path.write_text(toml_text(get_preset("asic65"), n_mult=33))
    hw = load_hardware(str(path))
    assert (hw.n_mult, hw.name) == (33, "myhw")
    code, out, _ = run_cli(capsys, "delay", "--layer", LAYER, "--hw", str(path), "--format", "json")
    assert code == 0 and json.loads(out)["hardware"]["n_mult"] == 33
    assert json.loads(out)["totals"]["delay_ns"] == 4608 * 9 + -(-36864 // 33) * 1024 * 4


@pytest.mark.parametrize("missing", [(), ("n_mult",), REQUIRED_FIELDS])
def test_a_toml_file_must_set_every_hardware_field(tmp_path, capsys, missing):
    """Nothing is filled in silently from asic65: a partial or empty file names what it lacks."""
    path = tmp_path / "partial.toml"
    text = "".join(line for line in toml_text(get_preset("asic65"), b_w=6).splitlines(keepends=True)
                   if line.split(" = ")[0] not in missing)
    path.write_text(text)
    if not missing:
        assert load_toml(path).b_w == 6
        return
    with pytest.raises(HwsimError) as err:
        load_toml(path)
    assert f"does not set {', '.join(missing)}:" in str(err.value) and str(path) in str(err.value)
    assert_one_line_error(capsys, ["hw", "show", str(path)], f"does not set {', '.join(missing)}")


def test_missing_and_bad_fields_are_reported_together(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("n_bank = -4\n")
    with pytest.raises(HwsimError) as err:
        load_toml(path)
    assert "n_bank=-4 must be an integer in [1, 65536]" in str(err.value)
    assert "does not set b_io, b_w, n_mult, t_read_ns, t_mult_ns" in str(err.value)


def test_an_oversized_file_is_refused_before_parsing(tmp_path, capsys):
    path = tmp_path / "huge.toml"
    with path.open("w") as handle:  # a valid preset followed by 54 MB of comments (it used to hang)
        handle.write(toml_text(get_preset("asic65")))
        handle.write("# padding padding padding padding padding padding padding padding padding pad\n" * 700_000)
    err = assert_one_line_error(capsys, ["hw", "show", str(path)], "larger than the 64 KiB allowed")
    assert str(path) in err
    just_fits = tmp_path / "fits.toml"
    body = toml_text(get_preset("asic65"), n_mult=7)
    just_fits.write_text(body + "#" * (MAX_TOML_BYTES - len(body) - 1) + "\n")
    assert just_fits.stat().st_size == MAX_TOML_BYTES and load_toml(just_fits).n_mult == 7


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("a = " + "[" * 20000, "malformed TOML"),  # RecursionError inside tomllib
        ("n_mult = " + "9" * 5000, "malformed TOML"),  # ValueError: past Python's int digit limit
        ("n_mult = 1e400\n", "n_mult=inf must be an integer in [1, 4294967296]"),
        ("t_read_ns = inf\n", "t_read_ns=inf must be a number in"),
        ('"a\\nb" = 1\n', "unknown key(s) 'a\\nb' in"),  # a key with a newline stays on one line
        ("n_mult = " + "9" * 41 + "\n", "n_mult=999999999999999999...999999999999999999 (41 characters)"),
    ],
)
def test_hostile_toml_is_one_line(tmp_path, capsys, text, fragment):
    path = tmp_path / "hostile.toml"
    path.write_text(text)
    assert_one_line_error(capsys, ["hw", "show", str(path)], fragment)


def test_a_directory_is_not_a_hardware_file(tmp_path, capsys):
    assert_one_line_error(capsys, ["hw", "show", str(tmp_path)], "is not a regular file")


# ------------------------------------------------------------------------------------ every preset
@pytest.mark.parametrize("name", list_presets())
def test_every_preset_is_complete_in_range_and_round_trips(name, tmp_path, capsys):
    hw = get_preset(name)
    code, out, _ = run_cli(capsys, "hw", "show", name, "--format", "json")
    assert code == 0 and json.loads(out) == hw.as_dict()
    assert hw.name == name and hw.description
    for field, (lo, hi) in FIELD_BOUNDS.items():
        assert lo <= getattr(hw, field) <= hi
    copy = tmp_path / f"{name}_copy.toml"
    copy.write_text(toml_text(hw) + f"sparse_storage = {json.dumps(hw.sparse_storage)}\n"
                    f"zero_skip = {json.dumps(hw.zero_skip)}\n")
    assert load_toml(copy).as_dict() == {**hw.as_dict(), "name": f"{name}_copy", "description": ""}


# ------------------------------------------------------------------------------------ --grid
@pytest.mark.parametrize(
    ("text", "values"),
    [("n_mult=64:256:64", [64, 128, 192, 256]), ("n_mult=8:8:1", [8]), ("n_bank=1,2,4", [1, 2, 4]),
     ("t_read_ns=1:2:0.25", [1.0, 1.25, 1.5, 1.75, 2.0]), ("t_mult_ns=0.1:0.3:0.1", [0.1, 0.2, 0.3])],
)
def test_grid_axis_values(text, values):
    assert parse_grid_axis(text)[1] == values


@pytest.mark.parametrize(
    ("axis", "fragment"),
    [
        ("n_mult=8:1:1", "START=8 is above STOP=1, so the range is empty"),  # was an empty pandas frame
        ("n_mult=1:10:0", "STEP=0 must be > 0"),
        ("n_mult=1:99999999999:1", "expands to 99999999999 values; at most 100000 per axis"),
        ("n_mult=1:2", "a range is START:STOP:STEP"),
        ("t_read_ns=1:inf:1", "must be finite numbers"),
        ("banks=1,2", "cannot be swept; valid fields: b_io"),
        (f"n_mult=1,{BIG}", f"n_mult={BIG} must be an integer in [1, 4294967296]"),
    ],
)
def test_bad_grid_is_one_line_exit_2(capsys, axis, fragment):
    assert_one_line_error(capsys, ["sweep", "small_cnn", "--dataset", "mnist", "--grid", axis], fragment)


def test_a_grid_field_given_twice_is_refused_not_overwritten(capsys):
    assert_one_line_error(capsys, ["sweep", "small_cnn", "--dataset", "mnist", "--grid", "n_mult=1:3:1",
                                   "--grid", "n_mult=4"], "--grid n_mult is given twice")


def test_an_empty_hw_is_refused_not_read_as_the_default(capsys):
    assert_one_line_error(capsys, ["hw", "show", ""], "--hw is empty; give a preset name (asic65")
    assert load_hardware(None).name == "asic65"


def test_grid_size_is_bounded_before_it_is_built(capsys):
    assert check_grid_size({"n_mult": [1] * 1000, "n_bank": [1] * 1000}) == 1_000_000
    assert_one_line_error(capsys, ["sweep", "small_cnn", "--dataset", "mnist", "--grid", "n_mult=1:100000:1",
                                   "--grid", "n_bank=1:101:1"], "spans 10100000 configurations")


# ------------------------------------------------------------------------------------ --input-size
def test_input_size_takes_c_and_one_to_three_spatial_sizes(capsys):
    """SPEC 5.2: C,L / C,H,W / C,D,H,W; HxW and H keep the dataset's channels; anything else is refused."""
    from hwsim.cli.modelopts import parse_input_size

    assert parse_input_size("3,32") == (3, 32) and parse_input_size("2,4,6,8") == (2, 4, 6, 8)
    assert parse_input_size("20x24", 1) == (1, 20, 24) and parse_input_size("20", 3) == (3, 20, 20)
    for bad in ("3,0", "3,32,32,32,32", "3,32x32", "2x3x4"):
        assert_one_line_error(capsys, ["count", "small_cnn", "--input-size", bad], f"--input-size {bad!r}",
                              "C and one to three")


@pytest.mark.parametrize(("text", "shape"), [("1,20,24", (1, 20, 24)), ("20x24", (1, 20, 24)), ("20", (1, 20, 20))])
def test_input_size_accepted_forms(capsys, text, shape):
    code, out, _ = run_cli(capsys, "count", "small_cnn", "--dataset", "mnist", "--input-size", text, "--format",
                           "json")
    assert code == 0 and tuple(json.loads(out)["input_size"]) == shape


def test_huge_input_size_is_refused_before_tracing(capsys):
    assert_one_line_error(capsys, ["count", "small_cnn", "--input-size", "3,99999,99999"],
                          "C and each spatial size must be in [1, 4096]")



# ------------------------------------------------------------------------------------ fuzz
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_FIELDS = st.sampled_from([*FIELD_BOUNDS, "sparse_storage", "zero_skip", "bogus", ""])
_VALUES = st.one_of(st.text(max_size=30), st.integers().map(str), st.floats().map(repr),
                    st.sampled_from(["1e308", "-0", "inf", "nan", "0x10", "1_000", " 7 ", "9" * 400]))


@settings(max_examples=300, deadline=None)
@given(field=_FIELDS, value=_VALUES)
def test_any_override_is_a_valid_config_or_one_hwsim_error(field, value):
    try:
        hw = apply_overrides(get_preset("asic65"), [f"{field}={value}"])
    except HwsimError as exc:
        assert "\n" not in str(exc) and len(str(exc)) < 600
        return
    for name, (lo, hi) in FIELD_BOUNDS.items():
        assert lo <= getattr(hw, name) <= hi


@settings(max_examples=200, deadline=None)
@given(text=st.one_of(st.text(max_size=200), st.binary(max_size=200).map(lambda b: b.decode("latin-1"))))
def test_any_toml_text_is_a_valid_config_or_one_hwsim_error(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("fuzz") / "hw.toml"
    path.write_text(text, encoding="utf-8")
    try:
        hw = load_toml(path)
    except HwsimError as exc:
        assert "\n" not in str(exc)
        return
    for name, (lo, hi) in FIELD_BOUNDS.items():
        assert lo <= getattr(hw, name) <= hi


def test_an_empty_table_prints_a_sentence():
    from hwsim.output import render_rows

    assert render_rows([], "table") == "(no rows to show)"
