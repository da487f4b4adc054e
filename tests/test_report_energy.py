"""The report's energy column and accuracy-vs-energy frontier (issue 19): energies are hwsim's own for each
network, the energy frontier is the non-dominated set against energy, and energy asked of hardware without
energy fields is refused before anything is written."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from hwsim.cost import model_cost
from hwsim.errors import HwsimError
from hwsim.hardware import get_preset, load_toml
from hwsim.report import build_report
from report_helpers import standard_runs

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # two reports with their figures: about 25 s here
def test_energy_column_and_energy_frontier(tmp_path, one_thread):
    runs = standard_runs(tmp_path / "runs")
    result = build_report(runs, tmp_path / "rep")  # asic65: it has energy fields
    points = pd.read_csv(tmp_path / "rep" / "points.csv")
    for variant in ("base", "float", "oat"):
        dual = {} if variant == "base" else {"bn": "dual"}  # base has no BN option: model_cost refuses one
        want = model_cost("small_cnn", variant, dataset="mnist", **dual)
        got = points[points["variant"] == variant]
        assert got["energy_pj"].tolist() == [want.energy_pj] * len(got)
        assert got["norm_energy"].tolist() == [want.norm_energy] * len(got)
    assert "figures/frontier_energy.png" in result.files
    text = (tmp_path / "rep" / "report.md").read_text()
    assert "Accuracy vs energy with the Pareto frontiers" in text and "energy_pj" in text
    # the frontier on energy: oat costs more energy than float, so a point of oat is on the CA frontier only
    # when it is more accurate than every cheaper point
    on_energy = build_report(runs, tmp_path / "rep_e", cost="energy_pj")
    rows = result.points[result.points["origin"] == "run"]
    assert len(on_energy.frontier) > 0
    for _, row in on_energy.frontier.iterrows():
        cheaper = rows[rows["energy_pj"] < row["energy_pj"]]
        assert not ((cheaper["ca"] >= row["ca"]) & (cheaper["ra"] >= row["ra"])).any()
    assert "figures/frontier_energy.png" not in on_energy.files  # the main frontier is on energy already


def test_energy_cost_axis_needs_energy_fields(tmp_path):
    runs = standard_runs(tmp_path / "runs")
    with pytest.raises(HwsimError, match="has no energy fields"):
        build_report(runs, tmp_path / "rep", hw=load_toml(ROOT / "examples" / "hw_6bit.toml"), cost="norm_energy")
    assert not (tmp_path / "rep").exists()


def test_cost_summary_energy_is_nan_without_energy_fields():
    plain = model_cost("small_cnn", "base", dataset="mnist", hw=load_toml(ROOT / "examples" / "hw_6bit.toml"))
    assert plain.energy_pj != plain.energy_pj  # NaN
    with_energy = model_cost("small_cnn", "base", dataset="mnist", hw=get_preset("asic65"))
    assert with_energy.norm_energy == 1.0 and with_energy.energy_pj > 0
