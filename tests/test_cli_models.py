"""CLI of the model-level commands: models, count, delay MODEL, compare, sweep; output and bad input."""

import json

import pytest
from click.testing import CliRunner

from hwsim.cli import cli, main
from hwsim.cost import ModelSetting, analyze
from hwsim.hardware import HardwareConfig


def invoke(*args):
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_models_lists_the_registry_and_datasets():
    doc = json.loads(invoke("models", "--format", "json"))
    assert [m["model"] for m in doc["models"]] == sorted(m["model"] for m in doc["models"])
    assert {"resnet34", "wrn16_8", "wrn40_2", "small_cnn"} <= {m["model"] for m in doc["models"]}
    assert {"dataset": "stl10", "input_size": "3x96x96", "classes": 10} in doc["datasets"]
    assert "oat-slim" in doc["variants"]


def test_delay_json_follows_spec8():
    doc = json.loads(invoke("delay", "resnet34", "--variant", "oat", "--format", "json"))
    assert {"model", "variant", "input_size", "hardware", "conventions", "layers", "totals"} <= set(doc)
    assert doc["model"] == "resnet34" and doc["input_size"] == [3, 32, 32]
    assert set(doc["hardware"]) >= {"b_io", "b_w", "n_bank", "n_mult", "t_read_ns", "t_mult_ns"}
    fields = {"name", "kind", "k", "c_in", "c_out", "h_out", "w_out", "groups", "params", "macs", "formula",
              "read_ns", "mult_ns", "delay_ns"}
    assert all(fields <= set(layer) for layer in doc["layers"])
    assert [layer["formula"] for layer in doc["layers"]].count("eq9") == 33
    assert doc["totals"]["params"] == 31_403_978 and doc["totals"]["macs"] == 1_159_402_496
    assert doc["totals"]["delay_ns"] == sum(layer["delay_ns"] for layer in doc["layers"]) == 62_022_308
    stem = doc["layers"][0]
    # stem under Eq. 9 (d = 1, C = 64): reads ceil(8 (1728 + 16512) / 64) = 2280; passes 10 * 1024 + 95
    assert (stem["name"], stem["read_ns"], stem["mult_ns"]) == ("conv1", 2280 * 9, (10 * 1024 + 95) * 4)


def test_count_formats_agree():
    doc = json.loads(invoke("count", "wrn40_2", "--variant", "oat", "--format", "json", "--ops", "all"))
    assert doc["totals"]["params"] == 3_226_682
    assert doc["totals"]["ops"]["film_mlp_macs"] > 0 and doc["totals"]["ops"]["bn"] > 0
    assert doc["unsupported_ops"] == {}
    csv = invoke("count", "wrn40_2", "--variant", "oat", "--format", "csv").splitlines()
    assert csv[0].startswith("name,kind,k,stride,groups,c_in,c_out")
    assert len(csv) - 1 == len(doc["layers"])
    table = invoke("count", "wrn40_2", "--variant", "oat")
    assert "3226682" in table and "params[film]" in table and "multiply-accumulates" in table
    md = invoke("count", "wrn40_2", "--variant", "oat", "--format", "markdown")
    assert md.startswith("**wrn40_2") and "| params " in md


def test_hardware_overrides_reach_the_model_delay(tmp_path, hw6_path):
    a = json.loads(invoke("delay", "resnet34", "--variant", "float", "--set", "n_mult=256", "--format", "json"))
    b = json.loads(invoke("delay", "resnet34", "--variant", "float", "--hw", str(hw6_path), "--format", "json"))
    assert a["hardware"]["n_mult"] == 256 and b["hardware"]["b_w"] == 6
    ref = analyze(ModelSetting("resnet34", "float"), HardwareConfig(n_mult=256))
    assert a["totals"]["delay_ns"] == ref.delay.delay_ns
    assert b["totals"]["delay_ns"] != a["totals"]["delay_ns"]


def test_compare_rows_match_single_commands():
    doc = json.loads(invoke("compare", "resnet34", "--variants", "base,float,oat,floats-c", "--format", "json"))
    rows = {row["variant"]: row for row in doc["variants"]}
    oat = json.loads(invoke("delay", "resnet34", "--variant", "oat", "--format", "json"))["totals"]
    assert rows["oat"]["delay_ns"] == oat["delay_ns"] and rows["oat"]["params"] == oat["params"]
    assert rows["base"]["norm_delay"] == 1.0
    assert rows["oat"]["norm_delay"] == oat["delay_ns"] / rows["base"]["delay_ns"]
    assert rows["floats-c"]["density"] == 0.5 and rows["floats-c"]["memory_bytes"] < rows["base"]["memory_bytes"]


