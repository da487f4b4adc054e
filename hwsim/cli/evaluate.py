"""``hwsim eval``: evaluate a run directory's checkpoints under attacks and knob settings."""

from __future__ import annotations

import click

from hwsim.errors import HwsimError

FORMATS = ("table", "csv", "json", "markdown")


def _floats(text: str | None, name: str) -> list[float] | None:
    if text is None:
        return None
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise HwsimError(f"{name} must be comma-separated numbers, got {text!r}") from None
    if not values:
        raise HwsimError(f"{name} must list at least one number, got {text!r}")
    return values


def _positive(name: str):  # noqa: ANN202
    def check(ctx: click.Context, param: click.Parameter, value: int | None) -> int | None:
        if value is not None and value < 1:
            raise HwsimError(f"{name} must be >= 1, got {value}")
        return value
    return check


@click.command("eval")
@click.argument("run", type=click.Path(file_okay=False))
@click.option("--attack", "attack", default=None,
              help="Comma-separated: pgdK, cwK, fgsm, art-pgdK, autoattack [default: pgd20].")
@click.option("--lambda-n", default=None,
              help="lambda_n values (float*/oat*; default the run's own: its S_lambda for oat, 0,0.2,0.7,1 for "
                   "float).")
@click.option("--lambda-th", default=None, help="lambda_th values (float* only; default 0,0.5).")
@click.option("--width", default=None, help="Widths to evaluate (*-slim only; default the largest).")
@click.option("--checkpoint", default="last", show_default=True, help="last, best or last,best.")
@click.option("--restarts", type=int, default=None, callback=_positive("--restarts"),
              help="Random starts of pgdK / cwK / art-pgdK; a sample counts as broken if any start breaks it "
                   "[default: 1; --sanity: 5].")
@click.option("--eot", type=int, default=None, callback=_positive("--eot"),
              help="Noise draws averaged per attack gradient on randomised settings [default: 10; autoattack 20].")
@click.option("--noise-draws", type=int, default=5, show_default=True, callback=_positive("--noise-draws"),
              help="Scoring passes (noise draws) on randomised settings: CA/RA are their mean, *_std their spread.")
@click.option("--transfer-from", default=None, type=click.Path(file_okay=False),
              help="Transfer attack: generate the attacks on this run's model (at its most robust setting).")
@click.option("--sanity", is_flag=True,
              help="Instead of the table: gradient-masking checks at the run's most robust setting "
                   "(writes RUN/sanity.csv; --transfer-from names the plain model to transfer from).")
@click.option("--steps", type=int, default=None, callback=_positive("--steps"),
              help="--sanity only: PGD steps K (more_steps compares K with 5K) [default: 20].")
@click.option("--n-images", type=int, default=None, callback=_positive("--n-images"),
              help="Evaluate the first N test images (default all).")
@click.option("--batch-size", type=int, default=256, show_default=True, callback=_positive("--batch-size"))
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of random starts and noise draws.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--data-dir", default=None, type=click.Path(file_okay=False), help="Override the run's data dir.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
def eval_command(run: str, attack: str | None, lambda_n: str | None, lambda_th: str | None, width: str | None,
                 checkpoint: str, restarts: int | None, eot: int | None, noise_draws: int, transfer_from: str | None,
                 sanity: bool, steps: int | None, n_images: int | None, batch_size: int, seed: int, device: str,
                 data_dir: str | None, fmt: str) -> None:
    """Clean and robust accuracy (percent) of RUN's checkpoints; writes RUN/eval.csv (or RUN/sanity.csv)."""
    checkpoints = [c.strip() for c in checkpoint.split(",") if c.strip()]
    if sanity:
        from hwsim.train.sanity import sanity_run

        given = [flag for flag, value in (("--lambda-n", lambda_n), ("--lambda-th", lambda_th), ("--width", width),
                                          ("--attack", attack)) if value is not None]
        if given or len(checkpoints) != 1:
            bad = given[0] if given else "--checkpoint " + checkpoint
            raise HwsimError(f"--sanity runs its own attacks at the run's most robust setting on one checkpoint; "
                             f"drop {bad}")
        table = sanity_run(run, checkpoints[0], steps=steps or 20, restarts=restarts or 5,
                           eot=eot or 10, noise_draws=noise_draws, transfer_from=transfer_from, n_images=n_images,
                           batch_size=batch_size, device=device, data_dir=data_dir, seed=seed)
    else:
        from hwsim.train.evaluate import evaluate_run

        if steps is not None:
            raise HwsimError("--steps applies to --sanity only; attack names carry their steps (e.g. pgd50)")
        table = evaluate_run(run, [a.strip() for a in (attack or "pgd20").split(",") if a.strip()],
                             lambda_n=_floats(lambda_n, "--lambda-n"), lambda_th=_floats(lambda_th, "--lambda-th"),
                             widths=_floats(width, "--width"), checkpoints=checkpoints, n_images=n_images,
                             batch_size=batch_size, device=device, data_dir=data_dir, seed=seed, restarts=restarts or 1,
                             eot=eot, noise_draws=noise_draws, transfer_from=transfer_from)
    if fmt == "csv":
        click.echo(table.to_csv(index=False), nl=False)
    elif fmt == "json":
        click.echo(table.to_json(orient="records"))
    elif fmt == "markdown":
        click.echo(table.to_markdown(index=False))
    else:
        click.echo(table.to_string(index=False))
