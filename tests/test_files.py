"""Files written all at once (hwsim.files): the one place every --output, checkpoint and cache entry goes through.

What is not a regular file is never replaced: a link is followed, a pipe written to, a directory refused."""

from __future__ import annotations

import json
import os
import select
import stat
import threading
import time
from pathlib import Path

import pytest

from hwsim.cli import main
from hwsim.errors import HwsimError
from hwsim.files import replacing, written


def test_a_replaced_file_is_whole_ordinary_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "out.csv"
    target.write_text("old\n")
    with replacing(target) as first, replacing(target) as second:  # two writers at once: two temporaries
        assert first != second and first.parent == second.parent == tmp_path
        first.write_text("first\n")
        second.write_text("second\n")
        assert target.read_text() == "old\n"  # nothing is in place before the block ends
    assert target.read_text() == "first\n"  # the outer block ended last
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's private 0600
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]


def test_a_failed_write_leaves_the_old_file_and_nothing_beside_it(tmp_path):
    target = tmp_path / "out.csv"
    target.write_text("old\n")
    with pytest.raises(KeyboardInterrupt), replacing(target) as tmp:
        tmp.write_text("half")
        raise KeyboardInterrupt
    assert target.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["out.csv"]
    with pytest.raises(HwsimError, match=r"cannot write '.*missing/out.csv': No such file or directory"), \
            written(tmp_path / "missing" / "out.csv"):
        pass


def test_a_symlink_is_followed_and_stays_a_link(tmp_path):
    """The file a link names is replaced (its temporary beside it, not beside the link); the link stays."""
    (tmp_path / "data").mkdir()
    target = tmp_path / "data" / "tgt.txt"
    target.write_text("old\n")
    link = tmp_path / "link.txt"
    link.symlink_to(Path("data") / "tgt.txt")
    with replacing(link) as tmp:
        assert tmp.parent == target.parent
        tmp.write_text("new\n")
    assert link.is_symlink() and os.readlink(link) == os.path.join("data", "tgt.txt")
    assert target.read_text() == "new\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "link.txt"]
    assert [p.name for p in target.parent.iterdir()] == ["tgt.txt"]
    chain = tmp_path / "chain.txt"  # a link to a link: the final file is replaced
    chain.symlink_to(link)
    with replacing(chain) as tmp:
        tmp.write_text("newer\n")
    assert chain.is_symlink() and link.is_symlink() and target.read_text() == "newer\n"
    dangling = tmp_path / "dangling.txt"  # a link to nothing yet: the file it names is created
    dangling.symlink_to(tmp_path / "data" / "later.txt")
    with replacing(dangling) as tmp:
        tmp.write_text("later\n")
    assert dangling.is_symlink() and (tmp_path / "data" / "later.txt").read_text() == "later\n"


def test_the_cli_output_option_writes_through_a_symlink(tmp_path):
    target = tmp_path / "tgt.txt"
    target.write_text("old\n")
    link = tmp_path / "link.txt"
    link.symlink_to(target)
    with pytest.raises(SystemExit) as exc:
        main(["models", "--format", "json", "-o", str(link)])
    assert exc.value.code == 0
    assert link.is_symlink() and "resnet34" in [m["model"] for m in json.loads(target.read_text())["models"]]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.txt", "tgt.txt"]


def _fifo_reader(fifo: Path, received: list[bytes], deadline_s: float = 20.0) -> threading.Thread:
    """A thread that reads ``fifo`` until a writer has written and closed it, or until the deadline (so that a
    writer that never opens the pipe fails the test instead of hanging it). The pipe is opened before the
    thread starts, non-blocking: a writer's open does not wait for it."""
    fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)

    def read() -> None:
        chunks: list[bytes] = []
        deadline = time.monotonic() + deadline_s
        try:
            while time.monotonic() < deadline:
                ready, _, _ = select.select([fd], [], [], 0.05)
                chunk = os.read(fd, 1 << 16) if ready else None
                if chunk:
                    chunks.append(chunk)
                elif chunk == b"" and chunks:
                    break  # end of file after data: the writer closed the pipe
                else:
                    time.sleep(0.01)  # no writer yet (a pipe without one reads as empty)
        finally:
            os.close(fd)
            received.append(b"".join(chunks))

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread


def test_a_named_pipe_is_written_in_place(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    text = "row\n" * 100_000  # 400 kB: more than a pipe holds, so the writer needs the reader running beside it
    received: list[bytes] = []
    reader = _fifo_reader(fifo, received)
    with written(fifo) as tmp:
        assert tmp == fifo  # no temporary: the pipe itself
        tmp.write_text(text)
    reader.join(30)
    assert not reader.is_alive() and received == [text.encode()]
    assert stat.S_ISFIFO(fifo.lstat().st_mode)  # still a pipe, not a regular file
    assert [p.name for p in tmp_path.iterdir()] == ["fifo"]


def test_the_cli_output_option_writes_into_a_named_pipe(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    received: list[bytes] = []
    reader = _fifo_reader(fifo, received)
    with pytest.raises(SystemExit) as exc:
        main(["models", "--format", "json", "-o", str(fifo)])
    assert exc.value.code == 0
    reader.join(30)
    assert not reader.is_alive() and "resnet34" in [m["model"] for m in json.loads(received[0])["models"]]
    assert stat.S_ISFIFO(fifo.lstat().st_mode) and [p.name for p in tmp_path.iterdir()] == ["fifo"]


def test_a_directory_is_refused_and_left_alone(tmp_path, capsys):
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "keep.txt").write_text("keep\n")
    link = tmp_path / "link"
    link.symlink_to(folder)
    entered = []
    for path in (folder, link):  # refused before anything is written
        with pytest.raises(IsADirectoryError, match="it is a directory"), replacing(path):
            entered.append(path)
        with pytest.raises(HwsimError, match=rf"^cannot write {str(path)!r}: it is a directory$"), written(path):
            entered.append(path)
    assert entered == []
    with pytest.raises(SystemExit) as exc:
        main(["models", "-o", str(link)])  # the command line refuses a directory too (click's check)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("hwsim: error: ") and err.endswith("is a directory.\n") and err.count("\n") == 1
    assert (folder / "keep.txt").read_text() == "keep\n" and link.is_symlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "out"]
    assert [p.name for p in folder.iterdir()] == ["keep.txt"]


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc/self/fd (Linux)")
def test_a_link_to_a_pipe_like_dev_stdout_is_written_through(tmp_path):
    """/dev/stdout is a link to /proc/self/fd/1; this is the same with a pipe of our own (nothing under /dev)."""
    read_end, write_end = os.pipe()
    try:
        stdout = tmp_path / "stdout"
        stdout.symlink_to(f"/proc/self/fd/{write_end}")
        with written(stdout) as tmp:
            assert tmp == stdout
            tmp.write_text("through the link\n")
        os.close(write_end)
        write_end = -1
        assert os.read(read_end, 1 << 16) == b"through the link\n"
        assert stdout.is_symlink() and [p.name for p in tmp_path.iterdir()] == ["stdout"]
    finally:
        os.close(read_end)
        if write_end >= 0:
            os.close(write_end)