def test_sweep_agrees_with_delay():
    doc = json.loads(invoke("sweep", "resnet34", "--variant", "oat", "--grid", "n_mult=100,175",
                            "--grid", "n_bank=2:4:2", "--format", "json"))
    assert [(r["n_bank"], r["n_mult"]) for r in doc["rows"]] == [(2, 100), (2, 175), (4, 100), (4, 175)]
    assert doc["rows"][3]["delay_ns"] == 62_022_308  # asic65 itself
    other = json.loads(invoke("delay", "resnet34", "--variant", "oat", "--set", "n_bank=2", "--set", "n_mult=100",
                              "--format", "json"))
    assert doc["rows"][0]["delay_ns"] == other["totals"]["delay_ns"]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["count", "resnet99"], "unknown model 'resnet99'; valid: preact_resnet18, resnet18, resnet34"),
        (["delay", "resnet34", "--variant", "noisy"], "unknown variant 'noisy'; valid: base, float, oat"),
        (["count", "resnet34", "--dataset", "imagenet21k"], "unknown dataset 'imagenet21k'; valid: cifar10"),
        (["count", "resnet34", "--density", "0.5"],
         "--density applies only to variants floats-i, floats-c, floats-slim; not to base"),
        (["delay", "resnet34", "--variant", "float", "--width", "0.5"],
         "--width applies only to variants float-slim, oat-slim, floats-slim; not to float"),
        (["count", "resnet34", "--variant", "oat", "--widths", "0.25,1"],
         "--widths applies only to variants float-slim, oat-slim, floats-slim; not to oat"),
        (["count", "resnet34", "--variant", "floats-i", "--film-dim", "128"],
         "--film-dim applies only to variants oat, oat-slim; not to floats-i"),
        (["delay", "--layer", "k=3,cin=4,cout=4", "--film-dim", "128"], "--film-dim applies only to variants oat"),
        (["compare", "resnet34", "--variants", "base,float", "--density", "0.5"],
         "--density applies only to variants floats-i, floats-c, floats-slim; not to base, float"),
        (["count", "resnet34", "--variant", "oat-slim", "--width", "0.7"], "--width 0.7 is not one of the widths"),
        (["count", "resnet34", "--variant", "floats-i", "--density", "1.5"], "--density 1.5 must lie in (0, 1]"),
        (["count", "resnet34", "--variant", "floats-i", "--density", "0"], "must lie in (0, 1]"),
        (["count", "no_colon_here.py"], "unknown model 'no_colon_here.py'"),
        (["count", "a:b:c"], "malformed model factory 'a:b:c'"),
        (["count", "missing/file.py:make"], "model factory file 'missing/file.py' does not exist"),
        (["delay", "resnet34", "--variant", "oat", "--film-dim", "3"], "film_dim must be 1"),
        (["count", "resnet34", "--variant", "oat", "--film-dim", "100000"], "an integer in [6, 4096]"),
        (["count", "resnet34", "--variant", "float-slim", "--widths", "0.5,0.5"], "widths must be distinct"),
        (["count", "resnet34", "--variant", "float-slim", "--widths", "0.5"], "needs at least two widths"),
        (["count", "resnet34", "--variant", "floats-i", "--density", "1e-30"],
         "density 1e-30 keeps none of the 21,258,240 prunable weights"),
        (["count", "small_cnn", "--variant", "floats-c", "--density", "1e-9"], "keeps no whole input channel"),
        (["count", "resnet34", "--bn", "dual"], "--bn applies only to variants float"),
        (["count", "resnet34", "--dataset", ""], "--dataset is empty"),
        (["count", "resnet34", "--variant", "float-slim", "--widths", " "], "--widths is empty"),
        (["compare", "resnet34", "--variants", "base,base"], "must name distinct variants, each once"),
        (["compare", "resnet34", "--variants", ""], "must name distinct variants"),
        (["count", "resnet34", "-o", ""], "'--output' / '-o': is empty"),
        (["sweep", "resnet34", "--grid", "n_mult=1,2", "--set", "n_mult=5"], "--set n_mult conflicts with --grid"),
        (["delay", "--layer", "k=3,cin=4,cout=4,hout=8,wout=8", "--dataset", "svhn"],
         "--dataset applies to a MODEL, not to --layer shapes"),
        (["delay", "--layer", "k=3,cin=4,cout=4,hout=8,wout=8", "--input-size", "3,64,64"],
         "--input-size applies to a MODEL"),
        (["compare", "resnet34", "--variants", "base,bogus"], "unknown variant 'bogus'"),
        (["sweep", "resnet34", "--grid", "n_mult=0,8"], "n_mult=0 must be an integer in [1, 4294967296]"),
        (["count", "resnet34", "--input-size", "3,x,3"], "--input-size '3,x,3'"),
        # a 3-D conv needs both kd and dout: without dout it was silently costed at dout = 1
        (["delay", "--layer", "kd=3,kh=3,kw=3,cin=16,cout=16,hout=8,wout=8"], "missing dout"),
        (["delay", "--layer", "k=3,cin=16,cout=16,dout=4,hout=8,wout=8"], "missing kd"),
        # a zoo model takes images: C,L was broadcast by its normalisation into (1, 4, 4, 130) and costed
        (["count", "resnet18", "--input-size", "4,130"], "--input-size '4,130': resnet18 takes images"),
        (["delay", "small_cnn", "--input-size", "32,32"], "--input-size '32,32': small_cnn takes images"),
        (["count", "resnet18", "--input-size", "3,8,16,16"], "--input-size '3,8,16,16': resnet18 takes images"),
    ],
)
def test_bad_input_exits_2_with_one_line(capsys, args, fragment):
    with pytest.raises(SystemExit) as exc:
        main(args)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("\n") == 1 and fragment in err


