"""The option records of tokenize, train and extract are filled once from argparse
(`from_args`): every option reaches its field, and an option left out gives the field's
default."""

from __future__ import annotations

import dataclasses

import pytest

from dose_model.cache.options import TokenizeOptions
from dose_model.cli.evaluate import build_parser as eval_parser
from dose_model.cli.extract import build_parser as extract_parser
from dose_model.cli.tokenize import build_parser as tokenize_parser
from dose_model.cli.train import build_parser as train_parser
from dose_model.errors import InputError
from dose_model.extract.extractor import ExtractOptions, Sampling
from dose_model.extract.shaping import Finish
from dose_model.model.config import ModelConfig, TrainConfig
from dose_model.train.distributed import DistEnv
from dose_model.train.options import TrainOptions

ALONE = DistEnv(rank=0, local_rank=0, world=1)
"""Not under torchrun, whatever the environment of the test run."""


def _changed(record) -> set[str]:
    """The fields of ``record`` that differ from their defaults (required ones count)."""
    out = set()
    for f in dataclasses.fields(record):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if default is dataclasses.MISSING or getattr(record, f.name) != default:
            out.add(f.name)
    return out


def test_tokenize_options_from_every_option(tmp_path):
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"")
    argv = ["--manifest", "DIR", "--codec-weights", str(weights), "--out", "TOK",
            "--device", "cuda:1", "--batch-size", "3", "--shard-size", "5",
            "--mixture-seconds", "3.5", "--oneshot-seconds", "1.5", "--no-tf32",
            "--workers", "2", "--no-progress", "--rank", "1", "--world-size", "2"]  # fmt: skip
    options = TokenizeOptions.from_args(tokenize_parser().parse_args(argv), ALONE)
    assert options == TokenizeOptions("DIR", str(weights), "TOK", "cuda:1", 3, 5, 3.5, 1.5,
                                      2, progress=False, tf32=False, rank=1,
                                      world_size=2)  # fmt: skip
    # merge excludes --rank/--world-size, torchrun comes from the environment: below
    both = {f.name for f in dataclasses.fields(TokenizeOptions)} - {"merge", "torchrun"}
    assert _changed(options) == both
    plain = ["--manifest", "DIR", "--codec-weights", str(weights), "--out", "TOK"]
    assert _changed(TokenizeOptions.from_args(tokenize_parser().parse_args(plain), ALONE)) == {
        "manifest",
        "codec_weights",
        "out",
    }
    merge = TokenizeOptions.from_args(tokenize_parser().parse_args([*plain, "--merge"]), ALONE)
    assert _changed(merge) == {"manifest", "codec_weights", "out", "merge"}
    # under torchrun: the part from RANK/WORLD_SIZE, a bare cuda on this host's LOCAL_RANK
    env = DistEnv(rank=3, local_rank=1, world=4)
    cuda = TokenizeOptions.from_args(
        tokenize_parser().parse_args([*plain, "--device", "cuda"]), env
    )
    assert (cuda.rank, cuda.world_size, cuda.merge, cuda.torchrun) == (3, 4, False, True)
    assert cuda.device == "cuda:1"
    with pytest.raises(InputError, match="--rank must be in"):
        TokenizeOptions("DIR", str(weights), "TOK", rank=2, world_size=2)
    missing = ["--manifest", "DIR", "--codec-weights", str(tmp_path / "no.pth"), "--out", "T"]
    with pytest.raises(InputError, match="no.pth: DAC weights file not found"):
        TokenizeOptions.from_args(tokenize_parser().parse_args(missing))


def test_train_options_from_every_option(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("model: {num_layers: 1, num_heads: 2, d_model: 16}\ntrain: {lr: 0.001}\n")
    argv = ["--manifest", "DIR", "--drum", "snare", "--out", "RUN", "--codec-weights", "W",
            "--tokens", "TOK", "--config", str(config), "--max-steps", "7", "--batch-size", "4",
            "--seed", "3", "--device", "cpu", "--precision", "fp32", "--resume", "--compile",
            "--no-progress"]  # fmt: skip
    options = TrainOptions.from_args(train_parser().parse_args(argv))
    assert options == TrainOptions(
        out="RUN",
        model_cfg=ModelConfig(num_layers=1, num_heads=2, d_model=16),
        train_cfg=TrainConfig(lr=0.001),
        device="cpu",
        precision="fp32",
        resume=True,
        max_steps=7,
        compile=True,
        progress=False,
        manifest="DIR",
        drum="snare",
        codec_weights="W",
        tokens="TOK",
        overrides={"batch_size": 4, "seed": 3},
    )
    assert _changed(options) == {f.name for f in dataclasses.fields(TrainOptions)} - {
        "stop_after"  # tests only: no option
    }
    plain = ["--manifest", "DIR", "--drum", "kick", "--out", "RUN", "--tokens", "TOK"]
    options = TrainOptions.from_args(train_parser().parse_args(plain))
    assert _changed(options) == {"out", "manifest", "drum", "tokens"}
    assert (
        TrainOptions.from_args(train_parser().parse_args([*plain, "--no-compile"])).compile is False
    )


def test_extract_options_from_every_option():
    argv = ["song.wav", "--out", "OUT", "--windows", "2", "--start", "1.5", "--trim-db", "-40",
            "--fade-ms", "5", "--peak-db", "-3", "--no-input-normalize", "--kick", "K.ckpt",
            "--hihat", "H.ckpt", "--codec-weights", "W", "--strategy", "top-p", "--top-p", "0.5",
            "--temperature", "0.7", "--seed", "9", "--candidates", "3", "--precision", "bf16",
            "--batch-size", "6", "--concurrent-drums", "off", "--heads", "4",
            "--device", "cpu"]  # fmt: skip
    options = ExtractOptions.from_args(extract_parser().parse_args(argv))
    assert options == ExtractOptions(
        checkpoints={"kick": "K.ckpt", "hihat": "H.ckpt"},
        codec_weights="W",
        heads=4,
        device="cpu",
        precision="bf16",
        batch_size=6,
        concurrent=False,
        sampling=Sampling("top-p", 0.5, 0.7, 9, 3),
        windows=2,
        start_s=1.5,
        normalize_input=False,
        finish=Finish(trim_db=-40.0, fade_ms=5.0, peak_db=-3.0),
    )
    assert _changed(options) == {f.name for f in dataclasses.fields(ExtractOptions)}
    off = ["s.wav", "--out", "O", "--kick", "K", "--codec-weights", "W", "--no-trim",
           "--no-fade", "--no-normalize", "--concurrent-drums", "on"]  # fmt: skip
    options = ExtractOptions.from_args(extract_parser().parse_args(off))
    assert options.finish == Finish(None, None, None) and options.concurrent is True


def test_eval_fills_the_model_fields_and_keeps_the_song_defaults():
    argv = ["--manifest", "DIR", "--out", "OUT", "--snare", "S", "--codec-weights", "W",
            "--strategy", "top-p", "--candidates", "2"]  # fmt: skip
    options = ExtractOptions.from_args(eval_parser().parse_args(argv))
    assert _changed(options) == {"checkpoints", "codec_weights", "sampling"}
    assert options.sampling.candidates == 2 and options.checkpoints == {"snare": "S"}
