"""Adversarial training and evaluation: attacks, algorithms (PGD-AT, FLOAT, OAT), data, runs.

Nothing here touches a device or imports ``models`` at import time. The names below are imported on first
use (PEP 562), so that the torch-free modules of this package (``options``, ``_checks``) can be imported
without torch: ``hwsim train --help`` reads its flags from :mod:`hwsim.train.options`.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {"ALGORITHMS": "algorithms", "OAT_LAMBDAS": "algorithms", "Algorithm": "algorithms",
          "AttackSettings": "algorithms", "create_algorithm": "algorithms", "register_algorithm": "algorithms",
          "sample_oat_lambdas": "algorithms", "attack_context": "attacks", "cw_margin_loss": "attacks",
          "cw_pgd": "attacks", "fgsm": "attacks", "oat_step_size": "attacks", "pgd": "attacks",
          "TrainConfig": "config", "make_config": "config"}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    globals()[name] = value
    return value
