import os
import tempfile
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
