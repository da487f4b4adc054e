"""``hwsim compare``: every variant of a model side by side."""

from __future__ import annotations

import click

from hwsim.cli.common import hardware_options, output_options
from hwsim.cli.modelopts import make_setting, model_options
from hwsim.errors import HwsimError
from hwsim.output import emit


@click.command("compare")
@click.argument("model")
@model_options(variant=False)
@click.option("--variants", default=None,
              help="Comma-separated variants to compare (default: every variant).")
@hardware_options
@output_options
def compare_command(model: str, dataset: str | None, input_size: str | None, width: float | None,
                    widths: str | None, density: float | None, film_dim: int | None, bn: str | None,
                    variants: str | None, hw_spec: str, overrides: tuple[str, ...], fmt: str,
                    output: str | None) -> None:
    """Params, memory, MACs and delay of every variant, with delay normalised to the base model.

    Width applies to the *-slim variants, density (default 0.5 here) to the floats-* variants and the FiLM
    dimension to the oat* variants; an option none of the chosen variants uses exits 2. MODEL may be a user
    factory (`path/to/file.py:factory`): every variant is built from it by module surgery. Without
    --variants, every variant that applies to the model is compared (those the model refuses are named on
    stderr with its reason); a variant named in --variants that does not apply exits 2.

    \b
    Examples:
      hwsim compare resnet34
      hwsim compare wrn16_8 --dataset svhn --variants base,float,oat --format markdown
      hwsim compare examples/my_net.py:build --width 0.5
    """
    from hwsim.cost import compare
    from hwsim.shapecache import analyze
    from hwsim.hardware import load_hardware
    from hwsim.output import compare_rows, render_compare
    from hwsim.variants import VARIANTS

    hw = load_hardware(hw_spec, overrides)
    chosen = VARIANTS if variants is None else tuple(v.strip() for v in variants.split(","))
    if not all(chosen) or len(set(chosen)) != len(chosen):
        raise HwsimError(f"--variants {variants!r} must name distinct variants, each once; valid: "
                         f"{', '.join(VARIANTS)}")
    setting = make_setting(model, "base", dataset, input_size, width, widths, density, film_dim, bn,
                           default_density=0.5, variants=chosen)
    reasons: dict[str, str] = {}
    results = compare(setting, chosen, hw, only_applicable=variants is None, using=analyze, left_out=reasons)
    if not results:
        why = f": {reasons['base']}" if "base" in reasons else ""
        raise HwsimError(f"no variant applies to {model!r} (not even base){why}")
    left_out = [v for v in chosen if v not in {s.variant for s, _ in results}]
    if left_out:  # by default every variant that applies; name the ones that do not, with the model's reason
        click.echo(f"hwsim: variants that do not apply to {model} left out: {', '.join(left_out)}", err=True)
        for variant in left_out:
            if variant in reasons:
                click.echo(f"hwsim: note: {reasons[variant]}", err=True)
    emit(render_compare(compare_rows(results), fmt, model=model, hw=hw), output)
