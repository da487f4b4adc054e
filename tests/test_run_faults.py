"""Runs that survive faults made for real: a full disk (a small tmpfs, or a file-size limit where no tmpfs can
be mounted), bytes flipped inside a checkpoint, a metrics line cut mid-way, a run killed before its first
checkpoint, and resuming a finished run. Each ends in one line on stderr (exit 2) or an honest recovery."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from hwsim.cli import main
from hwsim.errors import HwsimError
from hwsim.train.config import make_config
from hwsim.train.trainer import train

TINY = {"model": "small_cnn", "dataset": "synthetic", "synthetic_size": 192, "val_size": 32, "batch_size": 32,
        "attack_steps": 2, "epochs": 2, "device": "cpu"}
TRAIN_ARGS = ["train", "--model", "small_cnn", "--dataset", "synthetic", "--synthetic-size", "192", "--val-size",
              "32", "--batch-size", "32", "--attack-steps", "2", "--epochs", "2", "--device", "cpu"]
FULL_DISK = ("No space left on device", "File too large")  # tmpfs; the file-size-limit stand-in


# ------------------------------------------------------------------------------------------------ a full disk

@functools.lru_cache(maxsize=1)
def _tmpfs_prefix() -> tuple[str, ...] | None:
    """The command prefix that runs a shell in a private mount namespace where a tmpfs can be mounted (root:
    ``unshare -m``; a user: ``unshare -rm``), or None where neither can (then the file-size stand-in)."""
    probe = Path(os.environ.get("TMPDIR", "/tmp"))
    for prefix in (("unshare", "-m"), ("unshare", "-rm")):
        if shutil.which(prefix[0]) is None:
            return None
        try:
            done = subprocess.run([*prefix, "sh", "-c", 'mount -t tmpfs -o size=64k tmpfs "$0"', str(probe)],
                                  capture_output=True, timeout=30)
        except (OSError, subprocess.SubprocessError):
            continue
        if done.returncode == 0:
            return prefix
    return None


_SCRIPT = r"""
disk="$1"; size="$2"; free="$3"; src="$4"; listing="$5"; shift 5
mount -t tmpfs -o "size=$size" tmpfs "$disk" || exit 97
if [ -n "$src" ]; then cp -a "$src"/. "$disk"/ || exit 98; fi
if [ "$free" = 0 ]; then cat /dev/zero > "$disk/.fill" 2>/dev/null
else avail=$(stat -f -c '%a*%S' "$disk"); head -c $(( $avail - $free )) /dev/zero > "$disk/.fill"; fi
"$@"; rc=$?
(cd "$disk" && find . ! -name .fill -type f -exec sha256sum {} +; find . -type d) > "$listing"
exit $rc
"""

_LIMITED = r"""
import os, resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
os.execv(sys.argv[2], sys.argv[2:])
"""


def run_on_full_disk(tmp_path: Path, args: list[str], *, free: int = 0, src: Path | None = None
                     ) -> tuple[int, str, dict[str, str]]:
    """``hwsim ARGS`` (paths under ``DISK`` are inside the disk) on a disk with ``free`` bytes left, holding a
    copy of ``src``: its exit code, stderr, and the files left on the disk (relative path -> sha256; directories
    -> "dir"). A 32 MB tmpfs in a private mount namespace; where none can be mounted, a copy of ``src`` in a
    directory with a per-file size limit of ``free`` bytes (RLIMIT_FSIZE), which fails writes as a full disk
    does (EFBIG instead of ENOSPC)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    listing = tmp_path / "listing.txt"
    hwsim = [sys.executable, "-c", "from hwsim.cli import main; main()"]
    args = [a.replace("DISK", str(disk)) for a in args]
    prefix = _tmpfs_prefix()
    if prefix is not None:
        command = [*prefix, "bash", "-c", _SCRIPT, "faults", str(disk), "32m", str(free), str(src or ""),
                   str(listing), *hwsim, *args]
        done = subprocess.run(command, capture_output=True, text=True, timeout=300)
        assert done.returncode not in (97, 98), done.stderr
        files = {}
        for line in listing.read_text().splitlines():
            if line.startswith("."):
                files[line[2:] or "."] = "dir"
            else:
                digest, name = line.split(maxsplit=1)
                files[name[2:]] = digest
        return done.returncode, done.stderr, files
    if src is not None:
        shutil.copytree(src, disk, dirs_exist_ok=True)
    done = subprocess.run([sys.executable, "-c", _LIMITED, str(free), *hwsim, *args], capture_output=True,
                          text=True, timeout=300)
    files = {str(p.relative_to(disk)): "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
             for p in disk.rglob("*")}
    files["."] = "dir"
    return done.returncode, done.stderr, files


