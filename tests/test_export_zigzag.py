"""`hwsim export --format zigzag`: ZigZag's workload, hardware and mapping, read back with a YAML parser and
checked by hand; with ZigZag installed (the slow test) run as written and compared with hwsim's energy."""

from __future__ import annotations

import csv
import io
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hwsim.cli import main


def export(capsys, tmp_path: Path, *args: str) -> Path:
    out = tmp_path / "zz"
    with pytest.raises(SystemExit) as exc:
        main(["export", *args, "--format", "zigzag", "--out", str(out)])
    assert exc.value.code == 0, capsys.readouterr().err
    return out


def test_resnet18_oat_files_by_hand(capsys, tmp_path):
    out = export(capsys, tmp_path, "resnet18", "--variant", "oat")
    layers = {layer["name"]: layer for layer in yaml.safe_load((out / "resnet18_oat.yaml").read_text())}
    assert len(layers) == 21 + 3 * 17
    conv = layers["layer2.0.conv1"]
    assert conv["loop_dims"] == ["B", "K", "C", "OY", "OX", "FY", "FX"]
    assert conv["loop_sizes"] == [1, 128, 64, 16, 16, 3, 3]
    assert conv["dimension_relations"] == ["ix=2*ox+1*fx", "iy=2*oy+1*fy"]  # stride 2
    assert layers["layer1.0.conv1.film_mlp2"]["loop_sizes"] == [1, 128, 128, 1, 1, 1, 1]  # (1, 2C, 2C)
    assert layers["layer1.0.conv1.film_affine"]["loop_sizes"] == [1, 1, 1, 65536, 1, 1, 1]  # (C H_o W_o, 1, 1)
    assert layers["linear"]["loop_sizes"] == [1, 10, 512, 1, 1, 1, 1]
    assert sorted(layer["id"] for layer in layers.values()) == list(range(len(layers)))
    hw = yaml.safe_load((out / "hardware.yaml").read_text())
    array = hw["operational_array"]
    assert array["sizes"] == [25, 7] and array["unit_energy"] == pytest.approx(0.38 + 0.19)  # e_mult + e_acc
    weights = hw["memories"]["weights"]
    assert weights["r_cost"] == 274.0 and weights["ports"][0]["bandwidth_max"] == 64  # 4 banks x 16 bits
    assert weights["operands"] == ["I2"]
    mapping = yaml.safe_load((out / "mapping.yaml").read_text())
    assert mapping[0]["spatial_mapping"] == {"D1": ["C, 25"], "D2": ["K, 7"]}
    assert 'get_hardware_performance_zigzag("resnet18_oat.yaml", "hardware.yaml", "mapping.yaml"' in \
        (out / "run_zigzag.py").read_text()


def test_float_noise_row_and_systolic_array(capsys, tmp_path):
    out = export(capsys, tmp_path, "resnet18", "--variant", "float", "--hw", "systolic32")
    layers = {layer["name"]: layer for layer in yaml.safe_load((out / "resnet18_float.yaml").read_text())}
    assert layers["layer1.0.conv1"]["loop_sizes"] == [1, 64, 576, 1025, 1, 1, 1]  # GEMM (M + 1, N, K)
    hw = yaml.safe_load((out / "hardware.yaml").read_text())
    assert hw["operational_array"]["sizes"] == [32, 32]


def test_hardware_without_energy_is_refused(capsys, tmp_path):
    hw6 = Path(__file__).resolve().parent.parent / "examples" / "hw_6bit.toml"
    with pytest.raises(SystemExit) as exc:
        main(["export", "small_cnn", "--format", "zigzag", "--hw", str(hw6), "--out", str(tmp_path / "z")])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "e_read_pj" in err and len(err.strip().splitlines()) == 1
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
def test_real_zigzag_runs_the_export(capsys, tmp_path):
    """Opt-in (zigzag-dse in this Python, or in the one ``HWSIM_ZIGZAG_PYTHON`` names): ZigZag's MAC energy equals
    hwsim's MACs x (e_mult + e_acc), layer by layer, and its ideal cycles are the MACs over the 175 multipliers."""
    python = os.environ.get("HWSIM_ZIGZAG_PYTHON")
    if python is None:
        pytest.importorskip("zigzag.api")  # not tests/data/zigzag, a namespace package on sys.path
        python = sys.executable
    out = export(capsys, tmp_path, "small_cnn", "--input-size", "3,8,8")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    run = subprocess.run([python, "run_zigzag.py"], cwd=out, check=True, capture_output=True, text=True, env=env)
    rows = [r for r in csv.DictReader(io.StringIO(run.stdout)) if r["layer"] != "total"]
    layers = yaml.safe_load((out / "small_cnn_base.yaml").read_text())
    assert [r["layer"] for r in rows] == [layer["name"] for layer in layers]
    for row, layer in zip(rows, layers, strict=True):
        macs = math.prod(layer["loop_sizes"])
        assert float(row["mac_energy_pj"]) == pytest.approx(macs * 0.57, rel=1e-12)
        assert int(row["ideal_cycle"]) == math.ceil(macs / 175)


def test_stored_zigzag_run_prices_macs_as_hwsim():
    """ZigZag 3.9 on layers of the export (tests/data/zigzag/resnet18_asic65.csv): its MAC energy is hwsim's MACs
    x (e_mult + e_acc) and its ideal cycles MACs / n_mult; its weight reads are at least hwsim's reads(W)
    (whole 64-bit accesses) and at most 25% more (it reads tiles padded to its mapping)."""
    data = Path(__file__).resolve().parent / "data" / "zigzag" / "resnet18_asic65.csv"
    rows = [r for r in csv.DictReader(open(data)) if r["layer"] != "total"]
    sizes = {"conv1": (64, 3, 32, 32, 3), "layer1.0.conv1": (64, 64, 32, 32, 3), "layer2.0.conv1": (128, 64, 16, 16, 3),
             "layer2.0.shortcut.0": (128, 64, 16, 16, 1), "layer4.1.conv2": (512, 512, 4, 4, 3),
             "linear": (10, 512, 1, 1, 1), "layer1.0.conv1.film_mlp1": (128, 1, 1, 1, 1),
             "layer1.0.conv1.film_mlp2": (128, 128, 1, 1, 1), "layer1.0.conv1.film_affine": (1, 1, 65536, 1, 1)}
    assert sorted(r["layer"] for r in rows) == sorted(sizes)
    for row in rows:
        c_out, c_in, h, w, k = sizes[row["layer"]]
        weights, macs = c_out * c_in * k * k, c_out * c_in * k * k * h * w
        assert float(row["mac_energy_pj"]) == pytest.approx(macs * 0.57, rel=1e-12)
        assert int(row["ideal_cycle"]) == math.ceil(macs / 175)
        hwsim_reads = math.ceil(weights * 8 / 64) * 274.0
        assert hwsim_reads <= float(row["weight_read_energy_pj"]) <= 1.25 * hwsim_reads, row
