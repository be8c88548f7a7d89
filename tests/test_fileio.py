"""Atomic writes of dose_model (checkpoints, codec weights, token-cache index, metrics)."""

import os

import pytest

from dose_model.fileio import atomic_write, atomic_write_text


def test_atomic_write_replaces_with_umask_permissions_and_cleans_up(tmp_path):
    path = tmp_path / "sub" / "index.json"
    atomic_write_text(path, "one\n")
    old = os.umask(0o027)
    try:
        atomic_write_text(path, "two\n")
    finally:
        os.umask(old)
    assert path.read_text() == "two\n"
    assert path.stat().st_mode & 0o777 == 0o640  # as open(path, "w") would: not mkstemp's 0o600

    def fail(fh):
        fh.write(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, fail)
    assert path.read_text() == "two\n"
    assert sorted(p.name for p in path.parent.iterdir()) == ["index.json"]  # no temporary left
