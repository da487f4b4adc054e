"""``hwsim sweep --format parquet``: the file read back holds exactly the CSV's values, typed, one row group per
chunk, with the sweep's description; refusals are one line; a failed write leaves nothing behind."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

import hwsim.sweep as sweep_module
from hwsim.cli import cli, main
from hwsim.delay import LayerShape, hardware_grid
from hwsim.hardware import get_preset
from hwsim.sweep import Sweep, write_parquet

ROOT = Path(__file__).resolve().parents[1]

CONV = [LayerShape("a", "conv", k=3, c_in=64, c_out=64, h_out=32, w_out=32, formula="eq8"),
        LayerShape("fc", "linear", k=1, c_in=64, c_out=10)]
PLAIN = [LayerShape("a", "conv", k=3, c_in=64, c_out=64, h_out=32, w_out=32), CONV[1]]
GRID = ["--grid", "n_mult=50:400:50", "--grid", "t_read_ns=1,2.5,9", "--grid", "n_bank=1,2,4"]  # 72 configs


def invoke(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def csv_rows(path) -> tuple[list[str], list[list[int | float]]]:
    """The header and the rows of a CSV, each cell an int if it reads as one, else a float."""
    def cell(text: str) -> int | float:
        try:
            return int(text)
        except ValueError:
            return float(text)

    with open(path, newline="") as handle:
        header, *body = csv.reader(handle)
    return header, [[cell(text) for text in row] for row in body]


def typed(values: list) -> list[tuple[type, object]]:
    return [(type(v), v) for v in values]  # 64 == 64.0, but an int column is not a float column


@pytest.mark.parametrize("pareto", [False, True], ids=["all", "pareto"])
def test_parquet_holds_the_csvs_values_and_the_json_description(pareto, tmp_path, one_thread):
    args = ["sweep", "resnet18", "--variant", "oat", *GRID, *(["--pareto"] if pareto else [])]
    invoke(*args, "--format", "csv", "-o", str(tmp_path / "s.csv"))
    invoke(*args, "--format", "parquet", "-o", str(tmp_path / "s.parquet"))
    header, body = csv_rows(tmp_path / "s.csv")
    table = pq.read_table(tmp_path / "s.parquet")
    assert table.column_names == header
    assert len(body) == table.num_rows and (table.num_rows < 72 if pareto else table.num_rows == 72)
    for i, name in enumerate(header):
        assert typed(table.column(name).to_pylist()) == typed([row[i] for row in body]), name
    described = json.loads(table.schema.metadata[b"hwsim"])
    document = json.loads(invoke(*args, "--format", "json"))
    assert described == {key: value for key, value in document.items() if key != "rows"}
    assert ("pareto" in described) == pareto and described["grid"]["t_read_ns"] == [1.0, 2.5, 9.0]


@pytest.mark.parametrize("pareto", [False, True], ids=["all", "pareto"])
def test_one_row_group_per_chunk_and_typed_columns(pareto, tmp_path, monkeypatch):
    monkeypatch.setattr(sweep_module, "CHUNK", 5)
    grid = hardware_grid(get_preset("asic65"), sparse=True, n_bank=[1, 2, 4], n_mult=[1, 2, 4, 8],
                         t_mult_ns=[0.5, 2.0])
    sweep = Sweep(grid, ("n_bank", "n_mult", "t_mult_ns"), CONV, PLAIN)
    flat = sweep.pareto() if pareto else None
    n = len(flat) if pareto else 24
    seen = []
    write_parquet(sweep, tmp_path / "s.parquet", flat=flat, hw_size=pareto, metadata={"k": "v"},
                  progress=lambda done, total: seen.append((done, total)))
    file = pq.ParquetFile(tmp_path / "s.parquet")
    sizes = [file.metadata.row_group(i).num_rows for i in range(file.num_row_groups)]
    assert sizes == [5] * (n // 5) + ([n % 5] if n % 5 else []) and n > 5
    assert seen == [(min(done, n), n) for done in range(5, n + 5, 5)]
    expected = pa.schema([("n_bank", pa.int64()), ("n_mult", pa.int64()), ("t_mult_ns", pa.float64()),
                          ("delay_ns", pa.float64()), ("plain_delay_ns", pa.float64()),
                          ("norm_delay", pa.float64()), *([("hw_size", pa.int64())] if pareto else [])])
    assert file.schema_arrow.remove_metadata() == expected and file.schema_arrow.metadata == {b"k": b"v"}
    columns = sweep.columns(flat if pareto else np.arange(24), hw_size=pareto)
    table = file.read()
    assert all(np.array_equal(table.column(name).to_numpy(), values) for name, values in columns.items())


def test_an_empty_front_is_a_file_with_the_schema(tmp_path):
    sweep = Sweep(hardware_grid(get_preset("asic65"), sparse=True, n_mult=[1, 2]), ("n_mult",), CONV, PLAIN)
    write_parquet(sweep, tmp_path / "s.parquet", flat=np.zeros(0, dtype=np.int64), hw_size=True)
    table = pq.read_table(tmp_path / "s.parquet")
    assert table.num_rows == 0 and table.column_names[-1] == "hw_size"


def test_parquet_needs_output_and_only_sweep_offers_it(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["sweep", "resnet18", "--grid", "n_mult=64,128", "--format", "parquet"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("\n") == 1 and "--output FILE" in err and "Traceback" not in err
    with pytest.raises(SystemExit) as exc:
        main(["delay", "resnet18", "--format", "parquet", "-o", "x.parquet"])
    assert exc.value.code == 2 and "'parquet' is not one of" in capsys.readouterr().err
    assert "parquet" not in CliRunner().invoke(cli, ["count", "--help"]).output


def test_without_pyarrow_the_error_names_the_extra_and_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # makes `import pyarrow` raise ImportError
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    out = tmp_path / "s.parquet"
    with pytest.raises(SystemExit) as exc:
        main(["sweep", "resnet18", "--grid", "n_mult=64,128", "--format", "parquet", "-o", str(out)])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("\n") == 1 and 'pip install -e ".[parquet]"' in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_an_interrupted_write_leaves_the_old_file_and_no_temporary(fmt, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sweep_module, "CHUNK", 16)
    columns = Sweep.columns
    calls = []

    def interrupt_on_the_third_call(self, flat, **kwargs):  # after a chunk or two is written
        calls.append(len(flat))
        if len(calls) == 3:
            raise KeyboardInterrupt  # not an OSError: still nothing left behind
        return columns(self, flat, **kwargs)

    monkeypatch.setattr(Sweep, "columns", interrupt_on_the_third_call)
    out = tmp_path / f"s.{fmt}"
    out.write_text("an earlier sweep")
    with pytest.raises(SystemExit) as exc:
        main(["sweep", "resnet18", *GRID, "--format", fmt, "-o", str(out)])
    assert exc.value.code == 130 and "aborted" in capsys.readouterr().err and len(calls) == 3
    assert out.read_text() == "an earlier sweep" and sorted(p.name for p in tmp_path.iterdir()) == [out.name]


def test_an_unwritable_output_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["sweep", "resnet18", "--grid", "n_mult=64,128", "--format", "parquet",
              "-o", str(tmp_path / "missing" / "s.parquet")])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("\n") == 1 and err.startswith("hwsim: error: cannot write")


def test_only_the_parquet_path_imports_pyarrow(tmp_path):
    """The cost commands import neither pyarrow nor torch nor pandas; Parquet adds pyarrow alone."""
    def imported(*args: str) -> str:
        code = ("import sys; from hwsim.cli import main\n"
                f"try:\n    main({list(args)!r})\nexcept SystemExit:\n    pass\n"
                "print(sorted(m for m in ('pyarrow', 'torch', 'pandas') if m in sys.modules))")
        run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
        return run.stdout.strip().splitlines()[-1]

    grid = ["--grid", "n_mult=64,128"]
    assert imported("delay", "resnet18", "--variant", "oat", "--format", "json") == "[]"
    assert imported("sweep", "resnet18", *grid, "--format", "csv", "-o", str(tmp_path / "s.csv")) == "[]"
    assert imported("sweep", "resnet18", *grid, "--format", "parquet", "-o", str(tmp_path / "s.parquet")) == \
        "['pyarrow']"
