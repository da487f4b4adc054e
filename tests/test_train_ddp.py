"""DDP: `torchrun --nproc_per_node 2` (gloo, CPU) trains and leaves identical weights on both ranks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]

# Each rank trains, then saves its own final state dict (test-only), so the test can compare them.
SCRIPT = """
import os, sys, torch
from hwsim.train.config import make_config
from hwsim.train import trainer
out, rank = sys.argv[1], os.environ["RANK"]
config = make_config({"model": "small_cnn", "variant": "float", "algorithm": "float", "dataset": "synthetic",
                      "synthetic_size": 256, "val_size": 32, "batch_size": 32, "attack_steps": 1,
                      "epochs": 1, "device": "cpu"})
captured = {}
original = trainer.build_model
def keep(config):
    captured["model"] = original(config)
    return captured["model"]
trainer.build_model = keep
trainer.train(config, out)
torch.save(captured["model"].state_dict(), f"{out}.rank{rank}.pt")
"""


def test_torchrun_two_ranks_identical_weights(tmp_path: Path) -> None:
    script = tmp_path / "ddp_run.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script),
           str(out)]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    a = torch.load(f"{out}.rank0.pt", weights_only=True)
    b = torch.load(f"{out}.rank1.pt", weights_only=True)
    assert a.keys() == b.keys() and [k for k in a if not torch.equal(a[k], b[k])] == []
    last = torch.load(out / "checkpoints" / "last.pt", weights_only=True)
    assert all(torch.equal(last["model"][k], a[k]) for k in a)
    assert (out / "metrics.jsonl").read_text().count("\n") == 1  # only rank 0 wrote
    fresh = torch.load(out / "checkpoints" / "last.pt", weights_only=True)["config"]
    assert fresh["algorithm"] == "float"
