"""The trainer's only door into the ``models`` package (imported lazily so nothing loads at import time).

Everything that builds a model or sets its knobs goes through here, so the trainer and the evaluator use the
contract's API in one place.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from torch import nn


def create_model(name: str, variant: str = "base", **kwargs: Any) -> nn.Module:
    """``models.create_model`` (see the contract for the arguments)."""
    import models

    return models.create_model(name, variant, **kwargs)


def set_knobs(model: nn.Module, **kwargs: Any) -> nn.Module:
    """``models.set_knobs``: lambda_n (float or per-sample 1-D tensor), lambda_th, width; None = unchanged."""
    import models

    return models.set_knobs(model, **kwargs)


@contextlib.contextmanager
def knobs(model: nn.Module, **kwargs: Any) -> Iterator[nn.Module]:
    """``models.knobs``: set knobs for a block and restore the previous values on exit."""
    import models

    with models.knobs(model, **kwargs):
        yield model


def get_dataset(name: str) -> Any:
    """``models.get_dataset``: the DatasetSpec (input size, channels, classes, mean, std)."""
    import models

    return models.get_dataset(name)