def tree(path: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under ``path`` (directories -> "dir"), as run_on_full_disk lists."""
    files = {str(p.relative_to(path)): "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
             for p in path.rglob("*")}
    files["."] = "dir"
    return files


def assert_one_line_full_disk(rc: int, err: str, *names: str) -> None:
    assert rc == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert any(cause in err for cause in FULL_DISK), err
    assert all(name in err for name in names), err


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A run of 1 of 2 epochs, evaluated once, and a report of it (copied onto the small disks)."""
    root = tmp_path_factory.mktemp("src")
    train(make_config(TINY), root / "run", stop_after=1)
    with pytest.raises(SystemExit) as exc:
        main(["eval", str(root / "run"), "--n-images", "32", "--device", "cpu"])
    assert exc.value.code == 0
    with pytest.raises(SystemExit) as exc:
        main(["report", str(root / "run"), "--out", str(root / "rep")])
    assert exc.value.code == 0
    return root


def test_training_on_a_full_disk_is_one_line_and_leaves_no_run_directory(tmp_path: Path) -> None:
    rc, err, files = run_on_full_disk(tmp_path, [*TRAIN_ARGS, "--out", "DISK/run"], free=0)
    assert_one_line_full_disk(rc, err, str(tmp_path / "disk" / "run"))
    assert files == {".": "dir"}  # not even an empty run directory


def test_training_that_fills_the_disk_at_its_first_checkpoint_keeps_nothing(tmp_path: Path) -> None:
    # room for config.json and the lock (a few pages), not for a 300 kB checkpoint
    rc, err, files = run_on_full_disk(tmp_path, [*TRAIN_ARGS, "--out", "DISK/run"], free=64 * 1024)
    assert_one_line_full_disk(rc, err, "last.pt", "nothing of the run was kept")
    assert files == {".": "dir"}


@pytest.mark.slow
def test_resume_eval_sanity_and_report_on_a_full_disk_are_one_line_and_change_nothing(
        tmp_path: Path, trained: Path) -> None:
    before = tree(trained)
    for i, (args, names) in enumerate([
            (["train", "--resume", "DISK/run", "--device", "cpu"], ("hwsim train --resume",)),
            (["eval", "DISK/run", "--n-images", "32", "--device", "cpu"], ("eval.csv",)),
            (["eval", "DISK/run", "--sanity", "--n-images", "32", "--device", "cpu"], ("sanity.csv",)),
            (["report", "DISK/run", "--out", "DISK/rep"], ("rep", "the previous one is kept"))]):
        case = tmp_path / str(i)
        case.mkdir()
        rc, err, files = run_on_full_disk(case, args, free=0, src=trained)
        assert_one_line_full_disk(rc, err, *names)
        assert files == before, args  # every file as it was, no temporary left beside them


# ------------------------------------------------------------------------------------------------ bit rot

def flip_a_weight_byte(path: Path) -> None:
    """Flip one bit in the middle of the largest tensor stored in the checkpoint file (its bytes on disk)."""
    with zipfile.ZipFile(path) as archive:
        info = max((i for i in archive.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    raw = bytearray(path.read_bytes())
    name_len, extra_len = int.from_bytes(raw[info.header_offset + 26:info.header_offset + 28], "little"), \
        int.from_bytes(raw[info.header_offset + 28:info.header_offset + 30], "little")
    start = info.header_offset + 30 + name_len + extra_len
    raw[start + info.file_size // 2] ^= 0x10
    path.write_bytes(bytes(raw))


def cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(args)
    return exc.value.code, capsys.readouterr().err


@pytest.mark.slow
def test_flipped_bytes_in_last_pt_are_caught_by_eval_resume_masks_and_report(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    train(make_config({**TINY, "variant": "floats-i", "density": 0.5}), run, stop_after=1)
    assert cli(["eval", str(run), "--n-images", "32", "--device", "cpu"], capsys)[0] == 0
    last = run / "checkpoints" / "last.pt"
    good = last.read_bytes()
    assert torch.load(last, weights_only=True)["sha256"]  # stored in the checkpoint itself
    flip_a_weight_byte(last)
    assert torch.load(last, weights_only=True)["epoch"] == 1  # torch alone loads the damaged file happily
    damaged = f"checkpoint {last} is damaged"
    cases = [["eval", str(run), "--n-images", "32", "--device", "cpu"],
             ["train", "--resume", str(run), "--device", "cpu"],
             ["count", "small_cnn", "--variant", "floats-i", "--masks", str(run)],
             ["report", str(run), "--out", str(tmp_path / "rep"), "--checkpoint", "last"]]
    for args in cases:
        code, err = cli(args, capsys)
        assert code == 2 and err.count("\n") == 1 and damaged in err, (args, err)
        assert "--resume-from best" in err, err
    assert not (tmp_path / "rep").exists()
    # best.pt (the same epoch here) is whole: resume continues from it and rewrites last.pt
    code, err = cli(["train", "--resume", str(run), "--resume-from", "best", "--device", "cpu"], capsys)
    assert code == 0, err
    assert torch.load(last, weights_only=True)["epoch"] == 2 and last.read_bytes() != good


def test_a_checkpoint_without_a_checksum_still_loads_and_a_changed_value_is_caught(tmp_path: Path) -> None:
    from hwsim.train import checkpoint

    state = {"format": 3, "epoch": 4, "model": {"w": torch.arange(6.0).reshape(2, 3)}, "best_ra": 1.5}
    path = tmp_path / "c.pt"
    checkpoint.save_atomic(state, path)
    assert checkpoint.load(path)["epoch"] == 4
    saved = torch.load(path, weights_only=True)
    for key, value in [("epoch", 5), ("best_ra", 1.25), ("model", {"w": torch.arange(6.0).reshape(3, 2)})]:
        torch.save({**saved, key: value}, path)  # one value changed, the old checksum kept
        with pytest.raises(HwsimError, match="is damaged"):
            checkpoint.load(path)
    torch.save({k: v for k, v in saved.items() if k != "sha256"} | {"format": 2}, path)  # before checksums
    assert checkpoint.load(path)["epoch"] == 4


def test_count_masks_on_an_empty_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    code, err = cli(["count", "small_cnn", "--variant", "floats-i", "--masks", str(empty)], capsys)
    assert code == 2 and err.count("\n") == 1 and "the file is empty, 0 bytes" in err and str(empty) in err


# ------------------------------------------------------------------------------------------------ recovery

def test_a_metrics_line_cut_mid_way_is_rewritten_from_the_checkpoint(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    config = make_config({**TINY, "epochs": 3})
    train(config, tmp_path / "full")
    run = tmp_path / "cut"
    train(config, run, stop_after=2)
    metrics = run / "metrics.jsonl"
    lines = metrics.read_text().splitlines()
    metrics.write_text(lines[0] + "\n" + lines[1][:len(lines[1]) // 2])  # killed while writing epoch 2's line
    capsys.readouterr()
    train(config, run, resume=True)
    assert "rewrote epoch 2 from its checkpoint" in capsys.readouterr().err
    got = [json.loads(line) for line in metrics.read_text().splitlines()]
    want = [json.loads(line) for line in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in got] == [1, 2, 3]
    assert got[1] == json.loads(lines[1])  # the cut line, whole again
    for key in ("train_loss", "ca", "ra", "lr", "images"):  # the same run as one uninterrupted
        assert [m[key] for m in got] == [m[key] for m in want], key


def test_a_run_killed_before_its_first_checkpoint_starts_again(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    train(make_config(TINY), run, stop_after=1)
    shutil.rmtree(run / "checkpoints")  # what kill -9 during epoch 1 leaves: config.json and an empty dir
    (run / "metrics.jsonl").unlink()
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / ".last.pt.x1y2.tmp").write_bytes(b"half a checkpoint")
    # the same command again: starts over, and says so
    code, err = cli([*TRAIN_ARGS, "--out", str(run), "--stop-after", "1"], capsys)
    assert code == 0 and "holds only the config.json of this run" in err and "starting it again" in err
    assert torch.load(run / "checkpoints" / "last.pt", weights_only=True)["epoch"] == 1
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best.pt", "last.pt"]  # no leftover
    # another command over such a directory: refused, naming what differs
    shutil.rmtree(run / "checkpoints")
    (run / "metrics.jsonl").unlink()
    code, err = cli([*TRAIN_ARGS, "--out", str(run), "--lr", "0.05"], capsys)
    assert code == 2 and err.count("\n") == 1 and "lr 0.1 there, 0.05 now" in err
    assert (run / "config.json").is_file()  # not ours to remove
    # --resume of it: no best.pt to point at; it starts from epoch 1
    code, err = cli(["train", "--resume", str(run), "--device", "cpu", "--stop-after", "1"], capsys)
    assert code == 0 and "has no checkpoint yet" in err and "best.pt" not in err
    assert [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines()] == [1]


def test_resuming_a_finished_run_says_so_with_its_last_epoch(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    train(make_config({**TINY, "epochs": 1}), run)
    before = tree(run)
    code, err = cli(["train", "--resume", str(run), "--device", "cpu"], capsys)
    assert code == 0 and "is finished: its last epoch, 1 of 1" in err
    assert tree(run) == before


@pytest.mark.parametrize("value", ["0", "-1"])
def test_stop_after_must_be_at_least_one_and_leaves_nothing(tmp_path: Path, value: str,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    code, err = cli([*TRAIN_ARGS, "--out", str(tmp_path / "run"), "--stop-after", value], capsys)
    assert code == 2 and err.count("\n") == 1 and f"stop_after must be an integer in [1, 100,000]" in err
    assert not (tmp_path / "run").exists()
