"""``hwsim sweep``: total delay of a model over a grid of hardware configurations."""

from __future__ import annotations

import dataclasses

import click

from hwsim.cli.common import hardware_options, output_options
from hwsim.errors import HwsimError
from hwsim.cli.modelopts import make_setting, model_options
from hwsim.output import emit


@click.command("sweep")
@click.argument("model")
@model_options()
@click.option("--grid", "axes", multiple=True, required=True, metavar="FIELD=V1,V2,...",
              help="Hardware field values to sweep (repeatable; the product of all axes is evaluated), "
                   "e.g. --grid n_mult=64,128,256 --grid n_bank=1:8:1.")
@click.option("--pareto", is_flag=True,
              help="Keep only the non-dominated configurations of delay vs hardware size (n_mult x n_bank, "
                   "printed as hw_size), sorted by size.")
@hardware_options
@output_options
def sweep_command(model: str, variant: str, dataset: str, input_size: str | None, width: float | None,
                  widths: str, density: float | None, film_dim: int, bn: str, axes: tuple[str, ...], pareto: bool,
                  hw_spec: str, overrides: tuple[str, ...], fmt: str, output: str | None) -> None:
    """Total delay of MODEL (as --variant) and of its plain network over a hardware grid.

    The model is traced once (or read from the layer-shape cache); totals are kept per axis (reads depend on
    b_io, b_w and n_bank, multiplier passes on n_mult), so a sweep of millions of configurations takes
    seconds. CSV is written in chunks: use --format csv (with --output) for large grids.

    \b
    Examples:
      hwsim sweep resnet34 --variant oat --grid n_mult=64,128,175,256 --grid n_bank=2,4,8
      hwsim sweep resnet34 --grid n_mult=1:4096:1 --grid n_bank=1:64:1 --grid b_io=8,16,32 --pareto
      hwsim sweep resnet34 --grid n_mult=1:10000:1 --grid n_bank=1:100:1 --format csv -o sweep.csv
    """
    from hwsim.delay import hardware_grid
    from hwsim.hardware import load_hardware, parse_grid
    from hwsim.output import render_rows, to_json
    from hwsim.shapecache import model_shapes
    from hwsim.sweep import Sweep, rows, write_csv

    hw = load_hardware(hw_spec, overrides)
    grid_axes = parse_grid(axes)
    grid = hardware_grid(hw, sparse=True, **grid_axes)
    setting = make_setting(model, variant, dataset, input_size, width, widths, density, film_dim, bn)
    shapes, plain = model_shapes(setting)
    sweep = Sweep(grid, tuple(grid_axes), shapes, plain)
    flat = sweep.pareto() if pareto else None
    if fmt == "csv":
        _stream(lambda write: write_csv(sweep, write, flat=flat, hw_size=pareto, progress=_progress(len(flat) if flat is not None else len(sweep))),
                output)
        return
    table = rows(sweep, flat, hw_size=pareto)
    if fmt == "json":
        emit(to_json({"model": model, "variant": variant, "setting": dataclasses.asdict(setting),
                      "hardware": hw.as_dict(), "grid": grid_axes,
                      **({"pareto": "n_mult x n_bank vs delay_ns"} if pareto else {}), "rows": table}), output)
    else:
        emit(render_rows(table, fmt), output)


def _progress(total: int):
    """Progress on stderr for sweeps of more than one chunk, when stderr is a terminal."""
    import sys

    from hwsim.sweep import CHUNK

    if total <= CHUNK or not sys.stderr.isatty():
        return None

    def report(done: int, of: int) -> None:
        click.echo(f"\rsweep: {done:,} / {of:,} rows", err=True, nl=done >= of)

    return report


def _stream(produce, output: str | None) -> None:
    """Run ``produce(write)`` into stdout or, atomically, into the file ``output``."""
    import sys
    from pathlib import Path

    if output is None:
        produce(sys.stdout.write)
        return
    path = Path(output)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with tmp.open("w", encoding="utf-8", newline="") as handle:
            produce(handle.write)
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise HwsimError(f"cannot write {str(path)!r}: {exc.strerror or exc}") from None
