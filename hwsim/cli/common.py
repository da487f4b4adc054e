"""Options shared by several subcommands."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import click

from hwsim.output import FORMATS


def _no_cache(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value:
        from hwsim import shapecache

        token = shapecache.set_enabled(False)
        ctx.call_on_close(lambda: shapecache._enabled.reset(token))


def _not_empty(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None and not value.strip():
        raise click.BadParameter("is empty; give a file name, or leave it out for stdout")
    return value


def hardware_options(func: Callable) -> Callable:
    """``--hw PRESET|FILE.toml``, repeatable ``--set KEY=VALUE`` and ``--no-cache``."""
    func = click.option(
        "--no-cache", is_flag=True, expose_value=False, is_eager=True, callback=_no_cache,
        help="Trace the model afresh instead of reading its layer shapes from the cache (see the README).",
    )(func)
    func = click.option(
        "--set",
        "overrides",
        multiple=True,
        metavar="KEY=VALUE",
        help="Override one hardware field, e.g. --set n_mult=256 (repeatable).",
    )(func)
    return click.option(
        "--hw",
        "hw_spec",
        default="asic65",
        show_default=True,
        metavar="PRESET|FILE.toml",
        help="Hardware preset name (see `hwsim hw list`) or a TOML file.",
    )(func)


def output_options(func: Callable | None = None, *, formats: Sequence[str] = FORMATS) -> Callable:
    """``--format`` and ``--output``: ``@output_options``, or ``@output_options(formats=...)`` for a command that
    writes more formats than the shared ones (``sweep``: Parquet), so that only its ``--help`` lists them."""
    if func is None:
        return functools.partial(output_options, formats=formats)
    func = click.option(
        "--output", "-o", type=click.Path(dir_okay=False), default=None, callback=_not_empty,
        help="Write to FILE instead of stdout."
    )(func)
    return click.option(
        "--format", "fmt", type=click.Choice(formats), default="table", show_default=True, help="Output format."
    )(func)
