"""dose-train's set-up (dose_model.train.pipeline): which token cache it uses, and what it refuses."""

from pathlib import Path

import pytest

from dose_model.cache.options import TokenizeOptions
from dose_model.cache.tokenize import tokenize_manifest
from dose_model.cli.train import main
from tests.dose_fixtures import write_fake_rmod, write_tiny_codec


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    data = write_fake_rmod(root / "ds", {"train": 2, "valid": 1}, seed=4, mixture_seconds=1.0)
    codec = write_tiny_codec(root / "codec.pth", seed=0)
    tokens = root / "tok"
    tokenize_manifest(TokenizeOptions(data, codec, tokens, oneshot_seconds=0.5, progress=False))
    return data, codec, tokens


def run(data: Path, out: Path, *extra: str) -> int:
    return main(["--manifest", str(data), "--drum", "kick", "--out", str(out), *extra])


def test_a_cache_of_other_data_or_another_codec_is_refused(made, tmp_path, capsys):
    data, codec, tokens = made
    other = write_tiny_codec(tmp_path / "other.pth", seed=1)
    assert run(data, tmp_path / "a", "--tokens", str(tokens), "--codec-weights", str(other)) == 2
    err = capsys.readouterr().err
    assert "another DAC codec" in err and str(other) in err
    changed = tmp_path / "ds"
    write_fake_rmod(changed, {"train": 2, "valid": 1}, seed=5, mixture_seconds=1.0)
    assert run(changed, tmp_path / "b", "--tokens", str(tokens)) == 2
    assert "other train data" in capsys.readouterr().err
    junk = tmp_path / "junk"  # not a cache, not empty: the tokenizer refuses to write there
    junk.mkdir()
    (junk / "notes.txt").write_text("mine")
    assert run(data, tmp_path / "c", "--tokens", str(junk), "--codec-weights", str(codec)) == 2
    assert "not empty and holds no index.json" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_a_missing_dataset_or_codec_is_named(made, tmp_path, capsys):
    data, codec, _ = made
    missing = tmp_path / "nowhere"
    assert run(missing, tmp_path / "a", "--codec-weights", str(codec)) == 2
    assert f"{missing}: no such manifest file or dataset folder" in capsys.readouterr().err
    absent = tmp_path / "absent.pth"
    assert run(data, tmp_path / "a", "--codec-weights", str(absent)) == 2
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
    assert run(data, tmp_path / "a", "--tokens", str(tokens), "--device", "cuda") == 2
    assert "CUDA is not available here" in capsys.readouterr().err
    args = ["--manifest", str(data), "--codec-weights", str(codec), "--out", str(tmp_path / "t")]
    assert tokenize_main([*args, "--device", "cuda:0", "--no-progress"]) == 2
    assert "CUDA is not available here" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "t").exists()


def test_ctrl_c_is_a_resume_hint_not_a_traceback(made, tmp_path, capsys, monkeypatch):
    import dose_model.cache.tokenize
    import dose_model.train.pipeline
    from dose_model.cli.tokenize import main as tokenize_main

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    data, codec, tokens = made
    monkeypatch.setattr(dose_model.train.pipeline, "train_from_manifest", interrupted)
    assert run(data, tmp_path / "a", "--tokens", str(tokens)) == 130
    assert "--resume" in capsys.readouterr().err
    monkeypatch.setattr(dose_model.cache.tokenize, "tokenize_manifest", interrupted)
    args = ["--manifest", str(data), "--codec-weights", str(codec), "--out", str(tmp_path / "t")]
    assert tokenize_main(args) == 130
    assert "rerun the same command to resume" in capsys.readouterr().err


TINY = """\
model: {num_layers: 1, num_heads: 2, d_model: 16, dropout: 0.0, mixture_len: 353,
        max_target_len: 30}
train: {warmup_steps: 1, max_steps: 2, batch_size: 2, target_frames: 20, log_every: 1}
"""


def test_resume_refuses_other_drum_data_or_config_naming_the_difference(made, tmp_path, capsys):
    """The checkpoint records drum, token-cache identity and configs; a mismatched --resume
    is refused with the difference named; a checkpoint whose weights do not fit its config is
    a one-line error."""
    import torch

    from dose_model.model.checkpoints import read_checkpoint

    data, _, tokens = made
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY)
    out = tmp_path / "run"
    common = ["--tokens", str(tokens), "--no-progress", "--device", "cpu"]
    assert run(data, out, "--config", str(config), "--max-steps", "1", *common) == 0
    ckpt = read_checkpoint(out / "last.ckpt")
    assert ckpt["data"]["drum"] == "kick" and ckpt["data"]["mixture_frames"] == 345
    assert ckpt["data"]["mixture_seconds"] == 4.0 and len(ckpt["data"]["token_cache"]) == 64
    capsys.readouterr()
    argv = ["--manifest", str(data), "--out", str(out), "--resume", *common]
    assert main([*argv, "--drum", "snare"]) == 2
    err = capsys.readouterr().err
    assert "data.drum: checkpoint 'kick', now 'snare'" in err and err.count("\n") == 1
    assert main([*argv, "--drum", "kick", "--batch-size", "1"]) == 2
    assert "train.batch_size: checkpoint 2, now 1" in capsys.readouterr().err
    other = tmp_path / "other.yaml"
    other.write_text(TINY.replace("d_model: 16", "d_model: 32"))
    assert main([*argv, "--drum", "kick", "--config", str(other)]) == 2
    assert "model.d_model: checkpoint 16, now 32" in capsys.readouterr().err
    assert main([*argv, "--drum", "kick", "--max-steps", "2"]) == 0  # same settings: resumes
    assert read_checkpoint(out / "last.ckpt")["step"] == 2
    capsys.readouterr()
    ckpt = read_checkpoint(out / "last.ckpt")
    ckpt["model"]["head.weight"] = ckpt["model"]["head.weight"][:-1]
    torch.save(ckpt, out / "last.ckpt")
    assert main([*argv, "--drum", "kick", "--max-steps", "3"]) == 2
    err = capsys.readouterr().err
    assert "weights do not fit model_config" in err and err.count("\n") == 1
    del ckpt["model_config"]
    torch.save(ckpt, out / "last.ckpt")
    assert main([*argv, "--drum", "kick", "--max-steps", "3"]) == 2
    assert "no 'model_config'" in capsys.readouterr().err


def test_sigterm_is_a_resume_hint_with_its_own_status(made, tmp_path, capsys, monkeypatch):
    """SIGTERM while tokenizing, or a run that training stopped on SIGTERM after saving:
    exit 143 with a --resume hint, no traceback."""
    import os
    import signal
    import time

    import dose_model.train.pipeline
    from dose_model.train.loop import TrainResult

    data, _, tokens = made

    def terminated(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler interrupts this
        raise AssertionError("SIGTERM was not handled")

    monkeypatch.setattr(dose_model.train.pipeline, "train_from_manifest", terminated)
    assert run(data, tmp_path / "a", "--tokens", str(tokens)) == 143
    assert "--resume" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # restored

    def stopped(*args, **kwargs):
        return TrainResult(3, 1.0, 2, 1.0, 1.0, False, tmp_path / "b", interrupted="SIGTERM")

    monkeypatch.setattr(dose_model.train.pipeline, "train_from_manifest", stopped)
    assert run(data, tmp_path / "b", "--tokens", str(tokens)) == 143
    err = capsys.readouterr().err
    assert "stopped by SIGTERM at step 3" in err and "--resume" in err
