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

from dose_model.checkpoints import FORMAT, CheckpointError, load_any_model
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
        # random weights rarely end by themselves; at the length limit a one-shot keeps the
        # longest training target's frames (max_target_len - 10)
        assert rec["frames"] == TARGET_ROWS - 10 if not rec["ended"] else rec["frames"] <= 4
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
    for bad in (["--temperature", "0"], ["--top-p", "0"], ["--top-p", "1.5"]):
        with pytest.raises(SystemExit):
            main([str(root / "short.flac")] + argv + bad)
        assert "--temperature must be > 0 and --top-p in (0, 1]" in capsys.readouterr().err
    twin = tmp_path / "twin"
    twin.mkdir()
    (twin / "short.flac").write_bytes((root / "short.flac").read_bytes())
    with pytest.raises(SystemExit):  # both would write short.kick.wav: refused before any work
        main([str(root / "short.flac"), str(twin / "short.flac")] + argv)
    assert "would both write short.<drum>.wav" in capsys.readouterr().err


def test_models_that_do_not_fit_are_refused_at_load_by_path(files, tmp_path, capsys):
    root, codec, ckpt = files
    bad = tmp_path / "short-mixture.ckpt"
    torch.save(
        {
            "format": FORMAT,
            "model_config": (
                cfg := ModelConfig(num_layers=1, num_heads=2, d_model=32, mixture_len=100)
            ).to_dict(),
            "model": DoseTransformer(cfg).state_dict(),
        },
        bad,
    )
    songs = [str(root / "song.wav"), str(root / "short.flac")]
    argv = ["--codec-weights", str(codec), "--out", str(tmp_path / "o")]
    assert main(songs + ["--kick", str(bad)] + argv) == 1
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and f"{bad}: the model takes 100 mixture positions" in err
    assert main(songs + ["--kick", str(PUBLISHED_TINY), "--heads", "3"] + argv) == 1
    assert f"{PUBLISHED_TINY}: model.d_model (64) must be divisible" in capsys.readouterr().err


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
    with pytest.raises(ExtractError, match="kick model: the model takes 100 mixture .* gives 353"):
        extract_clip(np.zeros(4 * SR, dtype=np.float32), codec, {"kick": model})
    junk = tmp_path / "junk.ckpt"
    torch.save({"weights": torch.zeros(1)}, junk)
    with pytest.raises(CheckpointError, match="neither a dose-train checkpoint"):
        load_any_model(junk)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_extraction_equals_cpu(files):
    """Model and codec on the GPU give the one-shot the CPU gives (greedy, fp32, no TF32)."""
    root, codec_path, ckpt = files
    mixture = clip(sf.read(root / "song.wav", dtype="float32")[0].mean(axis=1), 0, 4 * SR)
    shots = []
    for device in ("cpu", "cuda"):
        codec = DacCodec.load(codec_path, device=device)
        codec.tf32 = False
        model = load_any_model(ckpt, device=device)
        shots.append(extract_clip(mixture, codec, {"kick": model})["kick"])
    assert shots[0].frames == shots[1].frames
    np.testing.assert_allclose(shots[1].audio, shots[0].audio, atol=1e-4)
