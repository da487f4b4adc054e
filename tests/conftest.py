"""Fixtures shared by the test modules.

Markers: ``slow`` (more than a few seconds; CI runs them, ``python -m pytest -m "not slow"`` skips them).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]

# The tests fill a layer-shape cache of their own, never the user's (~/.cache/hwsim).
os.environ["HWSIM_CACHE_DIR"] = tempfile.mkdtemp(prefix="hwsim-test-cache-")
os.environ.pop("HWSIM_NO_CACHE", None)


@pytest.fixture
def hw6_path() -> Path:
    """The 6-bit user preset shipped in examples/ (b_io / b_w = 16 / 6 is not an integer)."""
    return ROOT / "examples" / "hw_6bit.toml"


@pytest.fixture
def one_thread():
    """Tiny tensors on a shared 2-core machine: a second intra-op thread only spins (10-100x slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def zoo_traced() -> Iterator[Callable]:
    """``zoo_traced(setting)`` -> ``(net, trace)`` of a :class:`hwsim.cost.ModelSetting`, built (seeded, as the
    cost commands build it) and traced once for consecutive tests that ask for it (each preset of a golden
    case, say). Only the last few are kept: the large zoo models take hundreds of MB each."""
    from collections import OrderedDict

    from hwsim.cost import build_model
    from hwsim.trace import trace_model

    cache: OrderedDict = OrderedDict()

    def get(setting):
        if setting not in cache:
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                net = build_model(setting)
                cache[setting] = (net, trace_model(net, setting.resolved_input_size()))
            finally:
                torch.set_num_threads(threads)
            while len(cache) > 4:
                cache.popitem(last=False)
        cache.move_to_end(setting)
        return cache[setting]

    yield get
    cache.clear()
