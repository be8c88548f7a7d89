"""rmod_dose_common.fileio: the one atomic, durable writer and file hash of both packages.

Durability cannot be proven without cutting the power, so these tests check the order of
the system calls that give it: a file is ``fsync``-ed before its rename, and its folder
after the rename."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from rmod_dose_common import fileio
from rmod_dose_common.fileio import (
    atomic_write,
    atomic_write_bytes,
    atomic_write_text,
    replace_durably,
    sha256_file,
    sync_folder,
)


@pytest.fixture
def calls(monkeypatch) -> list[tuple[str, str]]:
    """Every ``os.fsync`` (with the path its descriptor names) and ``os.replace``, in order;
    ``syncfs`` is turned off so that a folder's files are ``fsync``-ed one by one."""
    events: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(src, dst) -> None:
        events.append(("replace", f"{src} -> {dst}"))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(fileio, "_syncfs", lambda fd: False)
    return events


def test_a_file_is_synced_before_its_rename_and_its_folder_after(tmp_path, calls):
    path = tmp_path / "index.json"
    atomic_write_text(path, "{}\n")
    assert [kind for kind, _ in calls] == ["fsync", "replace", "fsync"]
    temp = calls[0][1]
    assert Path(temp).parent == tmp_path and Path(temp).name.startswith(".index.json.")
    assert calls[1][1] == f"{temp} -> {path}"
    assert calls[2][1] == str(tmp_path)  # the folder: the new name survives a crash
    assert path.read_text() == "{}\n"


def test_a_folder_is_published_after_its_files_are_synced(tmp_path, calls):
    tmp, final = tmp_path / "split" / ".tmp-000001", tmp_path / "split" / "000001"
    tmp.mkdir(parents=True)
    for name in ("mixture.npy", "meta.json"):
        (tmp / name).write_bytes(b"x")
    sync_folder(tmp)
    replace_durably(tmp, final)
    synced = [target for kind, target in calls[:3]]
    assert sorted(synced) == sorted([str(tmp / "meta.json"), str(tmp / "mixture.npy"), str(tmp)])
    assert calls[3] == ("replace", f"{tmp} -> {final}")
    assert calls[4:] == [("fsync", str(tmp_path / "split"))]


def test_writes_replace_with_umask_permissions_and_clean_up(tmp_path):
    path = tmp_path / "sub" / "index.json"
    atomic_write_text(path, "one\n")
    old = os.umask(0o027)
    try:
        atomic_write_text(path, "two\n")
    finally:
        os.umask(old)
    assert path.read_text() == "two\n"
    assert path.stat().st_mode & 0o777 == 0o640  # as open(path, "w") would: not mkstemp's 0o600
    assert fileio.current_umask() == old

    def fail(fh):
        fh.write(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, fail)
    assert path.read_text() == "two\n"
    assert sorted(p.name for p in path.parent.iterdir()) == ["index.json"]  # no temporary left


def test_sha256_file_reads_in_chunks(tmp_path):
    data = os.urandom(3000)
    path = tmp_path / "blob"
    atomic_write_bytes(path, data)
    assert sha256_file(path, chunk=1024) == hashlib.sha256(data).hexdigest() == sha256_file(path)
