"""The model registry: ``@register_model`` on small builder functions (timm style).

A builder takes ``(layers: LayerFactory, data: DatasetSpec, dropout: float)`` and returns the network; the
variant lives entirely in ``layers``. ``create_model`` (in ``models.create``) is the one public constructor.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from hwsim.errors import HwsimError

Builder = Callable[..., nn.Module]
_MODELS: dict[str, Builder] = {}


def register_model(fn: Builder) -> Builder:
    """Register ``fn`` under its function name; a duplicate name is a programming error."""
    if fn.__name__ in _MODELS:
        raise RuntimeError(f"model {fn.__name__!r} registered twice")
    _MODELS[fn.__name__] = fn
    return fn


def list_models() -> list[str]:
    """Sorted names of the registered architectures."""
    return sorted(_MODELS)


def get_builder(name: str) -> Builder:
    try:
        return _MODELS[name]
    except KeyError:
        raise HwsimError(f"unknown model {name!r}; valid: {', '.join(list_models())} "
                         "(or a user factory 'path/to/file.py:factory' / 'pkg.module:factory')") from None
