"""BulletTrain's theoretical speedup in the report: pooled over the run like the pass ratio, and the pass
speedup to expect once the clean classification forward that Eq. 7 leaves out is counted (issue 22)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hwsim.report.training import render_training_section, training_cost


def _run(root: Path, name: str, bullettrain: bool, passes: int, speedups: tuple[float, ...] = ()) -> str:
    d = root / name
    d.mkdir()
    config = {"model": "small_cnn", "variant": "base", "algorithm": "pgd-at", "dataset": "mnist", "eps": 0.3,
              "attack_steps": 7, "bullettrain": bullettrain}
    (d / "config.json").write_text(json.dumps(config))
    lines = []
    for epoch in range(2):
        line = {"epoch": epoch, "epoch_time_s": 1.0, "images": 100, "fwd_passes": passes, "bwd_passes": passes,
                "attack_fwd_passes": 0, "attack_bwd_passes": 0, "optimizer_steps": 4, "train_macs": 1}
        if speedups:
            line["bt_theoretical_speedup"] = speedups[epoch]
        lines.append(json.dumps(line))
    (d / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    return str(d)


def test_pooled_and_expected_pass_speedup_by_hand(tmp_path: Path) -> None:
    runs = [_run(tmp_path, "plain", False, 800), _run(tmp_path, "bt", True, 350, (2.0, 4.0))]
    table = training_cost(runs).set_index("run_name")
    bt = table.loc["bt"]
    assert bt["bt_theoretical_speedup"] == 3.0  # the mean of the per-epoch values
    # Eq. 7 with N = 7: denominators 8 / 2 = 4 and 8 / 4 = 2, mean 3: pooled 8 / 3 (harmonic mean of 2 and 4)
    assert bt["bt_theoretical_pooled"] == pytest.approx(8 / 3)
    # passes per image: baseline 2 x 8 = 16; BulletTrain 2 x 3 + 1 clean forward = 7
    assert bt["bt_expected_pass_speedup"] == pytest.approx(16 / 7)
    text = render_training_section(table.reset_index(), "fig.png")
    assert "bt_expected_pass_speedup" in text and "leaves out" in text
