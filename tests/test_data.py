"""Dataset readers on small files written in each dataset's published format; errors name the file."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch

from hwsim.errors import HwsimError
from hwsim.train.data import augment, load_split, synthetic_arrays, train_val_split


def _write_cifar10(root: Path, n: int = 6) -> np.ndarray:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.RandomState(0)
    data = rng.randint(0, 256, size=(n, 3072), dtype=np.uint8)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with (folder / name).open("wb") as handle:  # protocol 2, bytes keys: like the published batches
            pickle.dump({b"data": data, b"labels": list(range(n)), b"batch_label": b"x"}, handle, protocol=2)
    return data


def test_cifar10_batches(tmp_path: Path) -> None:
    data = _write_cifar10(tmp_path)
    train = load_split("cifar10", "train", tmp_path)
    test = load_split("cifar10", "test", tmp_path)
    assert len(train) == 30 and len(test) == 6
    assert train.images.dtype == torch.uint8 and train.images.shape == (30, 3, 32, 32)
    # row layout: 1024 red, then green, then blue, each row-major 32x32
    assert train.images[1, 1, 2, 3] == data[1, 1024 + 2 * 32 + 3]
    assert test.labels.tolist() == list(range(6))


def test_cifar100_fine_labels(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    data = np.arange(2 * 3072, dtype=np.int64).astype(np.uint8).reshape(2, 3072)
    for split in ("train", "test"):
        with (folder / split).open("wb") as handle:
            pickle.dump({b"data": data, b"fine_labels": [7, 99], b"coarse_labels": [1, 2]}, handle)
    ds = load_split("cifar100", "test", tmp_path)
    assert ds.labels.tolist() == [7, 99] and ds.images.shape == (2, 3, 32, 32)


class _Evil:
    def __reduce__(self):  # noqa: ANN204
        return (print, ("pwned",))


def test_cifar_pickle_with_code_is_refused(tmp_path: Path) -> None:
    _write_cifar10(tmp_path)
    with (tmp_path / "cifar-10-batches-py" / "test_batch").open("wb") as handle:
        pickle.dump({b"data": _Evil(), b"labels": [0]}, handle)
    with pytest.raises(HwsimError, match=r"corrupt.*test_batch.*refusing to load builtins.print"):
        load_split("cifar10", "test", tmp_path)


def test_missing_and_truncated_cifar(tmp_path: Path) -> None:
    with pytest.raises(HwsimError, match=r"missing file .*data_batch_1; expected under .*cifar-10-batches-py"):
        load_split("cifar10", "train", tmp_path)
    _write_cifar10(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(HwsimError, match="corrupt or truncated data file .*data_batch_3"):
        load_split("cifar10", "train", tmp_path)


def test_svhn_mat(tmp_path: Path) -> None:
    x = np.random.RandomState(0).randint(0, 256, size=(32, 32, 3, 4)).astype(np.uint8)
    scipy.io.savemat(tmp_path / "train_32x32.mat", {"X": x, "y": np.array([[10], [1], [9], [10]])})
    ds = load_split("svhn", "train", tmp_path)
    assert ds.labels.tolist() == [0, 1, 9, 0]
    assert ds.images.shape == (4, 3, 32, 32) and ds.images[2, 1, 5, 7] == x[5, 7, 1, 2]
    with pytest.raises(HwsimError, match="missing file .*test_32x32.mat"):
        load_split("svhn", "test", tmp_path)
    (tmp_path / "test_32x32.mat").write_bytes(b"not a mat file at all" * 10)
    with pytest.raises(HwsimError, match="corrupt or truncated data file .*test_32x32.mat"):
        load_split("svhn", "test", tmp_path)


def test_stl10_binary_column_major(tmp_path: Path) -> None:
    folder = tmp_path / "stl10_binary"
    folder.mkdir()
    images = np.random.RandomState(0).randint(0, 256, size=(3, 3, 96, 96)).astype(np.uint8)  # N, C, H, W
    images.transpose(0, 1, 3, 2).tofile(folder / "test_X.bin")  # published: column-major per channel
    np.array([1, 10, 5], dtype=np.uint8).tofile(folder / "test_y.bin")
    ds = load_split("stl10", "test", tmp_path)
    assert torch.equal(ds.images, torch.from_numpy(images))
    assert ds.labels.tolist() == [0, 9, 4]
    np.zeros(1000, dtype=np.uint8).tofile(folder / "test_X.bin")  # truncated
    with pytest.raises(HwsimError, match="corrupt or truncated data file .*test_X.bin"):
        load_split("stl10", "test", tmp_path)


def test_unknown_dataset_and_missing_dir() -> None:
    with pytest.raises(HwsimError, match="unknown dataset 'imagenet'; valid: cifar10, cifar100"):
        load_split("imagenet", "train")
    with pytest.raises(HwsimError, match="read from --data-dir"):
        load_split("cifar10", "train", None)


@pytest.mark.slow
def test_mnist_split_is_fixed_and_disjoint() -> None:
    train, test = load_split("mnist", "train"), load_split("mnist", "test")
    assert (len(train), len(test)) == (4000, 1000) and train.images.shape[1:] == (1, 28, 28)
    assert torch.equal(load_split("mnist", "test").images, test.images)
    assert train.images.max() == 255


def test_synthetic_and_val_split() -> None:
    x, y = synthetic_arrays(50, seed=0)
    assert x.dtype == np.uint8 and x.shape == (50, 3, 32, 32) and set(y) <= set(range(10))
    ds = load_split("synthetic", "train", synthetic_size=100)
    train, val = train_val_split(ds, 20, seed=0)
    assert len(train) == 80 and len(val) == 20
    assert torch.equal(train_val_split(ds, 20, seed=0)[1].images, val.images)
    with pytest.raises(HwsimError, match="val_size must be in"):
        train_val_split(ds, 100, seed=0)


def test_augment_crop_and_flip() -> None:
    images = torch.arange(2 * 1 * 6 * 6, dtype=torch.uint8).reshape(2, 1, 6, 6)
    torch.manual_seed(0)
    out = augment(images, pad=0, flip=True)
    assert out.dtype == torch.float32 and out.shape == (2, 1, 6, 6)
    for i in range(2):  # without padding each image is itself or its mirror
        ref = images[i].float() / 255
        assert torch.equal(out[i], ref) or torch.equal(out[i], ref.flip(2))
    torch.manual_seed(1)
    padded = augment(torch.full((64, 1, 6, 6), 255, dtype=torch.uint8), pad=2, flip=False)
    zeros_per_image = (padded == 0).flatten(1).sum(1)
    assert zeros_per_image.max() > 0 and (zeros_per_image == 0).any()  # shifted crops bring in zero padding
    assert ((padded == 0) | (padded == 1)).all()
