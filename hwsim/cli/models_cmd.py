"""``hwsim models``: the registered architectures, variants and dataset presets."""

from __future__ import annotations

import click

from hwsim.cli.common import output_options
from hwsim.output import emit, render_rows, to_json


@click.command("models")
@output_options
def models_command(fmt: str, output: str | None) -> None:
    """List the built-in architectures, the variants and the dataset presets (input size, classes).

    Example: hwsim models --format json
    """
    from models import DATASETS, VARIANTS, describe_models

    models = describe_models()
    datasets = [{"dataset": d.name, "input_size": f"{d.in_channels}x{d.input_size}x{d.input_size}",
                 "classes": d.num_classes} for d in DATASETS.values()]
    if fmt == "json":
        emit(to_json({"models": models, "variants": list(VARIANTS), "datasets": datasets}), output)
        return
    text = "\n\n".join([
        render_rows(models, fmt),
        "variants: " + ", ".join(VARIANTS),
        render_rows(datasets, fmt),
        "user models: MODEL may also be path/to/file.py:factory or package.module:factory; every variant "
        "applies to them (module surgery)",
    ])
    emit(text, output)
