"""models API: golden parameter counts, registry, dataset presets, knobs and the one-line user errors."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from hwsim.errors import HwsimError
from models import (DATASETS, S_LAMBDA, VARIANTS, DatasetSpec, create_model, get_dataset, knobs, list_models,
                    load_factory, set_knobs)
from models.layers import FiLM
from models.golden import GOLDEN_PARAMS


pytestmark = pytest.mark.usefixtures("one_thread")


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(("name", "variant", "kwargs", "expected"), GOLDEN_PARAMS)
def test_golden_parameter_counts(name: str, variant: str, kwargs: dict, expected: int) -> None:
    assert _params(create_model(name, variant, dataset="cifar10", **kwargs)) == expected


def test_float_adds_one_alpha_per_conv_and_a_second_bn() -> None:
    base, flt = create_model("resnet34"), create_model("resnet34", "float", bn="dual")
    convs = sum(isinstance(m, nn.Conv2d) for m in base.modules())
    bn = sum(p.numel() for m in base.modules() if isinstance(m, nn.BatchNorm2d) for p in m.parameters())
    assert convs == 36 and _params(flt) == _params(base) + convs + bn


def test_resnet34_oat_has_33_films_with_contract_attributes() -> None:
    films = [m for m in create_model("resnet34", "oat", film_dim=1).modules() if isinstance(m, FiLM)]
    assert len(films) == 33
    assert [f.channels for f in films[:2]] == [64, 64] and films[-1].channels == 512
    assert all(f.film_dim == 1 and f.active_channels() == f.channels for f in films)


def test_registry_lists_the_contract_models() -> None:
    assert list_models() == sorted(["resnet18", "resnet34", "preact_resnet18", "wrn16_8", "wrn40_2", "wrn28_10",
                                    "wrn34_10", "small_cnn", "vit_tiny"])
    assert VARIANTS == ("base", "float", "oat", "floats-i", "floats-c", "float-slim", "oat-slim", "floats-slim")


@pytest.mark.parametrize("dataset", sorted(DATASETS))
def test_dataset_presets_fix_input_and_classes(dataset: str) -> None:
    spec = get_dataset(dataset)
    assert isinstance(spec, DatasetSpec) and len(spec.mean) == len(spec.std) == spec.in_channels
    model = create_model("small_cnn", "float", dataset=dataset).eval()
    x = torch.rand(2, spec.in_channels, spec.input_size, spec.input_size)
    assert model(x).shape == (2, spec.num_classes)
    assert model.hwsim_info["num_classes"] == spec.num_classes


def test_dataset_table_values() -> None:
    table = {n: (s.input_size, s.in_channels, s.num_classes) for n, s in DATASETS.items()}
    assert table == {"cifar10": (32, 3, 10), "cifar100": (32, 3, 100), "svhn": (32, 3, 10),
                     "stl10": (96, 3, 10), "tinyimagenet": (64, 3, 200), "mnist": (28, 1, 10),
                     "imagenet": (224, 3, 1000)}


def test_normalisation_happens_inside_the_model() -> None:
    model = create_model("small_cnn").eval()
    spec = get_dataset("cifar10")
    mean_image = torch.tensor(spec.mean).view(1, 3, 1, 1).expand(1, 3, 8, 8)
    assert torch.allclose(model.normalize(mean_image), torch.zeros(1, 3, 8, 8), atol=1e-6)


def test_hwsim_info_and_default_knobs() -> None:
    model = create_model("small_cnn", "oat-slim", film_dim=1, widths=(1.0, 0.25))
    info = model.hwsim_info
    assert {k: info[k] for k in ("name", "variant", "dataset", "film_dim", "bn", "widths", "density")} == {
        "name": "small_cnn", "variant": "oat-slim", "dataset": "cifar10", "film_dim": 1, "bn": "dual",
        "widths": (0.25, 1.0), "density": 1.0}
    state = model.hwsim_knobs
    assert (state.lambda_n, state.lambda_th, state.width) == (0.0, 0.0, 1.0)


@pytest.mark.parametrize(("lambda_th", "lambda_n", "scale"), [
    (0.0, 0.0, 0.0), (0.0, 0.3, 0.3), (0.0, 1.0, 1.0),
    (0.5, 0.25, 0.5), (0.5, 0.5, 1.0), (0.5, 0.75, 0.5), (0.5, 1.0, 1.0),  # Eq. 6
    (0.2, 0.1, 0.5), (0.2, 0.6, 0.5),  # the documented generalisation
])
def test_noise_scale_follows_eq6(lambda_th: float, lambda_n: float, scale: float) -> None:
    model = create_model("small_cnn", "float")
    set_knobs(model, lambda_n=lambda_n, lambda_th=lambda_th)
    assert math.isclose(model.hwsim_knobs.noise_scale(), scale)
    assert model.hwsim_knobs.uniform_adversarial() == (lambda_n > lambda_th)


def test_bn_a_is_chosen_above_the_threshold() -> None:
    model = create_model("small_cnn", "float").eval()
    bn = model.features[1]
    bn.bns[1].running_mean.fill_(5.0)  # make BN_A's output recognisable
    x = torch.rand(2, 3, 8, 8)
    with torch.no_grad():
        with knobs(model, lambda_n=0.4, lambda_th=0.5):
            clean = bn(model.features[0](model.normalize(x)))
        with knobs(model, lambda_n=0.6, lambda_th=0.5):
            adv = bn(model.features[0](model.normalize(x)))
    assert clean.mean() > adv.mean() + 1.0


@pytest.mark.parametrize(("kwargs", "fragment"), [
    ({"lambda_n": 1.5}, "[0, 1]"), ({"lambda_n": -0.1}, "[0, 1]"), ({"lambda_n": "a"}, "lambda_n"),
    ({"lambda_n": torch.zeros(2, 2)}, "1-D"), ({"lambda_n": torch.tensor([0.0, 2.0])}, "[0, 1]"),
    ({"lambda_th": 1.2}, "[0, 1]"), ({"width": 0.7}, "(0.5, 1.0)"), ({"lambda_n": 0.25}, "S_lambda"),
])
def test_knob_validation(kwargs: dict, fragment: str) -> None:
    model = create_model("small_cnn", "oat-slim", film_dim=128)
    before = (model.hwsim_knobs.lambda_n, model.hwsim_knobs.lambda_th, model.hwsim_knobs.width)
    with pytest.raises(HwsimError, match=None) as err:
        set_knobs(model, **kwargs)
    assert fragment in str(err.value) and "\n" not in str(err.value)
    assert (model.hwsim_knobs.lambda_n, model.hwsim_knobs.lambda_th, model.hwsim_knobs.width) == before


def test_film_dim_one_takes_any_lambda_and_non_slim_width_is_one() -> None:
    model = create_model("small_cnn", "oat", film_dim=1)
    set_knobs(model, lambda_n=0.25, width=1.0)
    with pytest.raises(HwsimError, match=r"\(1\.0,\)"):
        set_knobs(model, width=0.5)


def test_knobs_context_restores_even_on_error() -> None:
    model = create_model("small_cnn", "float-slim")
    set_knobs(model, lambda_n=0.3, lambda_th=0.5)
    with pytest.raises(RuntimeError):
        with knobs(model, lambda_n=1.0, width=0.5) as m:
            assert m is model and (m.hwsim_knobs.lambda_n, m.hwsim_knobs.width) == (1.0, 0.5)
            raise RuntimeError("boom")
    assert (model.hwsim_knobs.lambda_n, model.hwsim_knobs.lambda_th, model.hwsim_knobs.width) == (0.3, 0.5, 1.0)


def test_per_sample_lambda_rejected_by_noise_convs() -> None:
    model = create_model("small_cnn", "float")
    set_knobs(model, lambda_n=torch.tensor([0.0, 1.0]))
    with pytest.raises(HwsimError, match="per batch"):
        model(torch.rand(2, 3, 8, 8))


def test_film_encodings_are_orthogonal_rows() -> None:
    film = next(m for m in create_model("small_cnn", "oat").modules() if isinstance(m, FiLM))
    enc = film.encoding
    assert enc.shape == (len(S_LAMBDA), 128)
    assert torch.allclose(enc @ enc.T, torch.eye(len(S_LAMBDA)), atol=1e-5)
    again = next(m for m in create_model("small_cnn", "oat").modules() if isinstance(m, FiLM))
    assert torch.equal(enc, again.encoding)  # fixed, so checkpoints agree across builds


@pytest.mark.parametrize(("args", "kwargs", "fragment"), [
    (("resnet50",), {}, "resnet18, resnet34"),
    (("small_cnn", "fancy"), {}, "base, float, oat"),
    (("small_cnn",), {"dataset": "imagenet21k"}, "cifar10"),
    (("small_cnn",), {"dataset": "custom"}, "needs an input_size"),
    (("small_cnn", "oat"), {"bn": "triple"}, "single, dual"),
    (("small_cnn", "oat"), {"film_dim": 3}, "film_dim"),
    (("small_cnn", "oat"), {"film_dim": 0}, "film_dim"),
    (("small_cnn", "float-slim"), {"widths": (0.5, 1.5)}, "(0, 1]"),
    (("small_cnn", "float-slim"), {"widths": (0.0,)}, "(0, 1]"),
    (("small_cnn", "floats-i"), {"density": 0.0}, "(0, 1]"),
    (("small_cnn", "floats-i"), {"density": 1.5}, "(0, 1]"),
    (("small_cnn", "float"), {"density": 0.5}, "floats-i, floats-c, floats-slim"),
    (("small_cnn",), {"dropout": 1.0}, "[0, 1)"),
    (("torch.nn:Identity", "float"), {}, "variant 'float' conditions conv and linear weights, but Identity has none"),
    (("torch.nn:Identity", "oat"), {},
     "variant 'oat' puts a FiLM after every normalization (BatchNorm, LayerNorm, GroupNorm), but Identity has none"),
])
def test_create_model_errors_name_the_choices(args: tuple, kwargs: dict, fragment: str) -> None:
    with pytest.raises(HwsimError) as err:
        create_model(*args, **kwargs)
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_user_factory_from_module_and_file(tmp_path) -> None:
    model = create_model("torch.nn:Identity")
    assert isinstance(model, nn.Identity) and model.hwsim_info["variant"] == "base"
    set_knobs(model, lambda_n=0.5)  # knobs exist, and do nothing on a plain model
    path = tmp_path / "net.py"
    path.write_text("import torch\ndef make():\n    return torch.nn.Linear(3, 2)\n"
                    "def broken():\n    raise RuntimeError('no weights')\ndef notmodule():\n    return 42\n")
    assert isinstance(load_factory(f"{path}:make")(), nn.Linear)
    with pytest.raises(HwsimError, match="raised RuntimeError: no weights"):
        load_factory(f"{path}:broken")()
    with pytest.raises(HwsimError, match="returned int, not a torch.nn.Module"):
        load_factory(f"{path}:notmodule")()
    with pytest.raises(HwsimError, match="has no attribute 'missing'"):
        load_factory(f"{path}:missing")


@pytest.mark.parametrize(("spec", "fragment"), [
    ("no_colon_here", "malformed"), ("a:b:c", "malformed"), (":factory", "malformed"), ("file.py:", "malformed"),
    ("does/not/exist.py:f", "does not exist"), ("no_such_pkg_xyz.mod:f", "cannot import module"),
])
def test_load_factory_errors(spec: str, fragment: str) -> None:
    with pytest.raises(HwsimError) as err:
        load_factory(spec)
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_unknown_dataset_lists_presets() -> None:
    with pytest.raises(HwsimError, match="cifar10, cifar100, imagenet, mnist, stl10, svhn, tinyimagenet"):
        get_dataset("imagenet21k")
