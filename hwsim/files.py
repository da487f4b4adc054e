"""Files and directories written all at once: built beside their destination, then moved into place, so that a
reader sees the old version or the new one, never half of one, and a failure (an error, a full disk, an
interrupt) leaves the destination as it was and nothing beside it.

A file's symbolic link is followed (the file it names is replaced, the link stays), a pipe or a device is
written to, a directory is refused.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hwsim.errors import HwsimError


@contextmanager
def replacing(path: str | Path) -> Iterator[Path]:
    """Yield a new temporary file beside ``path`` (named uniquely: concurrent writers do not share one); when
    the block succeeds it replaces ``path``, on any failure it is removed.

    A symbolic link is followed: the temporary is made beside the file it finally names, which it replaces (the
    link stays a link). An existing ``path`` that is not a regular file (a pipe, a terminal, a device, a socket)
    is yielded itself and written in place: no temporary, nothing replaced.

    Raises:
        IsADirectoryError: ``path`` is a directory (or a link to one), before anything is written
            (:func:`written` reports it as a HwsimError).
    """
    path = Path(path)
    try:
        mode = path.stat().st_mode  # follows links
    except (FileNotFoundError, NotADirectoryError):
        mode = None
    if mode is not None and stat.S_ISDIR(mode):
        raise IsADirectoryError(errno.EISDIR, "it is a directory", str(path))
    if mode is not None and not stat.S_ISREG(mode):
        yield path  # a pipe or a device: what is written must reach it, not replace it
        return
    if path.is_symlink():
        target = Path(os.path.realpath(path))
        if mode is not None and not _same_file(target, path):
            yield path  # a link we cannot follow by name (/proc/self/fd/N of a deleted file): write through it
            return
        path = target  # replace the file the link names (or create it, for a dangling link)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        tmp.chmod(0o666 & ~_umask())  # mkstemp makes it private; the result is an ordinary file
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


@contextmanager
def written(path: str | Path) -> Iterator[Path]:
    """:func:`replacing`, with a failure to write reported as a :class:`HwsimError` naming the file (for the
    commands' ``--output``)."""
    try:
        with replacing(path) as tmp:
            yield tmp
    except OSError as exc:
        raise HwsimError(f"cannot write {str(path)!r}: {exc.strerror or exc}") from None


@contextmanager
def staged_dir(out: Path) -> Iterator[Path]:
    """Yield an empty directory next to ``out``; on success it replaces ``out``, on any error it is removed.

    Same file system as ``out``, so the final move is a rename: a reader never sees a half-written ``out``, and
    a failed run leaves ``out`` as it was (absent, or the previous version).
    """
    if out.exists() and not out.is_dir():
        raise HwsimError(f"output {out} exists and is not a directory")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        tmp.chmod(0o777 & ~_umask())  # mkdtemp makes it private; the result is an ordinary directory
        yield tmp
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            old.rmdir()
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask
