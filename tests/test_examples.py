"""Every script in examples/ runs: the CPU demo end to end in its --quick mode (a few batches)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_cpu_demo_quick(tmp_path: Path):
    out = tmp_path / "demo"
    # the script imports this checkout's hwsim, not whichever one is installed
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "cpu_demo.py"), "--quick", "--out", str(out),
                           "--runs", str(tmp_path / "runs")], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert {"report.md", "points.csv", "frontier.csv"} <= {p.name for p in out.iterdir()}
    points = pd.read_csv(out / "points.csv")
    # one setting per plain model; FLOAT at 4 lambda_n x 2 lambda_th; OAT at its 6 training lambdas; FLOATS-i
    # at 4 lambda_n; FLOAT slim at 4 lambda_n x 2 widths
    assert sorted(points.groupby("run_name").size().items()) == [
        ("fast_1.25eps", 1), ("fast_2eps", 1), ("float", 8), ("float-slim", 8), ("floats-i_d0.3", 4), ("oat", 6),
        ("pgd-at_l0.0", 1), ("pgd-at_l0.5", 1), ("pgd-at_l1.0", 1), ("pgd-at_l1.0_bullettrain", 1), ("vit_tiny_oat", 6)]
    assert points["memory_bytes"].gt(0).all() and points["delay_ns"].gt(0).all()
    oat = points[points["run_name"] == "oat"]
    base = points[points["run_name"] == "pgd-at_l1.0"]
    assert oat["memory_bytes"].iloc[0] > base["memory_bytes"].iloc[0]  # FiLM weights cost memory
    report = (out / "report.md").read_text()
    assert "python examples/cpu_demo.py --quick" in report
    assert "## Training cost" in report and "BulletTrain: theoretical vs measured speedup" in report
    training = pd.read_csv(out / "training_cost.csv").set_index("run_name")
    assert training.loc["pgd-at_l1.0_bullettrain", "baseline_run"] == "pgd-at_l1.0"
    assert (tmp_path / "runs" / "float" / "sanity.csv").is_file()
    assert (out / "figures" / "tradeoff.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
