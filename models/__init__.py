"""hwsim's model zoo: CIFAR ResNets, wide ResNets and a small CNN in every FLOAT / OAT / FLOATS / slim variant.

>>> from models import create_model, set_knobs
>>> m = create_model("small_cnn", "float")
>>> _ = set_knobs(m, lambda_n=1.0)        # noisy weights, BN_A

Public API (CONTRACT.md): ``create_model``, ``list_models``, ``VARIANTS``, ``DATASETS``, ``DatasetSpec``,
``get_dataset``, ``set_knobs``, ``knobs``, ``load_factory``; plus ``prune_`` and ``register_model``.
"""

import importlib
import sys
import types

# Names are imported on first use (PEP 562), so that `models.get_dataset` does not import torch: the cost
# commands read cached layer shapes without it (hwsim.shapecache).
_WHERE = {"VARIANTS": "create", "create_model": "create", "load_factory": "create", "DATASETS": "datasets",
          "DatasetSpec": "datasets", "get_dataset": "datasets", "S_LAMBDA": "knobs", "KnobState": "knobs",
          "knobs": "knobs", "set_knobs": "knobs", "prune_": "pruning", "describe_models": "registry",
          "list_models": "registry", "register_model": "registry"}
_TORCH_FREE = {"datasets"}


class _Package(types.ModuleType):
    def __setattr__(self, name: str, value) -> None:
        # `knobs` is a submodule and the function it exports; the package's attribute is the function whichever
        # is imported first (importing a submodule sets the package's attribute to the module)
        if name == "knobs" and isinstance(value, types.ModuleType):
            value = value.knobs
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def __getattr__(name: str):
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module 'models' has no attribute {name!r}")
    if where not in _TORCH_FREE:
        from models import preact, resnet, small_cnn  # noqa: F401  (registers the architectures)
    value = getattr(importlib.import_module(f"models.{where}"), name)
    globals()[name] = value
    return value


__all__ = ["DATASETS", "S_LAMBDA", "VARIANTS", "DatasetSpec", "KnobState", "create_model", "describe_models", "get_dataset",
           "knobs", "list_models", "load_factory", "prune_", "register_model", "set_knobs"]
