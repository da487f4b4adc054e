"""``hwsim count``: parameters, memory and MACs of a model, traced at its knob setting."""

from __future__ import annotations

import click

from hwsim.cli.common import hardware_options, output_options
from hwsim.cli.modelopts import make_setting, masks_option, model_options, with_run_masks
from hwsim.output import emit


@click.command("count")
@click.argument("model")
@model_options()
@masks_option
@click.option("--ops", "ops", type=click.Choice(["macs", "all"]), default="macs", show_default=True,
              help="macs: conv + linear MACs; all: also BN, activations, adds, pooling and conditioning ops.")
@click.option("--include-bn", is_flag=True, help="Count BN and alpha in memory_bytes (the paper excludes them).")
@hardware_options
@output_options
def count_command(model: str, variant: str, dataset: str | None, input_size: str | None,
                  width: float | None, widths: str | None, density: float | None, film_dim: int | None, bn: str | None,
                  masks: str | None,
                  ops: str, include_bn: bool, hw_spec: str, overrides: tuple[str, ...], fmt: str,
                  output: str | None) -> None:
    """Parameters (total / active / nonzero, by group), memory and MACs per layer and in total.

    MODEL is a registered name (see `hwsim models`) or a user factory `path/to/file.py:factory` /
    `package.module:factory`. Memory uses the hardware's b_w.

    \b
    Examples:
      hwsim count resnet34 --variant oat
      hwsim count wrn16_8 --variant oat --film-dim 128 --bn dual --dataset svhn --format json
      hwsim count resnet34 --variant float-slim --width 0.5 --ops all
    """
    from hwsim.shapecache import analyze
    from hwsim.hardware import load_hardware
    from hwsim.output import analysis_document, render_analysis

    hw = load_hardware(hw_spec, overrides)
    setting = make_setting(model, variant, dataset, input_size, width, widths, density, film_dim, bn)
    setting = with_run_masks(setting, masks, variant, density=density, bn=bn, film_dim=film_dim, widths=widths)
    analysis = analyze(setting, hw, include_bn=include_bn)
    document = analysis_document(analysis, ops_all=ops == "all")
    emit(render_analysis(document, fmt, command="count"), output)
