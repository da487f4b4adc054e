"""``hwsim compare``: every variant of a model side by side."""

from __future__ import annotations

import click

from hwsim.cli.common import hardware_options, output_options
from hwsim.cli.modelopts import make_setting, model_options
from hwsim.output import emit


@click.command("compare")
@click.argument("model")
@model_options(variant=False)
@click.option("--variants", default=None,
              help="Comma-separated variants to compare (default: every variant).")
@hardware_options
@output_options
def compare_command(model: str, dataset: str, input_size: str | None, width: float | None, widths: str,
                    density: float | None, film_dim: int, bn: str, variants: str | None, hw_spec: str,
                    overrides: tuple[str, ...], fmt: str, output: str | None) -> None:
    """Params, memory, MACs and delay of every variant, with delay normalised to the base model.

    Width applies to the *-slim variants and density (default 0.5 here) to the floats-* variants.

    \b
    Examples:
      hwsim compare resnet34
      hwsim compare wrn16_8 --dataset svhn --variants base,float,oat --format markdown
    """
    from hwsim.cost import compare
    from hwsim.shapecache import analyze
    from hwsim.hardware import load_hardware
    from hwsim.output import compare_rows, render_compare
    from models import VARIANTS

    hw = load_hardware(hw_spec, overrides)
    chosen = tuple(v.strip() for v in variants.split(",")) if variants else VARIANTS
    setting = make_setting(model, "base", dataset, input_size, width, widths, density, film_dim, bn,
                           default_density=0.5)
    rows = compare_rows(compare(setting, chosen, hw, using=analyze))
    emit(render_compare(rows, fmt, model=model, hw=hw), output)
