"""``hwsim sweep``: total delay of a model over a grid of hardware configurations."""

from __future__ import annotations

import dataclasses

import click

from hwsim.cli.common import hardware_options, output_options
from hwsim.errors import HwsimError
from hwsim.files import written
from hwsim.cli.modelopts import make_setting, model_options
from hwsim.output import FORMATS, emit


@click.command("sweep")
@click.argument("model")
@model_options()
@click.option("--grid", "axes", multiple=True, required=True, metavar="FIELD=V1,V2,...",
              help="Hardware field values to sweep (repeatable; the product of all axes is evaluated), "
                   "e.g. --grid n_mult=64,128,256 --grid n_bank=1:8:1.")
@click.option("--pareto", is_flag=True,
              help="Keep only the non-dominated configurations of delay (or --pareto-by energy) vs hardware size "
                   "(n_mult x n_bank, or array_rows x array_cols on a systolic array; printed as hw_size), "
                   "sorted by size.")
@click.option("--pareto-by", "pareto_by", type=click.Choice(("delay", "energy")), default=None,
              help="What --pareto minimises beside the hardware size (default delay; energy implies --energy).")
@click.option("--energy", is_flag=True,
              help="Add energy_pj, plain_energy_pj and norm_energy (SPEC 3.1); the hardware must have the energy "
                   "fields (asic65 does).")
@hardware_options
@output_options(formats=(*FORMATS, "parquet"))
def sweep_command(model: str, variant: str, dataset: str, input_size: str | None, width: float | None,
                  widths: str, density: float | None, film_dim: int, bn: str | None, axes: tuple[str, ...], pareto: bool,
                  pareto_by: str | None, energy: bool, hw_spec: str, overrides: tuple[str, ...], fmt: str,
                  output: str | None) -> None:
    """Total delay of MODEL (as --variant) and of its plain network over a hardware grid.

    The model is traced once (or read from the layer-shape cache); totals are kept per axis (reads depend on
    b_io, b_w and n_bank, multiplier passes on n_mult), so a sweep of millions of configurations takes
    seconds. CSV and Parquet are written in chunks: for large grids use --format parquet -o FILE (binary
    columns, the fastest; needs pyarrow, the `parquet` extra) or --format csv. A Parquet file keeps the
    sweep's description (what --format json prints besides the rows) as JSON under its schema metadata key
    "hwsim". On a systolic array (--hw systolic32) the grid spans array_rows, array_cols, vector_lanes and
    t_cycle_ns, and each row has the model's cycles; --energy adds the energy of SPEC 3.1.

    \b
    Examples:
      hwsim sweep resnet34 --variant oat --grid n_mult=64,128,175,256 --grid n_bank=2,4,8
      hwsim sweep resnet34 --grid n_mult=1:4096:1 --grid n_bank=1:64:1 --grid b_io=8,16,32 --pareto
      hwsim sweep resnet34 --grid n_mult=1:10000:1 --grid n_bank=1:100:1 --format csv -o sweep.csv
      hwsim sweep resnet34 --grid n_mult=1:10000:1 --grid n_bank=1:100:1 --format parquet -o sweep.parquet
      hwsim sweep resnet18 --variant oat --grid n_bank=1:8:1 --grid b_w=4,8,16 --pareto --pareto-by energy
      hwsim sweep resnet18 --variant oat --hw systolic32 --grid array_rows=8:128:8 --grid array_cols=8:128:8 --pareto
    """
    from hwsim.delay import hardware_grid
    from hwsim.hardware import load_hardware, parse_grid
    from hwsim.output import render_rows, to_json
    from hwsim.shapecache import model_shapes
    from hwsim.sweep import Sweep, require_pyarrow, rows, write_csv, write_parquet

    if fmt == "parquet":  # refused before the model is traced
        if output is None:
            raise HwsimError("--format parquet writes a binary file; give --output FILE")
        require_pyarrow()
    hw = load_hardware(hw_spec, overrides)
    if pareto_by is not None and not pareto:
        raise HwsimError("--pareto-by applies with --pareto only")
    energy = energy or pareto_by == "energy"
    if energy:  # refused before any tracing
        hw.require_energy()
    grid_axes = parse_grid(axes)
    fixed = sorted({text.split("=", 1)[0].strip() for text in overrides} & set(grid_axes))
    if fixed:  # the grid would win: say so instead of ignoring --set
        raise HwsimError(f"--set {fixed[0]} conflicts with --grid {fixed[0]}: a swept field takes the grid's values")
    if hw.systolic:
        from hwsim.sweep import SystolicSweep

        SystolicSweep(hw, grid_axes, [], [])  # the grid's fields and values, checked before any tracing
    else:
        from hwsim.hardware import SYSTOLIC_SWEEP_FIELDS

        wrong = [name for name in grid_axes if name in SYSTOLIC_SWEEP_FIELDS]
        if wrong:
            raise HwsimError(f"--grid {wrong[0]} does not apply to arch {hw.arch!r} (use --hw systolic32 or a "
                             "systolic TOML file to sweep an array)")
        grid = hardware_grid(hw, sparse=True, **grid_axes)
    setting = make_setting(model, variant, dataset, input_size, width, widths, density, film_dim, bn)
    shapes, plain = model_shapes(setting)
    if hw.systolic:
        sweep = SystolicSweep(hw, grid_axes, shapes, plain, energy=energy)
        flat = sweep.pareto(pareto_by or "delay") if pareto else None
        size = "array_rows x array_cols"
    else:
        sweep = Sweep(grid, tuple(grid_axes), shapes, plain, hardware=hw, energy=energy)
        flat = (sweep.pareto_energy() if pareto_by == "energy" else sweep.pareto()) if pareto else None
        size = "n_mult x n_bank"
    progress = _progress(len(flat) if flat is not None else len(sweep))
    about = {"model": model, "variant": variant, "setting": dataclasses.asdict(setting), "hardware": hw.as_dict(),
             "grid": grid_axes,
             **({"pareto": f"{size} vs {'energy_pj' if pareto_by == 'energy' else 'delay_ns'}"} if pareto else {})}
    if fmt == "csv":
        _stream(lambda write: write_csv(sweep, write, flat=flat, hw_size=pareto, progress=progress), output)
        return
    if fmt == "parquet":
        with written(output) as tmp:
            write_parquet(sweep, tmp, flat=flat, hw_size=pareto, metadata={"hwsim": to_json(about)},
                          progress=progress)
        return
    table = rows(sweep, flat, hw_size=pareto)
    if fmt == "json":
        emit(to_json({**about, "rows": table}), output)
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

    if output is None:
        produce(sys.stdout.write)
        return
    with written(output) as tmp, tmp.open("w", encoding="utf-8", newline="") as handle:
        produce(handle.write)
