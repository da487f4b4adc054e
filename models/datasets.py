"""Dataset presets: input geometry, class count and the per-channel normalisation used inside every model.

Models take images in [0, 1] and normalise internally with ``mean``/``std`` so attacks can work in pixel
space (eps = 8/255 means 8 grey levels).
"""

from __future__ import annotations

from dataclasses import dataclass

from hwsim.errors import HwsimError


@dataclass(frozen=True)
class DatasetSpec:
    """What a dataset fixes for a model: ``input_size`` (pixels, square), channels, classes, mean/std."""

    name: str
    input_size: int
    in_channels: int
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]


_CIFAR10_MEAN, _CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)

DATASETS: dict[str, DatasetSpec] = {
    s.name: s
    for s in (
        DatasetSpec("cifar10", 32, 3, 10, _CIFAR10_MEAN, _CIFAR10_STD),
        DatasetSpec("cifar100", 32, 3, 100, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
        DatasetSpec("svhn", 32, 3, 10, (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970)),
        DatasetSpec("stl10", 96, 3, 10, (0.4467, 0.4398, 0.4066), (0.2603, 0.2566, 0.2713)),
        DatasetSpec("tinyimagenet", 64, 3, 200, (0.4802, 0.4481, 0.3975), (0.2770, 0.2691, 0.2821)),
        DatasetSpec("mnist", 28, 1, 10, (0.1307,), (0.3081,)),
        # ILSVRC-2012 at the usual 224 x 224 centre crop, so that published ImageNet numbers can be checked
        DatasetSpec("imagenet", 224, 3, 1000, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    )
}

#: The name a setting carries when its input size was given explicitly instead of by a dataset preset.
CUSTOM = "custom"


def custom_dataset(in_channels: int, input_size: int, num_classes: int = 10) -> DatasetSpec:
    """A dataset of the given input geometry for ``--input-size`` without a preset: 10 classes and a
    neutral normalisation (mean 0.5, std 0.5 per channel; costs do not depend on it)."""
    return DatasetSpec(CUSTOM, input_size, in_channels, num_classes, (0.5,) * in_channels, (0.5,) * in_channels)


def get_dataset(name: str) -> DatasetSpec:
    """The preset called ``name``; an unknown name raises :class:`HwsimError` listing the valid ones."""
    try:
        return DATASETS[name]
    except KeyError:
        raise HwsimError(f"unknown dataset {name!r}; valid: {', '.join(sorted(DATASETS))}") from None
