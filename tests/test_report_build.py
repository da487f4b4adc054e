"""build_report and `hwsim report`: every file written, PNGs real, bad input -> one line, exit 2, no --out; an
--out that is not a report hwsim wrote (a run, a folder of runs, any other directory, the current directory) is
refused and left as it was."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from report_helpers import FakeCostFn, standard_runs, write_run

import hwsim.report.join as join_module
from hwsim.cli import cli, main
from hwsim.errors import HwsimError
from hwsim.report import FIGURES, build_report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
REFERENCE = Path(__file__).resolve().parents[1] / "hwsim" / "data" / "float_paper_reference.csv"


@pytest.fixture
def fake_cost(monkeypatch) -> FakeCostFn:
    """The CLI uses the default cost function; route it to the fake so these tests stay fast and exact."""
    fake = FakeCostFn()
    monkeypatch.setattr(join_module, "_default_cost_fn", lambda: fake)
    return fake


def test_build_report_writes_every_file(tmp_path: Path):
    runs = [write_run(tmp_path / "runs", "float", variant="float", algorithm="float",
                      points=[(0.0, 95.0, 20.0), (1.0, 90.0, 50.0)]),
            write_run(tmp_path / "runs", "oat", variant="oat", algorithm="oat",
                      points=[(0.0, 96.0, 15.0), (1.0, 88.0, 52.0)], epoch_times=(3.0,))]
    out = tmp_path / "report"
    result = build_report(runs, out, cost_fn=FakeCostFn())
    expected = {".hwsim-report", "report.md", "points.csv", "frontier.csv"} | {
        f"figures/{stem}.{ext}" for stem in FIGURES for ext in ("png", "svg")}
    assert set(result.files) == expected
    assert {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()} == expected
    for stem in FIGURES:
        png = (out / "figures" / f"{stem}.png").read_bytes()
        assert png[:8] == PNG_SIGNATURE and len(png) > 10_000, stem
        assert (out / "figures" / f"{stem}.svg").read_text().lstrip().startswith("<?xml")
    # nothing else (no temporary directory) next to the report
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report", "runs"]

    frontier = pd.read_csv(out / "frontier.csv")
    # float (1010 B): (95, 20) and (90, 50); oat (1500 B): (96, 15) beats both on CA, (88, 52) on RA
    assert sorted(zip(frontier["run"], frontier["ca"])) == [("float", 90.0), ("float", 95.0), ("oat", 88.0),
                                                            ("oat", 96.0)]
    points = pd.read_csv(out / "points.csv")
    assert len(points) == 4 and points["front_joint"].all()
    assert list(points.loc[points["front_ca"], "ca"]) == [95.0, 96.0]
    md = (out / "report.md").read_text()
    assert "hwsim report" in md and "--cost memory_bytes" in md
    for stem in FIGURES:
        assert f"](figures/{stem}.png)" in md
    assert "| FLOAT | 1 | float | last |" in md  # a frontier row, labelled by lambda


def test_build_report_replaces_previous_report_and_keeps_it_on_error(tmp_path: Path):
    runs = standard_runs(tmp_path / "runs")
    out = tmp_path / "rep"
    build_report(runs, out, cost_fn=FakeCostFn())
    (out / "stale.txt").write_text("from an older report")
    build_report(runs[:2], out, cost_fn=FakeCostFn(), cost="macs")
    assert not (out / "stale.txt").exists()
    assert "--cost macs" in (out / "report.md").read_text()
    before = sorted(p.name for p in out.rglob("*"))
    with pytest.raises(HwsimError):
        build_report([tmp_path / "nowhere"], out, cost_fn=FakeCostFn())
    assert sorted(p.name for p in out.rglob("*")) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rep", "runs"]


def test_report_with_the_shipped_reference(tmp_path: Path):
    result = build_report(standard_runs(tmp_path / "runs"), tmp_path / "r", reference=REFERENCE,
                          cost_fn=FakeCostFn())
    refs = result.points[result.points["origin"] == "reference"]
    assert len(refs) == 8
    assert not refs["front_joint"].any()  # published points are drawn, never on the measured frontier
    float0 = refs.set_index("label").loc["FLOAT λ=0"]
    assert (float0["ca"], float0["ra"], float0["memory_bytes"]) == (94.83, 22.52, 1010)
    assert "## Reference points (published)" in (tmp_path / "r" / "report.md").read_text()


def test_cli_report_json(tmp_path: Path, fake_cost: FakeCostFn):
    runs = [str(p) for p in standard_runs(tmp_path / "runs")]
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["report", *runs, "--out", str(out), "--cost", "delay_ns",
                                      "--set", "n_mult=256", "--format", "json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["cost"] == "delay_ns" and "--set n_mult=256" in doc["command"]
    # delay: PGD-AT 100 < FLOAT 120 < OAT 150; every FLOAT point beats PGD-AT on CA or RA, every OAT point
    # is dominated by a FLOAT point (e.g. (96, 15) by (97, 20))
    assert sorted((r["run_name"], r["lambda_label"]) for r in doc["frontier"]) == [
        ("float", 0.0), ("float", 0.2), ("float", 0.7), ("float", 1.0), ("pgd0", 0.0), ("pgd1", 1.0)]
    assert {c[7].n_mult for c in fake_cost.calls} == {256}
    assert (out / "report.md").is_file()


def _cli_error(capsys, argv: list[str]) -> str:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    return err


def test_cli_run_without_eval_csv(tmp_path: Path, capsys):
    (tmp_path / "run").mkdir()
    err = _cli_error(capsys, ["report", str(tmp_path / "run"), "--out", str(tmp_path / "out")])
    assert "has no eval.csv" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_cli_reference_missing_columns(tmp_path: Path, capsys, fake_cost):
    runs = [str(p) for p in standard_runs(tmp_path / "runs")]
    bad = tmp_path / "ref.csv"
    bad.write_text("label,ca\nA,90\n")
    err = _cli_error(capsys, ["report", *runs, "--out", str(tmp_path / "out"), "--reference", str(bad)])
    assert f"reference file {bad} lacks column(s) variant, ra, source" in err
    assert not (tmp_path / "out").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ref.csv", "runs"]


def test_cli_unknown_cost_axis(tmp_path: Path, capsys):
    runs = [str(p) for p in standard_runs(tmp_path / "runs")]
    err = _cli_error(capsys, ["report", *runs, "--out", str(tmp_path / "out"), "--cost", "energy"])
    assert "unknown cost axis 'energy'; valid: params, nonzero_params, memory_bytes, macs, delay_ns" in err
    assert not (tmp_path / "out").exists()


def test_cli_reference_with_a_non_numeric_value(tmp_path: Path, capsys, fake_cost):
    runs = [str(p) for p in standard_runs(tmp_path / "runs")]
    bad = tmp_path / "ref.csv"
    bad.write_text("label,variant,ca,ra,source\nA,float,90,40,paper\nB,float,abc,41,paper\n")
    err = _cli_error(capsys, ["report", *runs, "--out", str(tmp_path / "out"), "--reference", str(bad)])
    assert f"reference file {bad}, row 2, column ca: 'abc' is not a finite number" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ref.csv", "runs"]


def test_cli_eval_csv_with_a_non_numeric_value(tmp_path: Path, capsys, fake_cost):
    runs = standard_runs(tmp_path / "runs")
    table = pd.read_csv(runs[0] / "eval.csv")
    table["ra"] = table["ra"].astype(object)
    table.loc[1, "ra"] = "n.a."
    table.to_csv(runs[0] / "eval.csv", index=False)
    err = _cli_error(capsys, ["report", *map(str, runs), "--out", str(tmp_path / "out")])
    assert f"evaluation table {runs[0] / 'eval.csv'}, row 2, column ra: 'n.a.' is not a finite number" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("column, value", [("ra", "~40"), ("width", "wide"), ("memory_bytes", "1 MB"),
                                           ("eps", "8/255"), ("ca", "inf")])
def test_reference_values_are_checked_when_read(tmp_path: Path, column, value):
    bad = tmp_path / "ref.csv"
    rows = pd.DataFrame({"label": ["A", "B"], "variant": ["float", "oat"], "ca": ["90", "91"], "ra": ["40", "41"],
                         "source": ["paper", "paper"], "model": ["small_cnn"] * 2, "dataset": ["mnist"] * 2})
    rows.loc[1, column] = value
    rows.to_csv(bad, index=False)
    with pytest.raises(HwsimError, match=rf"^reference file .*ref.csv, row 2, column {column}: '{value}' is not "
                                         r"a finite number$"):
        build_report(standard_runs(tmp_path / "runs"), tmp_path / "out", reference=bad, cost_fn=FakeCostFn())
    assert not (tmp_path / "out").exists()


def test_empty_reference_cells_are_unknown_not_errors(tmp_path: Path):
    ref = tmp_path / "ref.csv"
    ref.write_text("label,variant,ca,ra,source,model,dataset,width\nA,float,90,,paper,small_cnn,mnist,\n")
    result = build_report(standard_runs(tmp_path / "runs"), tmp_path / "out", reference=ref, cost_fn=FakeCostFn())
    row = result.points[result.points["origin"] == "reference"].iloc[0]
    assert row["ca"] == 90.0 and pd.isna(row["ra"]) and row["memory_bytes"] == 1010  # width defaults to 1.0


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_cli_refuses_an_out_that_is_holds_or_lies_in_a_run(tmp_path: Path, capsys, fake_cost):
    runs = standard_runs(tmp_path / "runs")
    (runs[0] / "checkpoints").mkdir()
    (runs[0] / "checkpoints" / "last.pt").write_bytes(b"weights")
    before = _tree(tmp_path)
    for out, why in ((runs[0], "is the run directory"), (tmp_path / "runs", "contains the run directory"),
                     (tmp_path, "contains the run directory"), (runs[1] / "report", "is inside the run directory"),
                     (tmp_path / "runs" / ".." / "runs" / runs[2].name, "is the run directory")):
        err = _cli_error(capsys, ["report", *map(str, runs), "--out", str(out)])
        assert f"output directory {str(out)!r} {why} " in err and "nothing was changed" in err
        assert _tree(tmp_path) == before
    assert fake_cost.calls == []  # refused before any cost was computed


def test_cli_refuses_an_existing_directory_hwsim_did_not_write(tmp_path: Path, capsys, fake_cost):
    runs = [str(p) for p in standard_runs(tmp_path / "runs")]
    mine = tmp_path / "mine"
    (mine / "sub").mkdir(parents=True)
    (mine / "notes.txt").write_text("my notes\n")
    (mine / "sub" / "data.csv").write_text("a,b\n1,2\n")
    before = _tree(tmp_path)
    err = _cli_error(capsys, ["report", *runs, "--out", str(mine)])
    assert (f"output directory {str(mine)!r} exists and is not a report hwsim wrote (it has files and no "
            f".hwsim-report); nothing was changed") in err
    assert _tree(tmp_path) == before and sorted(p.name for p in tmp_path.iterdir()) == ["mine", "runs"]
    hidden = tmp_path / "hidden"  # a dot file is a file: the directory is not empty
    hidden.mkdir()
    (hidden / ".config").write_text("x\n")
    assert "is not a report hwsim wrote" in _cli_error(capsys, ["report", *runs, "--out", str(hidden)])
    assert (hidden / ".config").read_text() == "x\n"
    afile = tmp_path / "file.txt"
    afile.write_text("text\n")
    assert "exists and is not a directory" in _cli_error(capsys, ["report", *runs, "--out", str(afile)])
    assert afile.read_text() == "text\n"
    assert "cannot write output directory" in _cli_error(capsys, ["report", *runs, "--out", str(afile / "rep")])
    assert fake_cost.calls == []


def test_cli_refuses_the_current_directory_and_its_parents(tmp_path: Path, capsys, monkeypatch, fake_cost):
    runs = [str(p) for p in standard_runs(tmp_path / "runs")]
    work = tmp_path / "a" / "work"
    work.mkdir(parents=True)
    (work / "keep.txt").write_text("keep\n")
    monkeypatch.chdir(work)
    before = _tree(tmp_path)
    for out, why in (("", "is the current directory"), (".", "is the current directory"),
                     ("./", "is the current directory"), ("sub/..", "is the current directory"),
                     ("..", "contains the current directory"), (str(tmp_path / "a"), "contains the current directory")):
        err = _cli_error(capsys, ["report", *runs, "--out", out])
        assert f"output directory {out!r} {why}; refusing to replace it (nothing was changed)" in err
        assert _tree(tmp_path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "runs"]
    assert fake_cost.calls == []


def test_a_filesystem_root_is_refused():
    from hwsim.files import check_output_dir  # checked without writing anything: nothing is built for "/"

    with pytest.raises(HwsimError, match=r"^output directory '/' is a filesystem root; refusing to replace it "):
        check_output_dir("/")


def test_reports_carry_the_marker_and_replace_only_reports_or_empty_directories(tmp_path: Path):
    from hwsim.files import DIR_MARKER

    runs = standard_runs(tmp_path / "runs")
    out = tmp_path / "rep"
    build_report(runs, out, cost_fn=FakeCostFn())
    assert (out / DIR_MARKER).is_file()
    build_report(runs, out, cost_fn=FakeCostFn(), cost="macs")  # a report is replaced
    assert "--cost macs" in (out / "report.md").read_text()
    empty = tmp_path / "empty"
    empty.mkdir()
    build_report(runs, empty, cost_fn=FakeCostFn())  # so is an empty directory
    assert (empty / "report.md").is_file()
    (empty / DIR_MARKER).unlink()  # a report whose marker was removed is kept
    with pytest.raises(HwsimError, match="is not a report hwsim wrote"):
        build_report(runs, empty, cost_fn=FakeCostFn())
    assert (empty / "report.md").is_file()
    link = tmp_path / "latest"  # a link to a report: the report is replaced, the link stays
    link.symlink_to(out)
    build_report(runs, link, cost_fn=FakeCostFn(), cost="params")
    assert link.is_symlink() and "--cost params" in (out / "report.md").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "latest", "rep", "runs"]


def test_the_committed_reports_carry_the_marker():
    """`python -m hwsim.report.paper --out reports/paper` and `python examples/cpu_demo.py` (--out reports/demo)
    replace these directories: without the marker they would refuse to."""
    from hwsim.files import DIR_MARKER, check_output_dir

    root = Path(__file__).resolve().parents[1]
    for name in ("paper", "demo"):
        assert (root / "reports" / name / DIR_MARKER).is_file(), name
        check_output_dir(root / "reports" / name)  # reads only: raises when a rebuild would be refused
