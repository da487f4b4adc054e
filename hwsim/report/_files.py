"""Write a directory all at once: build it next to its destination, then move it into place."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hwsim.errors import HwsimError


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
        tmp.chmod(_dir_mode())  # mkdtemp makes it private; the result is an ordinary directory
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


def _dir_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o777 & ~umask
