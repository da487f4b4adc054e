"""Options that pick a model, variant and knob setting (shared by count, delay, compare, sweep)."""

from __future__ import annotations

from collections.abc import Callable

import click

from hwsim.errors import HwsimError


#: Largest C, H or W of --input-size (a 3 x 4096 x 4096 input traces in a few GB of activations).
MAX_INPUT_SIDE = 4096


def parse_input_size(text: str | None, in_channels: int | None = None) -> tuple[int, int, int] | None:
    """``C,H,W``, ``HxW`` or ``H`` (square; channels from the dataset) -> (C, H, W)."""
    if text is None:
        return None
    parts = text.replace("x", ",").split(",")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise HwsimError(f"--input-size {text!r} must be C,H,W or H or HxW with positive integers") from None
    if len(values) == 2 and "x" not in text:  # "3,32" reads as C,H as often as H,W: refuse to guess
        raise HwsimError(f"--input-size {text!r} is ambiguous; write C,H,W (e.g. 3,32,32), HxW or H")
    if len(values) == 1:
        values = values * 2
    if len(values) == 2:
        values = [in_channels or 3, *values]
    if len(values) != 3 or min(values) < 1:
        raise HwsimError(f"--input-size {text!r} must be C,H,W or H or HxW with positive integers")
    if max(values) > MAX_INPUT_SIDE:  # a trace allocates activations of this size: refuse before it runs
        raise HwsimError(f"--input-size {text!r}: each of C, H, W must be in [1, {MAX_INPUT_SIDE}]")
    return tuple(values)  # type: ignore[return-value]


def parse_floats(text: str, option: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise HwsimError(f"{option} {text!r} must be comma-separated numbers") from None


def model_options(variant: bool = True) -> Callable[[Callable], Callable]:
    """--variant, --dataset, --input-size, --width, --widths, --density, --film-dim, --bn."""

    def decorate(func: Callable) -> Callable:
        options = [
            click.option("--bn", default="single", show_default=True, metavar="single|dual",
                         help="BN of conditional variants; single is the paper's cost convention."),
            click.option("--film-dim", type=int, default=1, show_default=True,
                         help="d of the FiLM lambda encoding: 1 (the paper's 2C + 4C^2) or 128 (OAT training)."),
            click.option("--density", type=float, default=None,
                         help="Global weight density of floats-* variants, in (0, 1] (default 1; compare: 0.5)."),
            click.option("--widths", default="0.5,1.0", show_default=True,
                         help="Switchable widths S_f of *-slim variants."),
            click.option("--width", type=float, default=None, help="Active width of *-slim variants (default: widest)."),
            click.option("--input-size", default=None, metavar="C,H,W|H",
                         help="Input size; default: the dataset's (cifar10: 3,32,32)."),
            click.option("--dataset", default="cifar10", show_default=True,
                         help="Dataset preset fixing input size and classes (see `hwsim models`)."),
        ]
        if variant:
            options.append(click.option("--variant", default="base", show_default=True,
                                        help="Variant: base, float, oat, floats-i, floats-c, float-slim, oat-slim, "
                                             "floats-slim."))
        for option in options:
            func = option(func)
        return func

    return decorate


def make_setting(model: str, variant: str, dataset: str, input_size: str | None, width: float | None,
                 widths: str, density: float | None, film_dim: int, bn: str, *, default_density: float = 1.0):
    """Resolve CLI values into a :class:`hwsim.cost.ModelSetting` (validated when the model is built)."""
    from hwsim.cost import ModelSetting
    from models import get_dataset

    data = get_dataset(dataset)
    if density is not None and not 0.0 < density <= 1.0:
        raise HwsimError(f"--density {density!r} must lie in (0, 1]")
    width_set = parse_floats(widths, "--widths")
    if width is not None and not any(abs(width - w) < 1e-9 for w in width_set):
        raise HwsimError(f"--width {width:g} is not one of the widths {', '.join(f'{w:g}' for w in width_set)}")
    return ModelSetting(model=model, variant=variant, dataset=data.name,
                        input_size=parse_input_size(input_size, data.in_channels), film_dim=film_dim, bn=bn,
                        widths=width_set, width=width, density=default_density if density is None else density)
