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
@click.option("--checkpoint", default=None, help="last, best or last,best [default: last].")
@click.option("--restarts", type=int, default=None, callback=_positive("--restarts"),
              help="Random starts of pgdK / cwK / art-pgdK; a sample counts as broken if any start breaks it "
                   "[default: 1; --sanity: 5].")
@click.option("--eot", type=int, default=None, callback=_positive("--eot"),
              help="Noise draws averaged per attack gradient on randomised settings [default: 10; autoattack 20].")
@click.option("--noise-draws", type=int, default=None, callback=_positive("--noise-draws"),
              help="Scoring passes (noise draws) on randomised settings: CA/RA are their mean, *_std their spread "
                   "[default: 5].")
@click.option("--transfer-from", default=None, type=click.Path(file_okay=False),
              help="Transfer attack: generate the attacks on this run's model (at its most robust setting).")
@click.option("--sanity", is_flag=True,
              help="Instead of the table: gradient-masking checks at the run's most robust setting "
                   "(writes RUN/sanity.csv; --transfer-from names the plain model to transfer from).")
@click.option("--steps", type=int, default=None, callback=_positive("--steps"),
              help="--sanity only: PGD steps K (more_steps compares K with 5K) [default: 20].")
@click.option("--n-images", type=int, default=None, callback=_positive("--n-images"),
              help="Evaluate the first N test images (default all).")
@click.option("--batch-size", type=int, default=None, callback=_positive("--batch-size"),
              help="Images per forward [default: 256].")
@click.option("--seed", type=int, default=None, help="Seed of random starts and noise draws [default: 0].")
@click.option("--device", default=None, help="auto, cpu, cuda or cuda:N [default: auto].")
@click.option("--data-dir", default=None, type=click.Path(file_okay=False), help="Override the run's data dir.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
def eval_command(run: str, attack: str | None, lambda_n: str | None, lambda_th: str | None, width: str | None,
                 checkpoint: str | None, restarts: int | None, eot: int | None, noise_draws: int | None,
                 transfer_from: str | None, sanity: bool, steps: int | None, n_images: int | None,
                 batch_size: int | None, seed: int | None, device: str | None, data_dir: str | None, fmt: str) -> None:
    """Clean and robust accuracy (percent) of RUN's checkpoints; writes RUN/eval.csv (or RUN/sanity.csv)."""
    checkpoints = None if checkpoint is None else [c.strip() for c in checkpoint.split(",") if c.strip()]
    # only the options given are passed on: the library's defaults apply to the others, so they cannot drift
    # (the help repeats them without importing torch; a test checks that it states the library's values)
    given = {name: value for name, value in (("restarts", restarts), ("eot", eot), ("noise_draws", noise_draws),
                                             ("transfer_from", transfer_from), ("n_images", n_images),
                                             ("batch_size", batch_size), ("seed", seed), ("device", device),
                                             ("data_dir", data_dir)) if value is not None}
    if sanity:
        from hwsim.train.sanity import sanity_run

        refused = [flag for flag, value in (("--lambda-n", lambda_n), ("--lambda-th", lambda_th),
                                            ("--width", width), ("--attack", attack)) if value is not None]
        if refused or (checkpoints is not None and len(checkpoints) != 1):
            bad = refused[0] if refused else "--checkpoint " + checkpoint
            raise HwsimError(f"--sanity runs its own attacks at the run's most robust setting on one checkpoint; "
                             f"drop {bad}")
        if checkpoints is not None:
            given["checkpoint_name"] = checkpoints[0]
        if steps is not None:
            given["steps"] = steps
        table = sanity_run(run, **given)
    else:
        from hwsim.train.evaluate import evaluate_run

        if steps is not None:
            raise HwsimError("--steps applies to --sanity only; attack names carry their steps (e.g. pgd50)")
        if attack is not None:
            given["attack_names"] = [a.strip() for a in attack.split(",") if a.strip()]
        if checkpoints is not None:
            given["checkpoints"] = checkpoints
        table = evaluate_run(run, lambda_n=_floats(lambda_n, "--lambda-n"), lambda_th=_floats(lambda_th, "--lambda-th"),
                             widths=_floats(width, "--width"), **given)
    if fmt == "csv":
        click.echo(table.to_csv(index=False), nl=False)
    elif fmt == "json":
        click.echo(table.to_json(orient="records"))
    elif fmt == "markdown":
        click.echo(table.to_markdown(index=False))
    else:
        click.echo(table.to_string(index=False))
