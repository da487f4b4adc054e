"""The pandas-free table renderer prints what pandas printed, cell for cell (existing outputs must not change)."""

from __future__ import annotations

import math
import subprocess
import sys

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwsim.output import _number, render_rows


def pandas_render(rows, fmt, columns=None):
    """The renderer of hwsim <= 0.1.0, kept here as the reference."""
    rows = list(rows)
    frame = pd.DataFrame(rows, columns=list(columns) if columns else None)
    if fmt == "table" and frame.empty:  # where pandas printed "Empty DataFrame ...", hwsim says so in words
        return "(no rows to show)"
    if fmt == "csv":  # since 0.1.0: a column of ints with blank cells stays ints (k = 3, not 3.0)
        for column in frame.columns:
            present = [v for v in (row.get(column) for row in rows) if v is not None and v == v]
            if present and frame[column].dtype.kind == "f" and all(type(v) is int for v in present):
                frame[column] = frame[column].astype("Int64")
        return frame.to_csv(index=False).rstrip("\n")
    if fmt == "markdown":
        align = ["right" if pd.api.types.is_numeric_dtype(frame[c]) else "left" for c in frame.columns]
        cells = frame.map(lambda v: _number(v) if isinstance(v, float) else v)
        return cells.to_markdown(index=False, disable_numparse=True, colalign=align)
    return frame.to_string(index=False, float_format=_number)


_MISSING = object()
names = st.text(alphabet="abcdefgh_[]", min_size=1, max_size=8)
ints = st.integers(-10**12, 10**12)
floats = st.one_of(st.floats(allow_nan=False, allow_infinity=False, width=64, min_value=-1e15, max_value=1e15),
                   st.integers(-10**6, 10**6).map(float))
strs = st.text(alphabet="abc xyz,.\"'-|", max_size=12)
# How hwsim's tables fill a column: one type, sometimes with None or a key a row lacks (a TOTAL row).
column_kinds = st.sampled_from(["int", "float", "number", "str", "bool"])
value_of = {"int": ints, "float": floats, "number": st.one_of(ints, floats), "str": strs, "bool": st.booleans()}


@st.composite
def tables(draw):
    ncols = draw(st.integers(1, 5))
    cols = draw(st.lists(names, min_size=ncols, max_size=ncols, unique=True))
    kinds = [draw(column_kinds) for _ in cols]
    holes = [draw(st.sampled_from(["none", "none", "missing", "null"])) for _ in cols]
    nrows = draw(st.integers(0, 6))
    rows = []
    for _ in range(nrows):
        row = {}
        for col, kind, hole in zip(cols, kinds, holes):
            if hole != "none" and kind != "bool" and draw(st.integers(0, 3)) == 0:
                if hole == "null":
                    row[col] = None
                continue
            row[col] = draw(value_of[kind])
        rows.append(row)
    return rows, cols


@settings(max_examples=300, deadline=None)
@given(tables(), st.sampled_from(["table", "csv", "markdown"]), st.booleans())
def test_same_text_as_pandas(table, fmt, explicit_columns):
    rows, cols = table
    if not any(rows) and not explicit_columns:
        return  # no column at all: pandas prints an empty frame, hwsim never asks for one
    columns = cols if explicit_columns else None
    assert render_rows(rows, fmt, columns) == pandas_render(rows, fmt, columns)


@pytest.mark.parametrize("fmt", ["table", "csv", "markdown"])
def test_typical_tables_match_pandas(fmt):
    rows = [
        {"name": "conv1", "kind": "conv", "k": 3, "params": 1728, "film_dim": 0, "delay_ns": 905728.0, "r": 1.25},
        {"name": "fc", "kind": "linear", "k": 1, "params": 5130, "film_dim": 0, "delay_ns": 1234.5, "r": 0.5},
        {"name": "TOTAL", "params": 6858, "delay_ns": 907000.0},
        {"name": "x,y", "kind": None, "k": 1, "params": 1, "film_dim": 2, "delay_ns": math.nan, "r": True},
    ]
    assert render_rows(rows, fmt) == pandas_render(rows, fmt)
    hw = [{"name": "asic65", "b_io": 16, "t_read_ns": 9.0, "sparse_storage": "dense", "zero_skip": False}]
    assert render_rows(hw, fmt) == pandas_render(hw, fmt)


def test_wrong_alignment_would_be_caught():
    text = render_rows([{"name": "a", "v": 1}, {"name": "bbb", "v": 22}], "table")
    assert text == "name  v\n   a  1\n bbb 22"


def test_hw_list_imports_neither_pandas_nor_torch():
    code = ("import sys; from hwsim.cli import main\n"
            "try:\n    main(['hw', 'list'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('pandas', 'torch', 'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"
