"""``hwsim train``: parse flags into a TrainConfig and call :func:`hwsim.train.trainer.train`."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from hwsim.errors import HwsimError
from hwsim.train.options import ALGORITHM_DECLARATIONS, DECLARED, Option, parse_fraction, per_algorithm, users

# (torch-free: hwsim.train.options is the one source of the algorithms' and extensions' options; the flags
# below read their help, the defaults shown and the range checked at parsing from it)
_RESUME_ALLOWED = {"device", "workers", "stop_after", "resume", "out", "resume_from"}
_NOT_CONFIG = {"out", "resume", "config_file", "stop_after", "resume_from"}


@contextlib.contextmanager
def _interrupt_hint(run: Path) -> Iterator[None]:
    """Ctrl-C: say where the run is and how to continue it, exit 130, no traceback."""
    try:
        yield
    except KeyboardInterrupt:
        if (run / "checkpoints" / "last.pt").exists():
            click.echo(f"hwsim: interrupted; {run} keeps its last completed epoch. Continue with: "
                       f"hwsim train --resume {run}", err=True)
        else:
            click.echo("hwsim: interrupted before the first epoch completed; nothing was kept", err=True)
        raise SystemExit(130) from None


class _DeclaredType(click.ParamType):
    """A declared option's value on the command line: parsed as its type and checked against its range, with
    the message the config loader gives (``beta must be a number in [0, 1000], got 1e+308``)."""

    def __init__(self, option: Option) -> None:
        self.option = option
        self.name = {"number": "number", "integer": "integer", "numbers": "list", "integers": "list"}[option.kind]

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        option = self.option
        if option.kind in ("numbers", "integers"):
            return value  # a comma-separated list: TrainConfig's loader splits and checks it
        if option.kind == "integer":
            try:
                number: Any = int(str(value).strip())
            except ValueError:
                self.fail(f"{option.field} must be an integer, got {value!r}", param, ctx)
        else:
            try:
                number = parse_fraction(value, option.field)
            except HwsimError as exc:
                self.fail(str(exc), param, ctx)
        problem = option.problem(number)
        if problem is not None:
            self.fail(problem, param, ctx)
        return number


def _declared_help(option: Option) -> str:
    """``trades, mart: weight of the KL term (default 6; in [0, 1000]).``: who uses it (an algorithm's option),
    the declared help, default and range."""
    who = users(option.field)
    said = f"default {option.shown_default()}"
    if option.range_text() is not None:
        said += f"; in {option.range_text()}"
    return f"{', '.join(who) + ': ' if who else ''}{option.help} ({said})."


def _declared_option(field: str) -> Any:
    """The click option of a declared field (its flag, type and help from :mod:`hwsim.train.options`)."""
    option = DECLARED[field]
    flag = option.cli_flag
    if option.kind == "switch":
        return click.option(f"{flag}/--no-{flag[2:]}", field, default=None, help=_declared_help(option))
    return click.option(flag, field, type=_DeclaredType(option), help=_declared_help(option))


def _algorithms(bullettrain: bool = False) -> str:
    return ", ".join(name for name, d in ALGORITHM_DECLARATIONS.items() if d.bullettrain or not bullettrain)


@click.command("train")
@click.option("--model", help="Registered model name or file.py:factory (see `hwsim models`).")
@click.option("--variant", help="Model variant: base, float, oat, ... (default base).")
@click.option("--algorithm", help=f"Training algorithm: {_algorithms()} (default pgd-at).")
@click.option("--dataset", help="cifar10, cifar100, svhn, stl10, mnist, synthetic (default cifar10).")
@click.option("--data-dir", type=click.Path(file_okay=False), help="Root of the dataset files.")
@click.option("--epochs", type=int, help="Epochs (default 200).")
@click.option("--batch-size", type=int, help="Global batch size (default 128).")
@click.option("--lr", help="Initial learning rate (default 0.1).")
@click.option("--momentum", help="SGD momentum (default 0.9).")
@click.option("--weight-decay", help="Weight decay (default 5e-4).")
@click.option("--schedule", help="cosine, multistep, constant (per epoch) or cyclic (one-cycle per batch, "
              "peak --lr at 2/5 of the run; Fast AT) (default cosine).")
@click.option("--eps", help=f"Training attack L-inf radius, e.g. 8/255 (default {per_algorithm('eps')}).")
@click.option("--step-size", help="Training attack step, e.g. 2/255, or 'oat' for min(1.25eps, eps+4/255)/k "
              f"(default {per_algorithm('step_size')}).")
@click.option("--attack-steps", type=int, help=f"PGD steps k for training (default {per_algorithm('steps')}).")
@click.option("--attack-mode", help="Model mode while generating training attacks: eval or train "
              f"(default {per_algorithm('mode')}).")
@_declared_option("pgd_lambda")
@_declared_option("noise_lambda")
@_declared_option("prune_rate")
@_declared_option("beta")
@_declared_option("replays")
@_declared_option("fast_step")
@_declared_option("early_stop")
@click.option("--bullettrain/--no-bullettrain", default=None,
              help=f"Per-sample attack steps (BulletTrain) for {_algorithms(bullettrain=True)}.")
@_declared_option("bt_steps")
@_declared_option("bt_p")
@_declared_option("bt_gamma")
@click.option("--alpha-weight-decay/--no-alpha-weight-decay", default=None,
              help="Weight decay on FLOAT's noise scales alpha (default off, as in PNI).")
@click.option("--dropout", help="Dropout (default 0.3 for wrn16_8 and wrn40_2 as in OAT's reference, else 0).")
@_declared_option("oat_lambdas")
@click.option("--film-dim", type=int, help="oat: FiLM lambda encoding size d (default 128).")
@click.option("--bn", help="single or dual (default dual).")
@click.option("--widths", help="Slimmable widths, comma-separated (default 0.5,1.0).")
@click.option("--density", help="Weight density for floats variants (default 1.0).")
@click.option("--seed", type=int, help="Random seed (default 0).")
@click.option("--val-size", type=int, help="Training images held out for per-epoch CA/RA (default 1000).")
@click.option("--synthetic-size", type=int, help="Training images of the synthetic dataset (default 2000).")
@click.option("--workers", type=int, help="DataLoader workers (default 0).")
@click.option("--device", help="auto, cpu, cuda or cuda:N (default auto).")
@click.option("--amp/--no-amp", default=None, help="Mixed precision + channels_last on CUDA (default on).")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="TOML file of config keys.")
@click.option("--out", type=click.Path(file_okay=False), help="New run directory (must not exist or be empty).")
@click.option("--resume", type=click.Path(file_okay=False), help="Continue this run directory exactly.")
@click.option("--stop-after", type=int, help="Stop this invocation after N more epochs (resume later).")
@click.option("--resume-from", type=click.Choice(["last", "best"]), default=None,
              help="With --resume: the checkpoint to continue from (default last; an unreadable last.pt stops "
                   "with a hint to continue from best).")
@click.pass_context
def train_command(ctx: click.Context, **options: Any) -> None:
    """Adversarially train a model (PGD-AT, FLOAT, OAT, Fast, Free, TRADES, MART) into a run directory.

    Writes RUN/config.json, RUN/metrics.jsonl (CA/RA in percent per epoch) and RUN/checkpoints/{last,best}.pt.
    Under `torchrun --nproc_per_node N` it trains with DistributedDataParallel.
    """
    from hwsim.train.trainer import train, train_from_options

    given = {name for name in options
             if ctx.get_parameter_source(name) is ParameterSource.COMMANDLINE and options[name] is not None}
    if options["resume"]:
        extra = sorted(given - _RESUME_ALLOWED)
        if extra:
            flag = {param.name: param.opts[0] for param in ctx.command.params}
            flags = ", ".join(flag[name] for name in extra)
            raise HwsimError(f"--resume reads the config from the run directory; drop {flags}")
        if options["out"]:
            raise HwsimError("give either --out (new run) or --resume RUN, not both")
        from hwsim.train.config import make_config

        base = make_config({k: options[k] for k in ("device", "workers") if options[k] is not None})
        run_dir = Path(options["resume"])
        with _interrupt_hint(run_dir):
            run = train(base, run_dir, resume=True, stop_after=options["stop_after"],
                        resume_from=options["resume_from"] or "last")
    else:
        if not options["out"]:
            raise HwsimError("--out RUN is required (or --resume RUN)")
        if options["resume_from"]:
            raise HwsimError("--resume-from applies only with --resume RUN")
        values = {k: v for k, v in options.items() if k in given and k not in _NOT_CONFIG}
        with _interrupt_hint(Path(options["out"])):
            run = train_from_options(values, Path(options["out"]), config_file=options["config_file"],
                                     stop_after=options["stop_after"])
    click.echo(str(run))
