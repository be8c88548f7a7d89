"""dose-train's set-up (dose_model.cache_then_train): which token cache it uses, and what it refuses."""

from pathlib import Path

import pytest
from dose_fixtures import write_fake_rmod, write_tiny_codec

from dose_model.cli.train import main
from dose_model.tokenize import tokenize_manifest


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    data = write_fake_rmod(root / "ds", {"train": 2, "valid": 1}, seed=4, mixture_seconds=1.0)
    codec = write_tiny_codec(root / "codec.pth", seed=0)
    tokens = root / "tok"
    tokenize_manifest(data, codec, tokens, oneshot_seconds=0.5, progress=False)
    return data, codec, tokens


def run(data: Path, out: Path, *extra: str) -> int:
    return main(["--manifest", str(data), "--drum", "kick", "--out", str(out), *extra])


def test_a_cache_of_other_data_or_another_codec_is_refused(made, tmp_path, capsys):
    data, codec, tokens = made
    other = write_tiny_codec(tmp_path / "other.pth", seed=1)
    assert run(data, tmp_path / "a", "--tokens", str(tokens), "--codec-weights", str(other)) == 1
    err = capsys.readouterr().err
    assert "another DAC codec" in err and str(other) in err
    changed = tmp_path / "ds"
    write_fake_rmod(changed, {"train": 2, "valid": 1}, seed=5, mixture_seconds=1.0)
    assert run(changed, tmp_path / "b", "--tokens", str(tokens)) == 1
    assert "other train data" in capsys.readouterr().err
    junk = tmp_path / "junk"  # not a cache, not empty: the tokenizer refuses to write there
    junk.mkdir()
    (junk / "notes.txt").write_text("mine")
    assert run(data, tmp_path / "c", "--tokens", str(junk), "--codec-weights", str(codec)) == 1
    assert "not empty and holds no index.json" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_a_missing_dataset_or_codec_is_named(made, tmp_path, capsys):
    data, codec, _ = made
    missing = tmp_path / "nowhere"
    assert run(missing, tmp_path / "a", "--codec-weights", str(codec)) == 1
    assert f"{missing}: no such manifest file or dataset folder" in capsys.readouterr().err
    absent = tmp_path / "absent.pth"
    assert run(data, tmp_path / "a", "--codec-weights", str(absent)) == 1
    assert f"{absent}: DAC weights file not found" in capsys.readouterr().err


def test_a_device_this_machine_lacks_is_an_error_not_a_traceback(made, tmp_path, capsys):
    import torch

    from dose_model.cli.tokenize import main as tokenize_main
    from dose_model.device import resolve_device

    data, codec, tokens = made
    with pytest.raises(ValueError, match="'gpu'"):
        resolve_device("gpu")
    assert resolve_device("cpu") == torch.device("cpu")
    if torch.cuda.is_available():
        assert resolve_device("cuda", local_rank=0) == torch.device("cuda", 0)
        return
    assert resolve_device("auto") == torch.device("cpu")
    assert run(data, tmp_path / "a", "--tokens", str(tokens), "--device", "cuda") == 1
    assert "CUDA is not available here" in capsys.readouterr().err
    args = ["--manifest", str(data), "--codec-weights", str(codec), "--out", str(tmp_path / "t")]
    assert tokenize_main([*args, "--device", "cuda:0", "--no-progress"]) == 2
    assert "CUDA is not available here" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "t").exists()


def test_ctrl_c_is_a_resume_hint_not_a_traceback(made, tmp_path, capsys, monkeypatch):
    import dose_model.cache_then_train
    import dose_model.cli.tokenize
    from dose_model.cli.tokenize import main as tokenize_main

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    data, codec, tokens = made
    monkeypatch.setattr(dose_model.cache_then_train, "train_from_manifest", interrupted)
    assert run(data, tmp_path / "a", "--tokens", str(tokens)) == 130
    assert "--resume" in capsys.readouterr().err
    monkeypatch.setattr(dose_model.cli.tokenize, "tokenize_manifest", interrupted)
    args = ["--manifest", str(data), "--codec-weights", str(codec), "--out", str(tmp_path / "t")]
    assert tokenize_main(args) == 130
    assert "rerun the same command to resume" in capsys.readouterr().err
