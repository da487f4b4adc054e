"""The report's frontier flags and order: points where the CA, RA and joint frontiers all differ."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from report_helpers import FakeCostFn, write_run

from hwsim.report import build_report
from hwsim.report.pareto import pareto_front


def _df(points: list[tuple[float, float, float]]) -> pd.DataFrame:
    return pd.DataFrame(points, columns=["memory_bytes", "ca", "ra"], index=[f"p{i}" for i in range(len(points))])


def test_frontier_is_sorted_by_cost_up_then_first_accuracy_down():
    # p0 and p2 tie on cost: the higher CA (p2) comes first; the input order is neither sorted nor reversed
    df = _df([(1, 85, 50), (2, 95, 10), (1, 90, 40), (3, 99, 5)])
    assert list(pareto_front(df).index) == ["p2", "p0", "p1", "p3"]
    assert list(pareto_front(df, maximize=["ra", "ca"]).index) == ["p0", "p2", "p1", "p3"]  # RA first: down
    assert list(pareto_front(df, maximize="ca").index) == ["p2", "p1", "p3"]


def test_report_flags_the_ra_frontier_from_ra_and_writes_frontier_csv_in_order(tmp_path: Path):
    # FakeCostFn: base 1000 B, float 1010 B, oat 1500 B. CA alone: base (cheapest, best CA at its cost) and
    # oat's 97 beat the rest; RA alone: base's 25, float's 60 and oat's 70.
    runs = [write_run(tmp_path / "runs", "base", variant="base", algorithm="pgd-at", bn="single",
                      points=[(0.0, 96.0, 25.0)]),
            write_run(tmp_path / "runs", "float", variant="float", algorithm="float",
                      points=[(0.0, 95.0, 20.0), (1.0, 90.0, 60.0)]),
            write_run(tmp_path / "runs", "oat", variant="oat", algorithm="oat",
                      points=[(0.0, 97.0, 15.0), (1.0, 80.0, 70.0)])]
    result = build_report(runs, tmp_path / "report", cost_fn=FakeCostFn())
    points = pd.read_csv(tmp_path / "report" / "points.csv")
    flags = {(r.run, r.ca): (r.front_ca, r.front_ra, r.front_joint) for r in points.itertuples()}
    assert flags == {
        ("base", 96.0): (True, True, True),
        ("float", 95.0): (False, False, False),  # base is cheaper with more CA and RA
        ("float", 90.0): (False, True, True),
        ("oat", 97.0): (True, False, True),
        ("oat", 80.0): (False, True, True),
    }
    frontier = pd.read_csv(tmp_path / "report" / "frontier.csv")
    # cost up (1000, 1010, 1500, 1500), then CA down inside oat's cost
    assert list(zip(frontier["run"], frontier["ca"])) == [("base", 96.0), ("float", 90.0), ("oat", 97.0),
                                                          ("oat", 80.0)]
    assert list(result.frontier["ca"]) == [96.0, 90.0, 97.0, 80.0]
