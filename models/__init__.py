"""hwsim's model zoo: CIFAR ResNets, wide ResNets and a small CNN in every FLOAT / OAT / FLOATS / slim variant.

>>> from models import create_model, set_knobs
>>> m = create_model("small_cnn", "float")
>>> _ = set_knobs(m, lambda_n=1.0)        # noisy weights, BN_A

Public API (CONTRACT.md): ``create_model``, ``list_models``, ``VARIANTS``, ``DATASETS``, ``DatasetSpec``,
``get_dataset``, ``set_knobs``, ``knobs``, ``load_factory``; plus ``prune_`` and ``register_model``.
"""

from models import preact, resnet, small_cnn  # noqa: F401  (registers the architectures)
from models.create import VARIANTS, create_model, load_factory
from models.datasets import DATASETS, DatasetSpec, get_dataset
from models.knobs import S_LAMBDA, KnobState, knobs, set_knobs
from models.pruning import prune_
from models.registry import list_models, register_model

__all__ = ["DATASETS", "S_LAMBDA", "VARIANTS", "DatasetSpec", "KnobState", "create_model", "get_dataset",
           "knobs", "list_models", "load_factory", "prune_", "register_model", "set_knobs"]
