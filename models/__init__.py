"""hwsim's model zoo: CIFAR ResNets, wide ResNets and a small CNN in every FLOAT / OAT / FLOATS / slim variant.

>>> from models import create_model, set_knobs
>>> m = create_model("small_cnn", "float")
>>> _ = set_knobs(m, lambda_n=1.0)        # noisy weights, BN_A

Public API (CONTRACT.md): ``create_model``, ``list_models``, ``VARIANTS``, ``DATASETS``, ``DatasetSpec``,
``get_dataset``, ``set_knobs``, ``knobs``, ``load_factory``, ``get_variant`` (the one record of what a
variant is) and ``check_options``; plus ``prune_`` and ``register_model``.
"""

from models import preact, resnet, small_cnn  # noqa: F401  (registers the architectures)
from models.create import create_model, load_factory
from models.datasets import DATASETS, DatasetSpec, get_dataset
from models.knobs import S_LAMBDA, KnobState, knobs, set_knobs
from models.pruning import prune_
from models.registry import describe_models, list_models, register_model
from hwsim.variants import VARIANTS, Variant, check_options, get_variant

__all__ = ["DATASETS", "S_LAMBDA", "VARIANTS", "DatasetSpec", "KnobState", "Variant", "check_options", "create_model",
           "describe_models", "get_dataset", "get_variant",
           "knobs", "list_models", "load_factory", "prune_", "register_model", "set_knobs"]
