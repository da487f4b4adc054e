"""``hwsim sweep``: total delay of a model over a grid of hardware configurations."""

from __future__ import annotations

import click

from hwsim.cli.common import hardware_options, output_options
from hwsim.cli.modelopts import make_setting, model_options
from hwsim.output import emit


@click.command("sweep")
@click.argument("model")
@model_options()
@click.option("--grid", "axes", multiple=True, required=True, metavar="FIELD=V1,V2,...",
              help="Hardware field values to sweep (repeatable; the product of all axes is evaluated), "
                   "e.g. --grid n_mult=64,128,256 --grid n_bank=1:8:1.")
@hardware_options
@output_options
def sweep_command(model: str, variant: str, dataset: str, input_size: str | None, width: float | None,
                  widths: str, density: float | None, film_dim: int, bn: str, axes: tuple[str, ...], hw_spec: str,
                  overrides: tuple[str, ...], fmt: str, output: str | None) -> None:
    """Total delay of MODEL (as --variant) and of its plain network over a hardware grid.

    The model is traced once; the delay model evaluates every configuration in one vectorised call.

    \b
    Example:
      hwsim sweep resnet34 --variant oat --grid n_mult=64,128,175,256 --grid n_bank=2,4,8
    """
    import numpy as np

    from hwsim.cost import build_model, plain_shapes
    from hwsim.delay import hardware_grid, model_delay_grid
    from hwsim.hardware import load_hardware, parse_grid
    from hwsim.output import render_rows, to_json
    from hwsim.trace import trace_model

    hw = load_hardware(hw_spec, overrides)
    grid_axes = parse_grid(axes)
    grid = hardware_grid(hw, sparse=True, **grid_axes)
    setting = make_setting(model, variant, dataset, input_size, width, widths, density, film_dim, bn)
    trace = trace_model(build_model(setting), setting.resolved_input_size())
    total = model_delay_grid(trace.shapes(), grid).reshape(-1)
    plain = model_delay_grid(plain_shapes(trace), grid).reshape(-1)
    values = {name: np.broadcast_to(getattr(grid, name), grid.shape).reshape(-1) for name in grid_axes}
    rows = [{**{name: values[name][i].item() for name in grid_axes}, "delay_ns": float(total[i]),
             "plain_delay_ns": float(plain[i]), "norm_delay": float(total[i] / plain[i])}
            for i in range(len(grid))]
    if fmt == "json":
        emit(to_json({"model": model, "variant": variant, "hardware": hw.as_dict(), "grid": grid_axes,
                      "rows": rows}), output)
    else:
        emit(render_rows(rows, fmt), output)
