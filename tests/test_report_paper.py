"""reports/paper: the committed report is what the generator writes now; the comparison's arithmetic."""

from __future__ import annotations

from pathlib import Path

import pytest
from report_helpers import FakeCostFn

from hwsim.errors import HwsimError
from hwsim.report.paper import COMMAND, paper_comparison, paper_costs, paper_values, write_paper_report

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "reports" / "paper"


def test_comparison_arithmetic_with_a_fake_cost():
    costs = paper_costs(cost_fn=FakeCostFn())
    assert list(costs["series"][:3]) == ["PGD-AT:1T", "FLOAT", "OAT"]
    assert list(costs["weight_params"][:3]) == [1000, 1010, 1500]  # memory_bytes x 8 / b_w with b_w = 8
    table = paper_comparison(costs).set_index(["model", "variant", "quantity"])
    ratio = table.loc[("resnet34", "oat", "storage_ratio_vs_float")]
    assert ratio["hwsim"] == pytest.approx(1500 / 1010)
    assert ratio["difference"] == pytest.approx(1500 / 1010 / 1.47 - 1)
    delay = table.loc[("resnet34", "oat", "conv_delay_vs_float_max")]
    assert delay["hwsim"] == pytest.approx((150 / 90) / (120 / 90))  # the fake's conv_norm_delay_max ratio
    assert table.loc[("wrn16_8", "float", "params"), "paper"] == 10_970_000
    assert len(table) == len(paper_values())


def test_committed_paper_report_is_current(tmp_path: Path):
    files = write_paper_report(tmp_path / "paper")
    assert files == sorted(p.name for p in COMMITTED.iterdir())
    for name in files:
        if name.endswith(".png"):  # pixels depend on the matplotlib build: check presence and plausibility
            assert (COMMITTED / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            continue
        fresh, committed = (tmp_path / "paper" / name).read_text(), (COMMITTED / name).read_text()
        assert fresh == committed, f"reports/paper/{name} is out of date; regenerate: {COMMAND}"
    readme = (COMMITTED / "README.md").read_text()
    assert COMMAND in readme.split("\n## ")[0]  # the regenerating command comes first


def test_paper_report_refuses_a_directory_it_did_not_write(tmp_path: Path, capsys):
    from hwsim.report.paper import main

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.md").write_text("mine\n")
    fake = FakeCostFn()
    with pytest.raises(HwsimError, match="is not a report hwsim wrote"):
        write_paper_report(mine, cost_fn=fake)
    assert fake.calls == []  # refused before any cost was computed
    assert main(["--out", str(mine)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"hwsim: error: output directory {str(mine)!r} exists and is not a report hwsim wrote")
    assert err.count("\n") == 1
    assert [p.name for p in mine.iterdir()] == ["notes.md"] and (mine / "notes.md").read_text() == "mine\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]
