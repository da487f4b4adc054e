"""examples/my_net.py, the README's user model: it runs as a script and hwsim costs it exactly."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hwsim.cli import main

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "my_net.py"
# conv 3->32 at 32x32, 32->64 at 16x16, 64->128 at 8x8 (3x3, no bias), BN 2 x (32 + 64 + 128), linear 128->10
CONV_WEIGHTS = (864, 18432, 73728)
MACS = 864 * 32 * 32 + 18432 * 16 * 16 + 73728 * 8 * 8 + 1280


def test_the_example_runs_as_a_script():
    proc = subprocess.run([sys.executable, str(EXAMPLE)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "torch.Size([2, 10])"


def test_hwsim_counts_the_example_exactly(capsys, one_thread):
    with pytest.raises(SystemExit) as exc:
        main(["count", f"{EXAMPLE}:build", "--input-size", "3,32,32", "--format", "json"])
    doc = json.loads(capsys.readouterr().out)
    assert exc.value.code == 0
    totals = doc["totals"]
    assert totals["macs"] == MACS
    assert totals["params_total"] == sum(CONV_WEIGHTS) + 2 * (32 + 64 + 128) + 1290
    assert totals["memory_bytes"] == sum(CONV_WEIGHTS) + 1290  # 8-bit weights, BN excluded
    assert [layer["name"] for layer in doc["layers"]] == ["features.0", "features.3", "features.6", "classifier"]
