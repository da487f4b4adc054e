"""CLI of the foundation: `hwsim --version`, `hwsim hw ...`, `hwsim delay --layer ...`."""

import json

import pytest
from click.testing import CliRunner

from hwsim import __version__
from hwsim.cli import cli, main

LAYER = "k=3,cin=64,cout=64,hout=32,wout=32"


def run(*args):
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result


def error_line(capsys, *args):
    """Run through the console entry point; return (exit code, stderr) for a user error."""
    with pytest.raises(SystemExit) as exc:
        main(list(args))
    err = capsys.readouterr().err
    return exc.value.code, err


def test_version_and_help():
    assert run("--version").output.strip() == f"hwsim, version {__version__}"
    result = run("--help")
    assert result.exit_code == 0 and "delay" in result.output and "hw" in result.output


def test_hw_list_and_show():
    result = run("hw", "list", "--format", "csv")
    assert result.exit_code == 0
    assert result.output.splitlines()[1].startswith("asic65,16,8,4,175,9.0,4.0,dense,False,")
    shown = json.loads(run("hw", "show", "asic65", "--set", "n_mult=256", "--format", "json").output)
    assert shown["n_mult"] == 256 and shown["b_io"] == 16


def test_hw_show_file(hw6_path):
    result = run("hw", "show", str(hw6_path))
    assert result.exit_code == 0
    assert "b_w" in result.output and "bits per stored weight" in result.output and " 6 " in result.output


@pytest.mark.parametrize(("variant", "delay"), [("base", 905_728), ("float", 906_572), ("oat", 924_684)])
def test_delay_of_a_layer_in_every_format(variant, delay):
    doc = json.loads(run("delay", "--layer", LAYER, "--variant", variant, "--format", "json").output)
    assert set(doc) >= {"model", "variant", "input_size", "hardware", "conventions", "layers", "totals"}
    assert doc["hardware"]["n_mult"] == 175 and doc["variant"] == variant
    layer = doc["layers"][0]
    assert {k: layer[k] for k in ("k", "c_in", "c_out", "h_out", "w_out", "groups", "params", "macs")} == {
        "k": 3, "c_in": 64, "c_out": 64, "h_out": 32, "w_out": 32, "groups": 1, "params": 36864,
        "macs": 36864 * 1024}
    assert layer["formula"] == {"base": "eq7", "float": "eq8", "oat": "eq9"}[variant]
    assert layer["delay_ns"] == delay == doc["totals"]["delay_ns"]
    assert layer["read_ns"] + layer["mult_ns"] == delay
    csv = run("delay", "--layer", LAYER, "--variant", variant, "--format", "csv").output.splitlines()
    assert csv[0].split(",")[-1] == "delay_ns" and csv[1].split(",")[-1] == f"{delay:.1f}"
    table = run("delay", "--layer", LAYER, "--variant", variant).output
    assert f"{delay}" in table and "asic65" in table
    md = run("delay", "--layer", LAYER, "--variant", variant, "--format", "markdown").output
    assert md.count("|") > 20 and str(delay) in md


def test_delay_with_overrides_and_film_dim(tmp_path):
    out = tmp_path / "d.json"
    result = run("delay", "--layer", LAYER, "--variant", "oat", "--film-dim", "128", "--set", "n_mult=64",
                 "--format", "json", "--output", str(out))
    assert result.exit_code == 0 and result.output == ""
    doc = json.loads(out.read_text())
    # F = 32768; reads 8704; passes 576 x 1024 + ceil(32768 / 64) = 512
    assert doc["layers"][0]["delay_ns"] == 8704 * 9 + (576 * 1024 + 512) * 4


def test_delay_under_the_6bit_preset(hw6_path):
    doc = json.loads(run("delay", "--layer", "k=1,cin=16,cout=40,hout=8,wout=8", "--hw", str(hw6_path),
                         "--format", "json").output)
    assert doc["layers"][0]["delay_ns"] == 1376 and doc["hardware"]["b_w"] == 6


def test_linear_layer():
    doc = json.loads(run("delay", "--layer", "kind=linear,cin=512,cout=10,name=fc", "--format", "json").output)
    assert doc["layers"][0]["name"] == "fc" and doc["layers"][0]["delay_ns"] == 5880


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["delay", "--layer", LAYER, "--hw", "asic7"], "unknown hardware preset 'asic7'; valid presets: asic65"),
        (["delay", "--layer", LAYER, "--set", "n_bank=-4"], "n_bank=-4 must be an integer in [1, 65536]"),
        (["delay", "--layer", LAYER, "--set", "banks=4"], "unknown hardware field 'banks'"),
        (["delay", "--layer", "k=3;cin=64"], "malformed --layer"),
        (["delay", "--layer", "k=3,cin=64,cout=64,depth=2"], "unknown key 'depth'"),
        (["delay", "--layer", LAYER, "--variant", "bogus"], "unknown variant 'bogus'"),
        (["delay", "--layer", LAYER, "--format", "xml"], "'xml' is not one of"),
        (["hw", "show", "nope"], "unknown hardware preset 'nope'"),
        (["frobnicate"], "No such command 'frobnicate'"),
    ],
)
def test_bad_input_exits_2_with_one_line(capsys, args, fragment):
    code, err = error_line(capsys, *args)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("hwsim: error: ")
    assert fragment in err


def test_malformed_toml_names_the_file(capsys, tmp_path):
    bad = tmp_path / "broken.toml"
    bad.write_text("n_bank = [\n")
    code, err = error_line(capsys, "delay", "--layer", LAYER, "--hw", str(bad))
    assert code == 2 and "malformed TOML" in err and "broken.toml" in err and err.count("\n") == 1
