"""Adversarial training and evaluation: attacks, algorithms (PGD-AT, FLOAT, OAT), data, runs.

Nothing here touches a device or imports ``models`` at import time.
"""

from hwsim.train.algorithms import (ALGORITHMS, OAT_LAMBDAS, Algorithm, AttackSettings, create_algorithm,
                                    register_algorithm, sample_oat_lambdas)
from hwsim.train.attacks import attack_context, cw_margin_loss, cw_pgd, fgsm, oat_step_size, pgd
from hwsim.train.config import TrainConfig, make_config

__all__ = ["ALGORITHMS", "OAT_LAMBDAS", "Algorithm", "AttackSettings", "TrainConfig", "attack_context",
           "create_algorithm", "cw_margin_loss", "cw_pgd", "fgsm", "make_config", "oat_step_size", "pgd",
           "register_algorithm", "sample_oat_lambdas"]
