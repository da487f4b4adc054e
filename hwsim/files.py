"""Files and directories written all at once: built beside their destination, then moved into place, so that a
reader sees the old version or the new one, never half of one, and a failure (an error, a full disk, an
interrupt) leaves the destination as it was and nothing beside it.

Nothing that hwsim did not write is replaced: a file's symbolic link is followed (the file it names is
replaced, the link stays), a pipe or a device is written to, a directory stands; an output directory is
replaced only when it is empty or carries :data:`DIR_MARKER` (a directory that :func:`staged_dir` wrote).
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from hwsim.errors import HwsimError

#: errno values of a write the file system refused for want of room or permission (a full disk, a quota, a
#: read-only file system, a file size limit): reported as one line naming the output, never a traceback.
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM})

#: The file in every directory :func:`staged_dir` writes: the sign that hwsim may replace that directory.
DIR_MARKER = ".hwsim-report"
_MARKER_TEXT = ("This directory was written by hwsim (a report). hwsim replaces a directory only when it is\n"
                "empty or holds this file: remove the file to keep hwsim from replacing the directory.\n")


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


def check_output_dir(out: str | Path, keep: Iterable[str | Path] = ()) -> Path:
    """The directory ``out`` resolved, when :func:`staged_dir` may write it; else HwsimError saying why.

    Refused: the current directory, a directory that contains it (a filesystem root among them), a directory
    that is, contains or lies inside one of ``keep`` (the run directories a report reads), an existing file, and
    an existing directory that is neither empty nor marked with :data:`DIR_MARKER`. Nothing is changed.
    """
    shown = f"output directory {str(out)!r}"
    try:
        real = Path(out).resolve()
        cwd = Path.cwd().resolve()
    except (OSError, RuntimeError) as exc:  # RuntimeError: a symbolic link loop
        raise HwsimError(f"cannot resolve {shown}: {getattr(exc, 'strerror', None) or exc}") from None
    if real == cwd:
        raise HwsimError(f"{shown} is the current directory; refusing to replace it (nothing was changed)")
    if real.parent == real:
        raise HwsimError(f"{shown} is a filesystem root; refusing to replace it (nothing was changed)")
    if cwd.is_relative_to(real):
        raise HwsimError(f"{shown} contains the current directory; refusing to replace it (nothing was changed)")
    for run in keep:
        run_real = Path(run).resolve()
        if real == run_real:
            where = "is"
        elif run_real.is_relative_to(real):
            where = "contains"
        elif real.is_relative_to(run_real):
            where = "is inside"
        else:
            continue
        raise HwsimError(f"{shown} {where} the run directory {str(run)!r}; write the report elsewhere "
                         f"(nothing was changed)")
    _check_replaceable(out, real)
    return real


def _check_replaceable(out: str | Path, real: Path) -> None:
    shown = f"output directory {str(out)!r}"
    try:
        if not real.exists():
            existing = next(p for p in real.parents if p.exists())  # the root exists
            if not existing.is_dir():
                raise HwsimError(f"cannot write {shown}: {str(existing)!r} is not a directory (nothing was changed)")
            return
        if not real.is_dir():
            raise HwsimError(f"{shown} exists and is not a directory (nothing was changed)")
        if (real / DIR_MARKER).is_file() or not any(real.iterdir()):
            return
    except OSError as exc:
        raise HwsimError(f"cannot read {shown}: {exc.strerror or exc}") from None
    raise HwsimError(f"{shown} exists and is not a report hwsim wrote (it has files and no {DIR_MARKER}); "
                     f"nothing was changed: choose a new or empty directory")


@contextmanager
def staged_dir(out: str | Path, keep: Iterable[str | Path] = ()) -> Iterator[Path]:
    """Yield an empty directory next to ``out``, holding :data:`DIR_MARKER`; on success it replaces ``out``, on
    any error it is removed.

    Same file system as ``out``, so the final move is a rename: a reader never sees a half-written ``out``, and
    a failed run leaves ``out`` as it was (absent, or the previous version). ``out`` is checked first with
    :func:`check_output_dir` (``keep``: directories that must survive, e.g. the runs a report reads), and its
    marker again just before the swap; a symbolic link to a directory is followed (the link stays).

    Raises:
        HwsimError: ``out`` may not be replaced (:func:`check_output_dir`), or it cannot be written (names it).
    """
    real = check_output_dir(out, keep)
    try:
        real.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{real.name}.tmp-", dir=real.parent))
    except OSError as exc:
        raise _cannot_write(out, exc) from None
    try:
        try:
            tmp.chmod(0o777 & ~_umask())  # mkdtemp makes it private; the result is an ordinary directory
            (tmp / DIR_MARKER).write_text(_MARKER_TEXT, encoding="utf-8")
        except OSError as exc:
            raise _cannot_write(out, exc) from None
        try:
            yield tmp
        except OSError as exc:
            if exc.errno not in WRITE_ERRNOS:
                raise
            raise _cannot_write(out, exc) from None
        _check_replaceable(out, real)  # again: something may have been written there meanwhile
        try:
            _swap(tmp, real)
        except OSError as exc:
            raise _cannot_write(out, exc) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _swap(new: Path, real: Path) -> None:
    """Move the directory ``new`` onto ``real``; the previous ``real`` is removed, or put back on a failure."""
    if not real.exists():
        new.rename(real)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{real.name}.old-", dir=real.parent))
    old.rmdir()
    real.rename(old)
    try:
        new.rename(real)
    except BaseException:
        old.rename(real)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _cannot_write(out: str | Path, exc: OSError) -> HwsimError:
    note = " (the previous one is kept)" if Path(out).exists() else " (nothing was written)"
    return HwsimError(f"cannot write output directory {str(out)!r}: {exc.strerror or exc}{note}")


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask
