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


class _Custom:
    """A class a weights-only load refuses to build."""


def test_unreadable_torch_files_are_one_line_without_unsafe_advice(tmp_path):
    import pickle

    import torch

    from dose_model.fileio import load_weights_only

    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"garbage")
    custom = tmp_path / "custom.pt"
    custom.write_bytes(pickle.dumps({"x": _Custom()}, protocol=2))
    good = tmp_path / "good.pt"
    torch.save({"w": torch.ones(2)}, good)
    assert torch.equal(load_weights_only(good, ValueError)["w"], torch.ones(2))
    for path in (junk, custom):
        with pytest.raises(ValueError) as info:
            load_weights_only(path, lambda reason, p=path: ValueError(f"{p}: {reason}"))
        message = str(info.value)
        assert message.startswith(f"{path}: not a readable torch file (") and "\n" not in message
        assert "weights_only` set to `False" not in message
