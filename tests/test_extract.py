"""dose-extract: clip choice, one-shot files and sidecars, checkpoints of both kinds, bad songs."""

import json

import numpy as np
import pytest
import soundfile as sf
import torch
from dose_fixtures import (  # noqa: F401 (one_thread: autouse fixture)
    REFERENCE_DIR,
    one_thread,
    write_tiny_codec,
    write_tiny_dose_checkpoint,
)

from dose_model.checkpoints import CheckpointError, load_any_model
from dose_model.cli.extract import main
from dose_model.codec import DacCodec
from dose_model.config import ModelConfig
from dose_model.extract import ExtractError, clip, extract_clip, loudest_window
from dose_model.model import DoseTransformer

SR = 44100
TARGET_ROWS = 14  # start row + 13 generated rows: at most 13 - 8 = 5 complete frames
PUBLISHED_TINY = REFERENCE_DIR / "dose_kick_tiny.ckpt"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A tiny codec, an our-format checkpoint (random weights) and two songs."""
    root = tmp_path_factory.mktemp("extract")
    codec = write_tiny_codec(root / "codec.pth")
    ckpt = write_tiny_dose_checkpoint(root / "ours.ckpt", max_target_len=TARGET_ROWS)
    rng = np.random.default_rng(0)
    # 10 s stereo at 48 kHz: quiet noise with a loud burst at 6-7 s.
    song = 0.01 * rng.standard_normal((480000, 2)).astype(np.float32)
    song[288000:336000] *= 50
    sf.write(root / "song.wav", song, 48000, subtype="PCM_16")
    sf.write(root / "short.flac", 0.2 * rng.standard_normal(SR).astype(np.float32), SR)
    (root / "broken.wav").write_bytes(b"RIFF but not really a wav file")
    return root, codec, ckpt


def test_loudest_window_and_clip():
    audio = np.zeros(100, dtype=np.float32)
    audio[62:70] = 1.0
    assert loudest_window(audio, window=10, grid=10) == 60  # the one start covering 62..69
    assert loudest_window(audio, window=20, grid=25) == 50  # best of 0, 25, 50, 75, 80
    assert loudest_window(audio, window=20, grid=1) == 50  # ties: the earliest start
    assert loudest_window(audio[:15], window=20, grid=10) == 0  # shorter than the window
    padded = clip(audio, 90, 20)
    assert padded.shape == (20,) and np.all(padded[10:] == 0)


def test_cli_writes_oneshots_and_sidecar_reproducibly(files, tmp_path, capsys):
    root, codec, ckpt = files
    argv = [str(root / "song.wav"), "--kick", str(ckpt), "--snare", str(ckpt)]
    argv += ["--codec-weights", str(codec), "--device", "cpu"]
    assert main(argv + ["--out", str(tmp_path / "a")]) == 0
    out = capsys.readouterr().out
    side = json.loads((tmp_path / "a" / "song.extract.json").read_text())
    start = side["start_s"]
    assert side["chosen"] == "loudest" and 3.0 <= start <= 6.0  # the clip holds the 6-7 s burst
    assert f"clip {start:.2f}-{start + 4:.2f} s (loudest)" in out
    for drum in ("kick", "snare"):
        rec = side["oneshots"][drum]
        info = sf.info(tmp_path / "a" / rec["file"])
        assert (info.samplerate, info.channels, info.subtype) == (SR, 1, "PCM_16")
        # random weights rarely end by themselves: then every complete frame is kept
        assert rec["frames"] == (TARGET_ROWS - 9 if not rec["ended"] else rec["frames"])
        assert info.frames == rec["frames"] * 512
        assert rec["checkpoint"] == str(ckpt)
    assert not (tmp_path / "a" / "song.hihat.wav").exists()
    assert main(argv + ["--out", str(tmp_path / "b")]) == 0
    for name in ("song.kick.wav", "song.snare.wav", "song.extract.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_given_start_short_song_and_bad_songs(files, tmp_path, capsys):
    root, codec, ckpt = files
    argv = ["--kick", str(ckpt), "--codec-weights", str(codec), "--out", str(tmp_path)]
    songs = [str(root / "broken.wav"), str(root / "short.flac"), str(root / "missing.wav")]
    assert main(songs + argv + ["--start", "0.5"]) == 1
    err = capsys.readouterr().err
    assert f"skipped {root / 'broken.wav'}: cannot decode audio" in err
    assert f"skipped {root / 'missing.wav'}: file not found" in err
    side = json.loads((tmp_path / "short.extract.json").read_text())
    assert side["chosen"] == "given" and side["start_s"] == pytest.approx(0.5)
    assert main([str(root / "short.flac")] + argv + ["--start", "3"]) == 1
    assert "outside the song (0..1.00 s)" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([str(root / "short.flac"), "--codec-weights", str(codec), "--out", str(tmp_path)])
    assert "give at least one of --kick" in capsys.readouterr().err


def test_published_checkpoint_extracts_and_top_p_is_seeded(files):
    root, codec_path, ckpt = files
    codec = DacCodec.load(codec_path)
    published = load_any_model(PUBLISHED_TINY, num_heads=1)
    assert published.config.published
    mixture = clip(np.zeros(SR, dtype=np.float32), 0, 4 * SR)
    mixture[:1000] = 0.5
    runs = [
        extract_clip(mixture, codec, {"kick": published}, strategy="top-p", seed=s)
        for s in (3, 3, 4)
    ]
    a, b, c = (r["kick"] for r in runs)
    assert a.frames == b.frames and np.array_equal(a.audio, b.audio)
    assert a.audio.shape == (a.frames * 512,) and a.sample_rate == SR
    assert a.frames != c.frames or not np.array_equal(a.audio, c.audio)


def test_model_and_clip_must_agree(files, tmp_path):
    root, codec_path, ckpt = files
    codec = DacCodec.load(codec_path)
    model = DoseTransformer(ModelConfig(num_layers=1, num_heads=2, d_model=32, mixture_len=100))
    with pytest.raises(ExtractError, match="takes 100 mixture positions.* gives 353"):
        extract_clip(np.zeros(4 * SR, dtype=np.float32), codec, {"kick": model})
    junk = tmp_path / "junk.ckpt"
    torch.save({"weights": torch.zeros(1)}, junk)
    with pytest.raises(CheckpointError, match="neither a dose-train checkpoint"):
        load_any_model(junk)
