"""hwsim's model zoo: CIFAR ResNets, wide ResNets and a small CNN in every FLOAT / OAT / FLOATS / slim variant.

>>> from models import create_model, set_knobs
>>> m = create_model("small_cnn", "float")
>>> _ = set_knobs(m, lambda_n=1.0)        # noisy weights, BN_A

Public API (CONTRACT.md): ``create_model``, ``list_models``, ``VARIANTS``, ``DATASETS``, ``DatasetSpec``,
``get_dataset``, ``set_knobs``, ``knobs``, ``load_factory``, ``get_variant`` (the one record of what a
variant is) and ``check_options``; plus ``prune_`` and ``register_model``.
"""

import importlib
import sys
import types

# Names are imported on first use (PEP 562), so that `models.get_dataset` does not import torch: the cost
# commands read cached layer shapes without it (hwsim.shapecache).
_WHERE = {"create_model": "models.create", "load_factory": "models.create", "DATASETS": "models.datasets",
          "DatasetSpec": "models.datasets", "get_dataset": "models.datasets", "S_LAMBDA": "models.knobs",
          "KnobState": "models.knobs", "knobs": "models.knobs", "set_knobs": "models.knobs",
          "prune_": "models.pruning", "describe_models": "models.registry", "list_models": "models.registry",
          "register_model": "models.registry", "VARIANTS": "hwsim.variants", "Variant": "hwsim.variants",
          "check_options": "hwsim.variants", "get_variant": "hwsim.variants"}
_TORCH_FREE = {"models.datasets", "hwsim.variants"}


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
        from models import preact, resnet, small_cnn, vit  # noqa: F401  (registers the architectures)
    value = getattr(importlib.import_module(where), name)
    globals()[name] = value
    return value


__all__ = ["DATASETS", "S_LAMBDA", "VARIANTS", "DatasetSpec", "KnobState", "Variant", "check_options", "create_model",
           "describe_models", "get_dataset", "get_variant",
           "knobs", "list_models", "load_factory", "prune_", "register_model", "set_knobs"]
