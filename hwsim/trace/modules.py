"""Markers by which the tracer recognises conditioning, and the module tracker.

hwsim never imports the zoo's layer classes (STYLE 12): any module, in the zoo or in a user's model, is
recognised by what it declares:

* ``noise_conditioned = True`` on a module that computes a conv with a noise-conditioned weight (Eq. 8);
* ``film_conditioning = True`` on a FiLM-style module, which also exposes ``film_dim`` (its lambda
  encoding size d), ``channels`` and optionally ``active_channels()`` (channels at the active width);
* a ``weight_mask`` buffer on a pruned module (as ``torch.nn.utils.prune`` keeps it);
* ``active_norms()`` on a switchable / dual norm: the norms that serve the active width.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


#: Normalization modules (BatchNorm, timm's BatchNormAct2d, LayerNorm and its channels-first subclasses such as
#: LayerNorm2d, GroupNorm): the layers a FiLM follows and a projection shortcut may end with (SPEC 4.2).
NORM_MODULES = (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm)


def is_norm(module: nn.Module | None) -> bool:
    """Whether ``module`` is a normalization layer (:data:`NORM_MODULES`)."""
    return isinstance(module, NORM_MODULES)


def is_film(module: nn.Module) -> bool:
    """Whether ``module`` is marked as a FiLM-style conditioning module."""
    return bool(getattr(module, "film_conditioning", False))


def is_noise_conditioned(module: nn.Module) -> bool:
    """Whether ``module``'s conv weight is marked as noise-conditioned."""
    return bool(getattr(module, "noise_conditioned", False))


def film_channels(module: nn.Module) -> int:
    """Channels a FiLM module modulates at the active width."""
    active = getattr(module, "active_channels", None)
    return int(active()) if callable(active) else int(module.channels)


def active_norms(module: nn.Module) -> list[nn.Module]:
    """The norm modules of a switchable / dual norm that serve the active width (the module itself otherwise)."""
    active = getattr(module, "active_norms", None)
    return list(active()) if callable(active) else [module]


class ModuleStack:
    """A module tracker: the stack of modules whose forward is running, by qualified name."""

    def __init__(self, model: nn.Module) -> None:
        self.names = {id(m): name for name, m in model.named_modules()}
        self.stack: list[nn.Module] = []
        self.films_seen: list[tuple[nn.Module, torch.Tensor]] = []
        self._handles = []
        self.leave_hooks: list = []  # callables (module, output) run as each module's forward returns
        for module in model.modules():
            self._handles.append(module.register_forward_pre_hook(self._enter, with_kwargs=True))
            self._handles.append(module.register_forward_hook(self._leave))

    def _enter(self, module: nn.Module, inputs, kwargs) -> None:
        if is_film(module):  # the tensor it modulates: its first tensor argument, positional or keyword
            first = next((t for t in (*inputs, *kwargs.values()) if isinstance(t, torch.Tensor)), None)
            self.films_seen.append((module, first))
        self.stack.append(module)

    def _leave(self, module: nn.Module, inputs, output) -> None:
        self.stack.pop()
        for hook in self.leave_hooks:
            hook(module, output)

    def current(self) -> nn.Module | None:
        return self.stack[-1] if self.stack else None

    def name(self, module: nn.Module | None) -> str:
        if module is None:
            return "<model>"
        return self.names.get(id(module), type(module).__name__)

    def inside_film(self) -> bool:
        return any(is_film(m) for m in self.stack)

    def current_film(self) -> nn.Module:
        return next(m for m in reversed(self.stack) if is_film(m))

    def inside_noise_conv(self) -> bool:
        return bool(self.stack) and is_noise_conditioned(self.stack[-1])

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()


@contextmanager
def tracking(model: nn.Module) -> Iterator[ModuleStack]:
    tracker = ModuleStack(model)
    try:
        yield tracker
    finally:
        tracker.close()
