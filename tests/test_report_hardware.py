"""reports/hardware: the committed report is what the generator writes now, and its headline numbers are
SPEC 3.2's (ResNet34 on a 32 x 32 ws array: OAT / base = 1.632, FLOAT 1.007; Eq. 7-9: 1.230, 1.0096)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from hwsim.report.hardware import COMMAND, write_hardware_report

ROOT = Path(__file__).resolve().parent.parent
COMMITTED = ROOT / "reports" / "hardware"


@pytest.fixture(scope="module")
def fresh(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("hardware") / "hardware"
    write_hardware_report(out)
    return out


def test_committed_report_is_current(fresh):
    names = sorted(p.name for p in fresh.iterdir())
    assert names == sorted(p.name for p in COMMITTED.iterdir())
    for name in names:
        if name.endswith((".csv", ".md")):
            assert (fresh / name).read_text() == (COMMITTED / name).read_text(), f"{name}: run {COMMAND}"
    assert COMMAND in (COMMITTED / "README.md").read_text()


def test_headline_numbers(fresh):
    costs = pd.read_csv(fresh / "variants.csv").set_index(["machine", "variant"])
    assert round(costs.loc[("systolic32 ws", "OAT"), "norm_delay"], 3) == 1.632
    assert round(costs.loc[("systolic32 ws", "FLOAT"), "norm_delay"], 3) == 1.007
    assert round(costs.loc[("asic65 (SRAM)", "OAT"), "norm_delay"], 3) == 1.230
    assert round(costs.loc[("asic65 (SRAM)", "FLOAT"), "norm_delay"], 4) == 1.0096
    totals = pd.read_csv(fresh / "scalesim_totals.csv")
    assert (totals["layers_equal"] == totals["layers"]).all()
    assert (totals["hwsim_cycles"] == totals["scalesim_cycles"]).all()
    complete = totals[totals["dataflow"].isin(["ws", "os"])]
    assert len(complete) == 18 and (complete["layers"] == 21).all()  # 3 variants x 3 arrays x ws, os: every layer
