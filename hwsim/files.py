"""Files and directories written all at once: built beside their destination, then moved into place, so that a
reader sees the old version or the new one, never half of one, and a failure (an error, a full disk, an
interrupt) leaves the destination as it was and nothing beside it."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hwsim.errors import HwsimError


@contextmanager
def replacing(path: str | Path) -> Iterator[Path]:
    """Yield a new temporary file beside ``path`` (named uniquely: concurrent writers do not share one); when
    the block succeeds it replaces ``path``, on any failure it is removed."""
    path = Path(path)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        tmp.chmod(0o666 & ~_umask())  # mkstemp makes it private; the result is an ordinary file
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


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
