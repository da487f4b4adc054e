"""`hwsim export --format scalesim`: SCALE-Sim v3's topology, config and layout, checked by parsing them as
SCALE-Sim 3.0.0 does (scalesim-project/scale-sim-v3: scalesim/topology_utils.py ``load_arrays_conv`` and
``topo_calc_hyperparams``, scalesim/scale_config.py ``read_conf_file``), never by rewriting the exporter."""

from __future__ import annotations

import configparser
import csv
from pathlib import Path

import pytest

from hwsim.cli import main
from hwsim.export.scalesim import read_topology, scalesim_gemm, von_neumann_array

HEADER = "Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides,"


def export(capsys, tmp_path: Path, *args: str) -> Path:
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exc:
        main(["export", *args, "--format", "scalesim", "--out", str(out)])
    captured = capsys.readouterr()
    assert exc.value.code == 0, captured.err
    return out


def error(capsys, *args: str) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exc:
        main(["export", *args])
    return exc.value.code, capsys.readouterr().err


def rows_by_name(folder: Path, stem: str) -> dict[str, tuple]:
    return {row[0]: row[1:] for row in read_topology(folder / f"{stem}.csv")}


def test_resnet18_rows_by_hand(capsys, tmp_path):
    out = export(capsys, tmp_path, "resnet18")
    lines = (out / "resnet18_base.csv").read_text().splitlines()
    assert lines[0] == HEADER
    assert all(line.endswith(",") for line in lines) and len(lines) == 1 + 21  # 20 convs and the classifier
    rows = rows_by_name(out, "resnet18_base")
    # no padding in SCALE-Sim: the input is what the outputs read, (H_o - 1) s + k
    assert rows["conv1"] == (34, 34, 3, 3, 3, 64, 1)  # 32 x 32 out, k 3, s 1
    assert rows["layer2.0.conv1"] == (33, 33, 3, 3, 64, 128, 2)  # 16 x 16 out, k 3, s 2: 15 * 2 + 3
    assert rows["layer2.0.shortcut.0"] == (31, 31, 1, 1, 64, 128, 2)  # 1x1, s 2: 15 * 2 + 1
    assert rows["layer4.1.conv2"] == (6, 6, 3, 3, 512, 512, 1)  # 4 x 4 out
    assert rows["linear"] == (1, 512, 1, 512, 1, 10, 1)  # GEMM (M 1, N 10, K 512): 1 x 512 input, 10 filters 1 x 512
    # what SCALE-Sim computes from these rows: M = H_o W_o, N = C_o, K = k^2 C_i
    assert scalesim_gemm(("x", *rows["layer2.0.conv1"])) == (256, 128, 576)
    assert scalesim_gemm(("x", *rows["linear"])) == (1, 10, 512)


def test_float_and_oat_rows_by_hand(capsys, tmp_path):
    rows = rows_by_name(export(capsys, tmp_path, "resnet18", "--variant", "float"), "resnet18_float")
    # FLOAT's noise pass is one more streamed row: GEMM (1024 + 1, 64, 576) written as M x K input, N filters 1 x K
    assert rows["layer1.0.conv1"] == (1025, 576, 1, 576, 1, 64, 1)
    assert rows["linear"] == (1, 512, 1, 512, 1, 10, 1)  # the classifier stays plain
    rows = rows_by_name(export(capsys, tmp_path / "o", "resnet18", "--variant", "oat"), "resnet18_oat")
    assert rows["layer1.0.conv1"] == (34, 34, 3, 3, 64, 64, 1)
    assert rows["layer1.0.conv1.film_mlp1"] == (1, 1, 1, 1, 1, 128, 1)  # (1, 2C, d = 1)
    assert rows["layer1.0.conv1.film_mlp2"] == (1, 128, 1, 128, 1, 128, 1)  # (1, 2C, 2C)
    assert rows["layer3.1.conv2.film_affine"] == (256 * 64, 1, 1, 1, 1, 1, 1)  # (C H_o W_o, 1, 1) on one PE
    assert "layer2.0.shortcut.0.film_mlp1" not in rows  # no FiLM on a projection shortcut's BN
    assert sum(name.endswith(".film_mlp2") for name in rows) == 17  # stem + 16 block BNs


def test_slim_and_channel_pruned_rows_are_the_effective_shapes(capsys, tmp_path):
    rows = rows_by_name(export(capsys, tmp_path, "resnet18", "--variant", "oat-slim", "--width", "0.5"),
                        "resnet18_oat-slim")
    assert rows["layer1.0.conv1"] == (34, 34, 3, 3, 32, 32, 1)
    assert rows["layer1.0.conv1.film_mlp2"] == (1, 64, 1, 64, 1, 64, 1)  # FiLM(d, C_a = 32)
    assert rows["conv1"][4] == 3  # the input's channels are never slimmed
    out = export(capsys, tmp_path / "c", "resnet18", "--variant", "floats-c", "--density", "0.5")
    table = list(csv.DictReader(open(out / "hwsim_rows.csv")))
    from hwsim.cost import ModelSetting
    from hwsim.shapecache import analyze

    trace = analyze(ModelSetting("resnet18", "floats-c", density=0.5)).trace
    for row in table:
        record = next(r for r in trace.layers if r.name == row["layer"])
        if record.kind == "conv":  # FLOATS is noisy: GEMM rows (M + 1, C_o_eff, k^2 C_i_eff)
            assert (int(row["m"]), int(row["n"]), int(row["k"])) == (
                record.h_out * record.w_out + 1, record.c_out_eff, record.k ** 2 * record.c_in_eff)
    assert any(r.c_in_eff < r.c_in for r in trace.layers)  # some channels are pruned, so the check bites


def test_every_row_reads_back_as_its_gemm(capsys, tmp_path):
    """SCALE-Sim's own reading of each row gives the (M, N, K) hwsim costs, for every row of every part."""
    out = export(capsys, tmp_path, "resnet18", "--variant", "oat", "--hw", "systolic32")
    parsed = read_topology(out / "resnet18_oat.csv")
    table = list(csv.DictReader(open(out / "hwsim_rows.csv")))
    assert len(parsed) == len(table) == 21 + 3 * 17
    for row, entry in zip(parsed, table, strict=True):
        assert row[0] == entry["scalesim_name"]
        assert scalesim_gemm(row) == (int(entry["m"]), int(entry["n"]), int(entry["k"]))
        assert row[3] <= row[1] and row[4] <= row[2]  # SCALE-Sim asserts filter <= IFMAP


def test_config_and_layout(capsys, tmp_path):
    out = export(capsys, tmp_path, "small_cnn")
    config = configparser.ConfigParser()
    config.read(out / "small_cnn_base.cfg")
    arch = config["architecture_presets"]
    # asic65's 175 multipliers as the closest-to-square array 25 x 7, weight-stationary
    assert (arch["ArrayHeight"], arch["ArrayWidth"], arch["Dataflow"]) == ("25", "7", "ws")
    assert config["general"]["run_name"] == "small_cnn_base"
    assert config["run_presets"]["InterfaceBandwidth"] == "CALC"
    assert config["layout"]["IfmapCustomLayout"] == "False"
    layout = (out / "layout.csv").read_text().splitlines()
    assert len(layout) == 1 and layout[0].startswith("Layer name, IFMAP Height Intraline Factor")
    out = export(capsys, tmp_path / "s", "small_cnn", "--hw", "systolic32", "--set", "dataflow=os",
                 "--set", "array_cols=8")
    config.read(out / "small_cnn_base.cfg")
    arch = config["architecture_presets"]
    assert (arch["ArrayHeight"], arch["ArrayWidth"], arch["Dataflow"]) == ("32", "8", "os")
    assert "scalesim.scale -c small_cnn_base.cfg -t small_cnn_base.csv -l layout.csv" in (out / "README.txt").read_text()


def test_von_neumann_array():
    assert von_neumann_array(175) == (25, 7)
    assert von_neumann_array(256) == (16, 16)
    assert von_neumann_array(12) == (4, 3)
    assert von_neumann_array(13) == (13, 1)  # a prime: one column (honest, not rounded to another machine)


def test_user_model(capsys, tmp_path):
    example = Path(__file__).resolve().parent.parent / "examples" / "my_net.py"
    out = export(capsys, tmp_path, f"{example}:build", "--input-size", "3,32,32", "--variant", "oat")
    rows = rows_by_name(out, "my_net_build_oat")
    assert rows["features.3"] == (33, 33, 3, 3, 32, 64, 2)  # 16 x 16 out of a stride-2 3x3 conv
    assert rows["features.0.film_mlp2"] == (1, 64, 1, 64, 1, 64, 1)
    assert rows["classifier"] == (1, 128, 1, 128, 1, 10, 1)


def test_bad_input(capsys, tmp_path):
    code, err = error(capsys, "resnet18", "--format", "timeloop", "--out", str(tmp_path / "x"))
    assert code == 2 and "'timeloop'" in err and "scalesim, onnx, zigzag" in err
    assert len(err.strip().splitlines()) == 1
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    code, err = error(capsys, "resnet18", "--format", "scalesim", "--out", str(blocker / "out"))
    assert code == 2 and "cannot write" in err and len(err.strip().splitlines()) == 1
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    code, err = error(capsys, "resnet18", "--format", "scalesim", "--out", str(mine))
    assert code == 2 and sorted(p.name for p in mine.iterdir()) == ["notes.txt"]
    code, err = error(capsys, "resnet18", "--format", "onnx", "--hw", "asic65", "--out", str(tmp_path / "o"))
    assert code == 2 and "--hw" in err and not (tmp_path / "o").exists()
    code, err = error(capsys, "resnet18", "--variant", "base", "--density", "0.5", "--format", "scalesim",
                      "--out", str(tmp_path / "d"))
    assert code == 2 and "--density" in err and not (tmp_path / "d").exists()
    code, err = error(capsys, "resnet18", "--format", "scalesim", "--hw", "systolic32", "--set", "array_rows=0",
                      "--out", str(tmp_path / "z"))
    assert code == 2 and "array_rows" in err and not (tmp_path / "z").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging directory left behind
