"""Golden numbers of the model zoo (SPEC 5), kept beside the models; tests recompute them exactly.

Each row: (model, variant, create_model options, parameter count). The FLOAT paper's supplement Table 1
rounds them (21.28M, 31.4M, 10.97M, 15.43M, 2.25M, 3.22M).
"""

GOLDEN_PARAMS: tuple[tuple[str, str, dict, int], ...] = (
    ("resnet34", "base", {}, 21_282_122),
    ("resnet34", "oat", {"film_dim": 1, "bn": "single"}, 31_403_978),
    ("resnet34", "oat", {"film_dim": 128, "bn": "dual"}, 33_355_466),
    ("wrn16_8", "base", {}, 10_961_370),
    ("wrn16_8", "oat", {"film_dim": 1, "bn": "single"}, 15_437_370),
    ("wrn40_2", "base", {}, 2_243_546),
    ("wrn40_2", "oat", {"film_dim": 1, "bn": "single"}, 3_226_682),
)

#: Conv + linear multiply-accumulates of resnet34 on a 3x32x32 input, batch 1.
RESNET34_MACS = 1_159_402_496
