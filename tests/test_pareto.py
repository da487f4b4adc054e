"""Pareto frontier: hand-made point sets with known frontiers, and a dominance property."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwsim.errors import HwsimError
from hwsim.report.pareto import pareto_front, pareto_mask


def _df(points: list[tuple[float, float, float]]) -> pd.DataFrame:
    return pd.DataFrame(points, columns=["memory_bytes", "ca", "ra"], index=[f"p{i}" for i in range(len(points))])


def test_2d_known_front_sorted_by_cost():
    df = _df([(3, 90, 0), (1, 80, 0), (2, 85, 0), (2.5, 84, 0), (4, 89, 0)])
    front = pareto_front(df, maximize="ca")
    assert list(front.index) == ["p1", "p2", "p0"]


def test_single_point_is_its_own_front():
    df = _df([(5, 50, 20)])
    assert list(pareto_front(df).index) == ["p0"]
    assert list(pareto_front(df, maximize="ra").index) == ["p0"]


def test_all_dominated_by_one_point():
    df = _df([(1, 95, 60), (2, 90, 50), (3, 80, 40), (1, 94, 60), (1, 95, 59)])
    assert list(pareto_front(df).index) == ["p0"]
    # on the CA axis alone p4 equals p0 (cost 1, CA 95): a duplicate there, so both stay
    assert list(pareto_front(df, maximize="ca").index) == ["p0", "p4"]


def test_duplicates_are_all_kept():
    df = _df([(2, 90, 50), (2, 90, 50), (3, 80, 40), (1, 70, 30)])
    assert sorted(pareto_front(df).index) == ["p0", "p1", "p3"]
    assert sorted(pareto_front(df, maximize="ca").index) == ["p0", "p1", "p3"]


def test_cost_tie_keeps_only_best_accuracy():
    df = _df([(2, 90, 0), (2, 85, 0), (1, 80, 0)])
    assert list(pareto_front(df, maximize="ca").index) == ["p2", "p0"]


def test_accuracy_tie_keeps_only_cheapest():
    # same accuracy at a higher cost is dominated (strictly worse cost)
    df = _df([(1, 90, 0), (2, 90, 0), (3, 91, 0)])
    assert list(pareto_front(df, maximize="ca").index) == ["p0", "p2"]


def test_joint_front_keeps_trade_off_points():
    # p1 has worse CA but better RA than p0 at the same cost: both on the joint front, only p0 on the CA front
    df = _df([(1, 90, 40), (1, 85, 50), (2, 84, 49), (2, 91, 30), (3, 80, 55)])
    assert sorted(pareto_front(df).index) == ["p0", "p1", "p3", "p4"]
    assert list(pareto_front(df, maximize="ca").index) == ["p0", "p3"]
    assert list(pareto_front(df, maximize="ra").index) == ["p1", "p4"]


def test_nan_rows_never_on_front_and_do_not_dominate():
    df = _df([(np.nan, 99, 99), (2, 80, 40), (1, np.nan, 50)])
    assert list(pareto_front(df).index) == ["p1"]


def test_empty_and_input_not_modified():
    df = _df([(2, 80, 40), (1, 70, 30)])
    before = df.copy()
    pareto_front(df)
    pd.testing.assert_frame_equal(df, before)
    assert pareto_front(df.iloc[:0]).empty


def test_unknown_column_is_an_error():
    with pytest.raises(HwsimError, match="macs"):
        pareto_front(_df([(1, 1, 1)]), cost="macs")


def _dominates(a: np.ndarray, b: np.ndarray) -> bool:
    """Objectives already oriented so that higher is better."""
    return bool((a >= b).all() and (a > b).any())


values = st.integers(min_value=0, max_value=6)  # small range: plenty of ties and duplicates


@settings(max_examples=150, deadline=None)
@given(points=st.lists(st.tuples(values, values, values), min_size=1, max_size=30),
       joint=st.booleans())
def test_property_front_is_exactly_the_non_dominated_set(points, joint):
    arr = np.array(points, dtype=float)
    cost, gains = arr[:, 0], (arr[:, 1:] if joint else arr[:, 1:2])
    mask = pareto_mask(cost, gains)
    obj = np.column_stack([-cost, gains])
    front = obj[mask]
    assert mask.any()
    for i in range(len(obj)):
        dominated_by_front = any(_dominates(f, obj[i]) for f in front)
        if mask[i]:
            # no point at all dominates a frontier point
            assert not any(_dominates(o, obj[i]) for o in obj)
        else:
            # every non-frontier point is dominated by some frontier point
            assert dominated_by_front
