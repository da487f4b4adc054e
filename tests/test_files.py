"""Files written all at once (hwsim.files): the one place every --output, checkpoint and cache entry goes through."""

from __future__ import annotations

import os

import pytest

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