def test_unreadable_masks_and_a_model_that_cannot_take_its_input_exit_2(capsys, tmp_path):
    script = tmp_path / "run.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    net = tmp_path / "net.py"
    net.write_text("import torch.nn as nn\n\ndef make():\n    return nn.Sequential(nn.Conv2d(5, 8, 3), nn.Flatten())\n")
    for args, fragment in (
            (["count", "small_cnn", "--variant", "floats-i", "--masks", str(script)],
             "not a file of tensors torch loads with weights_only=True"),
            (["count", f"{net}:make", "--no-cache"], "expected input[1, 3, 32, 32] to have 5 channels"),
            (["count", f"{net}:make", "--no-cache", "--input-size", "3,200,200"], "to have 5 channels")):  # meta
        with pytest.raises(SystemExit) as exc:
            main(args)
        err = capsys.readouterr().err
        assert exc.value.code == 2 and err.count("\n") == 1 and fragment in err, err


def test_bare_hwsim_prints_its_help_and_a_user_file_that_exits_is_an_error(capsys, tmp_path):
    with pytest.raises(SystemExit) as exc:
        main([])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.startswith("Usage: hwsim [OPTIONS] COMMAND") and "\n  count " in err
    quits = tmp_path / "quits.py"
    quits.write_text("import sys\nsys.exit(0)\n")
    with pytest.raises(SystemExit) as exc:
        main(["count", f"{quits}:make"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "failed: SystemExit: 0" in err and err.count("\n") == 1


def test_a_factory_that_raises(capsys, tmp_path):
    path = tmp_path / "net.py"
    path.write_text("def make():\n    raise RuntimeError('weights not found')\n")
    with pytest.raises(SystemExit) as exc:
        main(["count", f"{path}:make"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("\n") == 1
    assert "raised RuntimeError: weights not found" in err


@pytest.mark.parametrize(("dataset", "size", "classes"), [("imagenet", 224, 1000), ("tinyimagenet", 64, 200)])
def test_dataset_presets_set_input_size_and_classes(dataset, size, classes):
    out = CliRunner().invoke(cli, ["count", "small_cnn", "--dataset", dataset, "--format", "json"])
    assert out.exit_code == 0, out.output
    doc = json.loads(out.output)
    assert doc["setting"]["dataset"] == dataset and list(doc["input_size"]) == [3, size, size]
    assert doc["layers"][0]["h_out"] == size and doc["layers"][-1]["c_out"] == classes
    custom = json.loads(CliRunner().invoke(cli, ["count", "small_cnn", "--input-size", "48", "--format",
                                                 "json"]).output)
    assert custom["setting"]["dataset"] == "custom" and custom["layers"][0]["h_out"] == 48


def test_masks_from_a_run_without_masks_is_refused_as_such(capsys, tmp_path):
    """A pgd-at run of variant base has no masks: the refusal said "holds the masks of a 'base' run; cost it as
    --variant base", advice that --masks then refuses ("applies only to masked variants")."""
    run = tmp_path / "pgdat"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.pt").write_bytes(b"")
    (run / "config.json").write_text(json.dumps({"variant": "base", "density": 1.0}))
    with pytest.raises(SystemExit) as exc:
        main(["count", "small_cnn", "--variant", "floats-i", "--dataset", "mnist", "--masks", str(run)])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("\n") == 1
    assert "is a 'base' run, which has no masks" in err and "cost it as --variant base" not in err
