"""The ``hwsim`` command line.

The CLI only parses and prints: every number comes from a public library function. Subcommands live in
their own modules and are imported only when invoked, so that ``hwsim hw list`` does not pay for importing
torch. User errors (:class:`hwsim.errors.HwsimError` and click's usage errors) become one line on stderr and
exit code 2.
"""

from __future__ import annotations

import importlib
import sys
import warnings

import click

from hwsim import __version__
from hwsim.errors import HwsimError

# name -> "module:attribute"; the help text is read from the command itself when it is loaded.
_COMMANDS: dict[str, str] = {
    "models": "hwsim.cli.models_cmd:models_command",
    "hw": "hwsim.cli.hw:hw_group",
    "count": "hwsim.cli.count:count_command",
    "delay": "hwsim.cli.delay:delay_command",
    "compare": "hwsim.cli.compare:compare_command",
    "sweep": "hwsim.cli.sweep:sweep_command",
    "train": "hwsim.cli.train:train_command",
    "eval": "hwsim.cli.evaluate:eval_command",
    "report": "hwsim.cli.report:report_command",
    "export": "hwsim.cli.export:export_command",
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [name for name in _COMMANDS if self._load(name) is not None]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return self._load(cmd_name)

    @staticmethod
    def _load(name: str) -> click.Command | None:
        target = _COMMANDS.get(name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:  # that command is not built yet
                return None
            raise
        return getattr(module, attr)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="hwsim")
def cli() -> None:
    """Cost, delay and accuracy of robust, in-situ tunable CNNs (FLOAT, OAT, FLOATS, slimmable).

    Conventions: MACs are multiply-accumulates of conv and linear layers (one MAC = one multiply and one
    add); delays are in nanoseconds; memory is in bytes at the preset's weight bit-width.
    """


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings of hwsim itself as one line on stderr (others as Python prints them)."""
    if category.__module__.startswith("hwsim"):
        click.echo(f"hwsim: warning: {message}", err=True)
    else:
        _python_show_warning(message, category, filename, lineno, file, line)


_python_show_warning = warnings.showwarning


def main(argv: list[str] | None = None) -> None:
    """Console entry point: run the CLI, turning user errors into one line and exit code 2."""
    warnings.showwarning = _show_warning
    try:
        cli.main(args=argv, prog_name="hwsim", standalone_mode=False)
    except HwsimError as exc:
        click.echo(f"hwsim: error: {exc}", err=True)
        sys.exit(2)
    except OSError as exc:  # a write the commands did not name themselves: a full disk is one line, not a traceback
        from hwsim.files import WRITE_ERRNOS

        if exc.errno not in WRITE_ERRNOS:
            raise
        where = f" writing {exc.filename}" if exc.filename else ""
        click.echo(f"hwsim: error: {exc.strerror}{where}", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo("hwsim: aborted", err=True)
        sys.exit(130)
    except click.exceptions.NoArgsIsHelpError as exc:  # `hwsim` (or a group) alone: its help, as written
        click.echo(exc.ctx.get_help() if exc.ctx is not None else exc.format_message(), err=True)
        sys.exit(2)
    except click.ClickException as exc:
        message = " ".join(exc.format_message().split())
        click.echo(f"hwsim: error: {message}", err=True)
        sys.exit(exc.exit_code if exc.exit_code != 1 else 2)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    sys.exit(0)
