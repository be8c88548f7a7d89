"""dose_model.fileio: torch files read with weights_only (the atomic writers are shared:
tests/integration/test_fileio.py)."""

import pytest


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
