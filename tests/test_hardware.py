import dataclasses

import pytest

from hwsim.errors import HwsimError
from hwsim.hardware import HardwareConfig, apply_overrides, get_preset, list_presets, load_hardware, load_toml


def test_asic65_has_the_papers_constants_and_says_where_they_come_from():
    hw = get_preset("asic65")
    assert (hw.b_io, hw.b_w, hw.n_bank, hw.n_mult, hw.t_read_ns, hw.t_mult_ns) == (16, 8, 4, 175, 9.0, 4.0)
    assert (hw.sparse_storage, hw.zero_skip) == ("dense", False)
    assert "FLOAT paper" in hw.description and "not independently published" in hw.description
    assert hw == HardwareConfig(name="asic65", description=hw.description, e_read_pj=274.0, e_mult_pj=0.38,
                                e_add_pj=0.057, e_acc_pj=0.19)
    assert (hw.e_rng_pj, hw.e_bits) == (0.0, 8)  # the defaults of the energy group, said in the preset file
    assert "asic65" in list_presets()


def test_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        get_preset("asic65").n_mult = 3


def test_validation_reports_every_bad_field_with_its_range():
    with pytest.raises(HwsimError) as err:
        HardwareConfig(b_io=0, n_bank=-1, n_mult=2.5, t_read_ns=0, t_mult_ns=float("nan"), sparse_storage="csr")
    msg = str(err.value)
    for fragment in ("b_io=0 must be an integer in [1, 65536]", "n_bank=-1 must be an integer in [1, 65536]",
                     "n_mult=2.5 must be an integer in [1, 4294967296]",
                     "t_read_ns=0 must be a number in [1e-06, 1e+09]",
                     "t_mult_ns=nan", "sparse_storage='csr' must be one of dense, bitmap"):
        assert fragment in msg
    assert "\n" not in msg


def test_bools_are_not_integers():
    with pytest.raises(HwsimError, match="n_bank=True"):
        HardwareConfig(n_bank=True)


def test_overrides_are_typed_and_validated():
    hw = apply_overrides(get_preset("asic65"), ["n_mult=256", "t_read_ns=2.5", "zero_skip=true"])
    assert (hw.n_mult, hw.t_read_ns, hw.zero_skip, hw.b_w) == (256, 2.5, True, 8)
    with pytest.raises(HwsimError, match="unknown hardware field 'banks'.*valid fields: b_io"):
        apply_overrides(hw, ["banks=3"])
    with pytest.raises(HwsimError, match="n_bank=-2 must be an integer in \\[1, 65536\\]"):
        apply_overrides(hw, ["n_bank=-2"])
    with pytest.raises(HwsimError, match="n_bank='two'"):
        apply_overrides(hw, ["n_bank=two"])
    with pytest.raises(HwsimError, match="expected KEY=VALUE"):
        apply_overrides(hw, ["n_bank"])


def test_toml_user_preset(hw6_path):
    hw = load_toml(hw6_path)
    assert (hw.b_io, hw.b_w, hw.n_bank, hw.n_mult, hw.name) == (16, 6, 5, 100, "hw_6bit")
    assert load_hardware(str(hw6_path), ["b_w=4"]).b_w == 4


def test_unknown_preset_lists_the_valid_ones():
    with pytest.raises(HwsimError, match="unknown hardware preset 'asic7'; valid presets: asic65"):
        load_hardware("asic7")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("b_io = 16\nb_w = ", "malformed TOML in"),
        ("b_io = 16\nbanks = 4\n", "unknown key(s) banks in"),
        ("n_bank = -4\n", "n_bank=-4 must be an integer in [1, 65536]"),
        ('t_read_ns = "fast"\n', "t_read_ns='fast' must be a number in [1e-06, 1e+09]"),
    ],
)
def test_malformed_toml_names_the_file_and_the_problem(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(HwsimError) as err:
        load_toml(path)
    assert message in str(err.value) and str(path) in str(err.value)


def test_missing_file():
    with pytest.raises(HwsimError, match="does not exist"):
        load_hardware("no/such/file.toml")
