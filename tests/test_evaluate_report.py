"""The report shows the evaluation's spreads and the runs' sanity checks; old eval.csv files still join."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from report_helpers import FakeCostFn, write_run

from hwsim.report import build_report
from hwsim.report.join import join


def test_report_shows_spreads_and_sanity_table(tmp_path: Path) -> None:
    run = write_run(tmp_path / "runs", "float", variant="float", algorithm="float",
                    points=[(0.0, 95.0, 20.0), (1.0, 90.0, 50.0)])
    table = pd.read_csv(run / "eval.csv")
    table = table.assign(restarts=1, eot=[0, 10], n_draws=[1, 5], ca_std=[0.0, 0.7], ra_std=[0.0, 1.3], source="")
    # a transfer row: its RA must not land on the white-box frontier
    transfer = table.iloc[[1]].assign(source="plain", ra=80.0)
    pd.concat([table, transfer]).to_csv(run / "eval.csv", index=False)
    pd.DataFrame({"check": ["more_steps", "unbounded"], "values": ["pgd20 50.00±1.30; pgd100 49.00±1.10",
                                                                   "pgd100 eps=1 12.00±0.50"],
                  "verdict": ["pass", "FAIL"], "rule": ["RA(pgd100) <= RA(pgd20) + tol", "RA(eps=1) <= 1"]}
                 ).to_csv(run / "sanity.csv", index=False)
    old = write_run(tmp_path / "runs", "oat", variant="oat", algorithm="oat", points=[(1.0, 88.0, 52.0)])

    out = tmp_path / "report"
    result = build_report([run, old], out, cost_fn=FakeCostFn())
    assert "sanity.csv" in result.files
    md = (out / "report.md").read_text()
    assert "## Gradient-masking checks (`sanity.csv`)" in md and "1 pass, 1 FAIL, 0 skipped" in md
    assert "pgd100 eps=1 12.00±0.50 | FAIL |" in md
    assert "| ca_std | ra_std | n_draws | eot |" in md
    assert "| 90 | 50 | 0.7 | 1.3 | 5 | 10 |" in md  # the FLOAT lambda = 1 row with its spreads
    points = pd.read_csv(out / "points.csv")
    labels = dict(zip(zip(points["run_name"], points["source"].fillna("")), points["attack_label"]))
    assert labels[("float", "plain")] == "pgd7 eps=8/255 from plain"
    frontier = pd.read_csv(out / "frontier.csv")
    assert 80.0 not in set(frontier["ra"])  # the transfer point is not compared with white-box points
    oat = points[points["run_name"] == "oat"].iloc[0]
    assert oat["restarts"] == 1 and pd.isna(oat["n_draws"]) and pd.isna(oat["ra_std"])  # written before issue 12


def test_join_keeps_the_new_columns(tmp_path: Path) -> None:
    run = write_run(tmp_path, "float", variant="float", algorithm="float", points=[(1.0, 90.0, 50.0)])
    pd.read_csv(run / "eval.csv").assign(restarts=3, eot=10, n_draws=5, ca_std=0.5, ra_std=0.9,
                                         source="").to_csv(run / "eval.csv", index=False)
    row = join([run], cost_fn=FakeCostFn()).iloc[0]
    assert (row["restarts"], row["eot"], row["n_draws"], row["ra_std"]) == (3, 10, 5, 0.9)
    assert row["attack_label"] == "pgd7 eps=8/255 x3 restarts"
