from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def hw6_path() -> Path:
    """The 6-bit user preset shipped in examples/ (b_io / b_w = 16 / 6 is not an integer)."""
    return ROOT / "examples" / "hw_6bit.toml"
