"""``hwsim report``: join run directories with cost, write the Pareto report, print the frontier."""

from __future__ import annotations

import click

from hwsim.cli.common import hardware_options
from hwsim.output import FORMATS, emit, render_rows, to_json

# The columns printed for the frontier; the report directory has all of them.
_PRINTED = ("series", "lambda_label", "run_name", "checkpoint", "width", "density", "ca", "ra")


@click.command("report")
@click.argument("runs", nargs=-1, required=True, metavar="RUN...")
@click.option("--out", required=True, metavar="DIR",
              help="Report directory: created, or replaced when it is empty or an earlier report (it holds "
                   ".hwsim-report); any other existing directory, and one that holds a RUN or lies inside one, "
                   "is refused.")
@hardware_options
@click.option("--reference", default=None, metavar="FILE.csv",
              help="Published points to draw next to the runs (columns label, variant, ca, ra, source), e.g. "
                   "hwsim/data/float_paper_reference.csv.")
@click.option("--cost", default="memory_bytes", show_default=True, metavar="AXIS",
              help="Cost axis of the frontier: memory_bytes, macs, delay_ns, params, norm_delay, norm_memory, ...")
@click.option("--checkpoint", default=None, help="Checkpoint to compare (default: best where present, else last).")
@click.option("--attack", default=None, help="Attack label to compare, e.g. 'pgd-7 eps=8/255' (default: the most "
                                             "common one).")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True,
              help="How the frontier is printed.")
def report_command(runs: tuple[str, ...], out: str, hw_spec: str, overrides: tuple[str, ...],
                   reference: str | None, cost: str, checkpoint: str | None, attack: str | None, fmt: str) -> None:
    """Join RUN directories' eval.csv with hwsim's cost and write a Pareto report into DIR.

    DIR gets report.md, points.csv, frontier.csv and figures/ (PNG + SVG); the joint frontier (cost down, CA
    and RA up) is printed.

    Example: hwsim report runs/float runs/oat --out reports/mine --cost delay_ns
    """
    import shlex

    from hwsim.hardware import load_hardware
    from hwsim.report import build_report

    hw = load_hardware(hw_spec, overrides)
    args = ["hwsim", "report", *runs, "--out", out, "--hw", hw_spec]
    for item in overrides:
        args += ["--set", item]
    for flag, value in (("--reference", reference), ("--cost", cost), ("--checkpoint", checkpoint),
                        ("--attack", attack)):
        if value is not None:
            args += [flag, value]
    command = shlex.join(args)
    result = build_report(list(runs), out, hw=hw, reference=reference, cost=cost, checkpoint=checkpoint,
                          attack=attack, command=command)
    columns = [c for c in (*_PRINTED, cost) if c in result.frontier.columns]
    rows = result.frontier[list(dict.fromkeys(columns))].to_dict(orient="records")
    if fmt == "json":
        emit(to_json({"out": str(result.out), "files": list(result.files), "cost": cost,
                      "n_points": int((result.points["origin"] == "run").sum()), "frontier": rows,
                      "command": result.command}), None)
        return
    text = render_rows(rows, fmt, columns=list(dict.fromkeys(columns)))
    if fmt == "table":
        text += f"\n\nwrote {result.out}/report.md ({len(result.files)} files)"
    emit(text, None)
