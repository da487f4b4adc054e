"""``hwsim eval``: evaluate a run directory's checkpoints under attacks and knob settings."""

from __future__ import annotations

import click

from hwsim.errors import HwsimError

FORMATS = ("table", "csv", "json", "markdown")


def _floats(text: str, name: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise HwsimError(f"{name} must be comma-separated numbers, got {text!r}") from None


@click.command("eval")
@click.argument("run", type=click.Path(file_okay=False))
@click.option("--attack", "attack", default="pgd20", show_default=True,
              help="Comma-separated: pgdK, cwK, fgsm, art-pgdK, autoattack.")
@click.option("--lambda-n", default="0,0.2,0.7,1", show_default=True, help="lambda_n values (float/oat).")
@click.option("--lambda-th", default="0,0.5", show_default=True, help="lambda_th values (float only).")
@click.option("--width", default=None, help="Widths to evaluate (slim variants; default the largest).")
@click.option("--checkpoint", default="last", show_default=True, help="last, best or last,best.")
@click.option("--n-images", type=int, default=None, help="Evaluate the first N test images (default all).")
@click.option("--batch-size", type=int, default=256, show_default=True)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--data-dir", default=None, type=click.Path(file_okay=False), help="Override the run's data dir.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
def eval_command(run: str, attack: str, lambda_n: str, lambda_th: str, width: str | None, checkpoint: str,
                 n_images: int | None, batch_size: int, device: str, data_dir: str | None, fmt: str) -> None:
    """Clean and robust accuracy (percent) of RUN's checkpoints; writes RUN/eval.csv."""
    from hwsim.train.evaluate import evaluate_run

    table = evaluate_run(run, [a.strip() for a in attack.split(",") if a.strip()],
                         lambda_n=_floats(lambda_n, "--lambda-n"), lambda_th=_floats(lambda_th, "--lambda-th"),
                         widths=_floats(width, "--width") if width else None,
                         checkpoints=[c.strip() for c in checkpoint.split(",") if c.strip()],
                         n_images=n_images, batch_size=batch_size, device=device, data_dir=data_dir)
    if fmt == "csv":
        click.echo(table.to_csv(index=False), nl=False)
    elif fmt == "json":
        click.echo(table.to_json(orient="records"))
    elif fmt == "markdown":
        click.echo(table.to_markdown(index=False))
    else:
        click.echo(table.to_string(index=False))
