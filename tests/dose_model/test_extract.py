"""dose-extract: songs and folders, clips by drum activity, candidates ranked by confidence,
finishing, sidecars, checkpoints of both kinds, bad songs, output paths."""

import json
import os
import shutil

import numpy as np
import pytest
import soundfile as sf
import torch

from dose_model.cli.extract import main
from dose_model.codec.dac_codec import DacCodec
from dose_model.dataset.audio import clip
from dose_model.extract.extractor import (
    ExtractError,
    Extractor,
    Sampling,
    extract_clip,
    oneshot_frames,
)
from dose_model.extract.songs import Song, find_songs, output_path, pick_windows, plan_song
from dose_model.model.checkpoints import FORMAT, CheckpointError, load_any_model
from dose_model.model.config import ModelConfig
from dose_model.model.transformer import DoseTransformer
from tests.dose_fixtures import (  # noqa: F401 (one_thread: autouse fixture)
    REFERENCE_DIR,
    one_thread,
    write_tiny_codec,
    write_tiny_dose_checkpoint,
)

SR = 44100
TARGET_ROWS = 14  # start row + 13 generated rows: at most 13 - 8 = 5 complete frames
PUBLISHED_TINY = REFERENCE_DIR / "dose_kick_tiny.ckpt"


def clicks(seconds, sr, every_s=0.25, rng=None, level=0.3):
    """Short noise bursts every ``every_s`` seconds (a stand-in for drum hits)."""
    rng = rng or np.random.default_rng(0)
    out = np.zeros(int(seconds * sr), dtype=np.float32)
    for start in range(0, out.size, int(every_s * sr)):
        n = min(int(0.03 * sr), out.size - start)
        out[start : start + n] = level * rng.standard_normal(n) * np.exp(-np.arange(n) / 200)
    return out


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A loud tiny codec, an our-format checkpoint and a folder of songs: WAV 48 kHz stereo,
    FLAC 44.1 kHz, OGG 22.05 kHz and AIFF 32 kHz in a subfolder, plus a text file."""
    root = tmp_path_factory.mktemp("extract")
    codec = write_tiny_codec(root / "codec.pth", loud=True)
    ckpt = write_tiny_dose_checkpoint(root / "ours.ckpt", max_target_len=TARGET_ROWS)
    rng = np.random.default_rng(0)
    songs = root / "songs"
    (songs / "sub").mkdir(parents=True)
    # 12 s at 48 kHz stereo: a loud sustained tone for 0-6 s, quieter drum-like clicks 6-12 s.
    t = np.arange(6 * 48000) / 48000
    tone = 0.8 * np.sin(2 * np.pi * 220 * t).astype(np.float32)
    song = np.concatenate([tone, clicks(6, 48000, rng=rng)])
    sf.write(songs / "song.wav", np.stack([song, song], axis=1), 48000, subtype="PCM_16")
    sf.write(songs / "short.flac", 0.2 * rng.standard_normal(SR).astype(np.float32), SR)
    sf.write(songs / "sub" / "b.ogg", clicks(5, 22050, rng=rng, level=0.05), 22050)
    sf.write(songs / "sub" / "c.aiff", clicks(4.5, 32000, 0.5, rng=rng), 32000)
    (songs / "notes.txt").write_text("not a song")
    (root / "broken.wav").write_bytes(b"RIFF but not really a wav file")
    return root, codec, ckpt


def test_windows_follow_drum_activity_not_loudness():
    sr = 8000
    t = np.arange(6 * sr) / sr
    song = np.concatenate([0.9 * np.sin(2 * np.pi * 220 * t), clicks(10, sr)]).astype(np.float32)
    picked = pick_windows(song, sr, count=3)
    starts = [s / sr for s, _ in picked]
    assert 6.0 <= starts[0] <= 12.0  # inside the clicks, though the tone is louder
    assert len(picked) == 3 and all(
        abs(a - b) >= 4.0 for i, a in enumerate(starts) for b in starts[i + 1 :]
    )  # no two clips overlap
    assert [a for _, a in picked] == sorted((a for _, a in picked), reverse=True)
    rms_tone, rms_clicks = (
        np.sqrt(np.mean(song[: 6 * sr] ** 2)),
        np.sqrt(np.mean(song[6 * sr :] ** 2)),
    )
    assert rms_tone > 5 * rms_clicks
    short = pick_windows(song[: 2 * sr], sr, count=2)  # shorter than a window: one clip at 0
    assert len(short) == 1 and short[0][0] == 0
    assert clip(song, song.size - 10, 20)[10:].tolist() == [0.0] * 10


def test_songs_in_folders_and_output_paths(files, tmp_path):
    root, _, _ = files
    songs = find_songs([root / "songs", root / "broken.wav"])
    names = [s.name for s in songs]
    assert names == ["short", "song", "sub/b", "sub/c", "broken"]  # .txt skipped, sorted
    with pytest.raises(ExtractError, match="would both write short.<drum>.wav"):
        find_songs([root / "songs", root / "songs" / "short.flac"])
    with pytest.raises(ExtractError, match="no audio files"):
        find_songs([tmp_path])
    out = tmp_path / "out"
    assert output_path(out, "sub/b", ".kick.wav") == (out / "sub" / "b.kick.wav").resolve()
    for bad in ("../escape", "/abs/path", "sub/../../x"):
        with pytest.raises(ExtractError, match="would lie outside"):
            output_path(out, bad, ".kick.wav")


def test_clips_are_scaled_to_the_training_peak(files):
    root, _, _ = files
    song = Song(root / "songs" / "sub" / "b.ogg", "b")
    plan = plan_song(song, SR, windows=2, start_s=None, normalize=True)
    assert plan.clips.shape == (1, 4 * SR)  # 5 s: a second 4 s clip would overlap the first
    assert np.abs(plan.clips).max(axis=1) == pytest.approx(10 ** (-1 / 20), rel=1e-5)
    raw = plan_song(song, SR, windows=2, start_s=None, normalize=False)
    assert np.abs(raw.clips).max() < 0.5  # the file is quieter than -1 dBFS
    assert raw.windows[0]["input_peak_dbfs"] == pytest.approx(
        20 * np.log10(np.abs(raw.clips[0]).max()), abs=1e-4
    )


def test_folder_with_windows_candidates_scores_and_finishing(files, tmp_path, capsys):
    root, codec, ckpt = files
    argv = [str(root / "songs"), "--kick", str(ckpt), "--snare", str(ckpt)]
    argv += ["--codec-weights", str(codec), "--device", "cpu", "--no-progress"]
    argv += ["--windows", "2", "--candidates", "2", "--strategy", "top-p", "--trim-db", "-20"]
    assert main(argv + ["--out", str(tmp_path / "a"), "--batch-size", "5"]) == 0
    out = capsys.readouterr().out
    assert "dose-extract: 4 of 4 songs extracted" in out
    side = json.loads((tmp_path / "a" / "song.extract.json").read_text())
    assert [w["chosen"] for w in side["clips"]] == ["activity", "activity"]
    assert 2.0 <= side["clips"][0]["start_s"] <= 8.0  # the clicks, not the louder tone
    assert side["sampling"]["candidates"] == 2 and side["precision"] == "fp32"
    for drum in ("kick", "snare"):
        best = side["oneshots"][drum]
        ranked = [best] + best["candidates"]
        assert len(ranked) == 4  # 2 windows x 2 candidates
        scores = [r["score"] for r in ranked]
        assert scores == sorted(scores, reverse=True) and all(s < 0 for s in scores)
        assert {(r["window"], r["candidate"]) for r in ranked} == {(0, 0), (0, 1), (1, 0), (1, 1)}
        assert best["file"] == f"song.{drum}.wav"
        assert [r["file"] for r in ranked[1:]] == [
            f"candidates/song.{drum}.{k}.wav" for k in (2, 3, 4)
        ]
        for r in ranked:
            audio, sr = sf.read(tmp_path / "a" / r["file"])
            assert sr == SR and audio.ndim == 1
            assert audio.size == round(r["seconds"] * SR) <= r["frames"] * 512
            assert 20 * np.log10(np.abs(audio).max()) == pytest.approx(-1.0, abs=0.01)
            assert abs(audio[-1]) < 1e-3  # faded to 0
            assert r["frames"] <= oneshot_frames(ModelConfig(max_target_len=TARGET_ROWS))
    assert (tmp_path / "a" / "sub" / "b.kick.wav").is_file()
    assert (tmp_path / "a" / "candidates" / "sub" / "c.snare.2.wav").is_file()
    # a song's files do not depend on the songs that shared its batches (nor on the drums
    # being generated at the same time)
    alone = [str(root / "songs" / "song.wav")] + argv[1:] + ["--concurrent-drums", "on"]
    assert main(alone + ["--out", str(tmp_path / "b"), "--batch-size", "5"]) == 0
    written = sorted((tmp_path / "b").rglob("*.wav"))
    assert len(written) == 8
    for path in written:
        assert path.read_bytes() == (tmp_path / "a" / path.relative_to(tmp_path / "b")).read_bytes()


def test_trim_fade_and_normalize_can_be_turned_off(files, tmp_path):
    root, codec, ckpt = files
    song = root / "songs" / "short.flac"
    argv = [str(song), "--kick", str(ckpt), "--codec-weights", str(codec), "--device", "cpu"]
    argv += ["--no-progress", "--precision", "bf16"]
    assert (
        main(argv + ["--out", str(tmp_path / "raw"), "--no-trim", "--no-fade", "--no-normalize"])
        == 0
    )
    assert main(argv + ["--out", str(tmp_path / "done"), "--trim-db", "-6"]) == 0
    raw_side = json.loads((tmp_path / "raw" / "short.extract.json").read_text())
    assert raw_side["precision"] == "bf16" and raw_side["finish"]["trim_db"] is None
    raw, _ = sf.read(tmp_path / "raw" / "short.kick.wav")
    done, _ = sf.read(tmp_path / "done" / "short.kick.wav")
    assert raw.size == raw_side["oneshots"]["kick"]["frames"] * 512
    assert np.abs(raw).max() < 10 ** (-1.5 / 20) or done.size < raw.size  # some change made
    assert done.size <= raw.size
    # the -6 dB trim cuts right after the last sample at half the peak or more
    keep = np.flatnonzero(np.abs(raw) >= 0.5 * np.abs(raw).max())[-1] + 1
    assert done.size == pytest.approx(keep, abs=1)


def test_given_start_bad_songs_and_bad_options(files, tmp_path, capsys):
    root, codec, ckpt = files
    argv = ["--kick", str(ckpt), "--codec-weights", str(codec), "--out", str(tmp_path)]
    argv += ["--no-progress"]
    songs = [
        str(root / "broken.wav"),
        str(root / "songs" / "short.flac"),
        str(root / "missing.wav"),
    ]
    assert main(songs + argv + ["--start", "0.5"]) == 1
    err = capsys.readouterr().err
    assert f"skipped {root / 'broken.wav'}: cannot decode audio" in err
    assert f"skipped {root / 'missing.wav'}: file not found" in err
    side = json.loads((tmp_path / "short.extract.json").read_text())
    assert side["clips"][0]["chosen"] == "given"
    assert side["clips"][0]["start_s"] == pytest.approx(0.5)
    assert main([str(root / "songs" / "short.flac")] + argv + ["--start", "3"]) == 1
    assert "outside the song (0..1.00 s)" in capsys.readouterr().err
    short = [str(root / "songs" / "short.flac"), "--codec-weights", str(codec)]
    with pytest.raises(SystemExit):
        main(short + ["--out", str(tmp_path)])
    assert "give at least one of --kick" in capsys.readouterr().err
    for bad, message in (
        (["--temperature", "0"], "argument --temperature: 0 is out of range"),
        (["--top-p", "1.5"], "argument --top-p: 1.5 is out of range (must be > 0 and <= 1)"),
        (["--candidates", "3"], "--candidates above 1 needs --strategy top-p"),
        (["--windows", "0"], "--windows must be >= 1"),
    ):
        with pytest.raises(SystemExit):
            main([str(root / "songs" / "short.flac")] + argv + bad)
        assert message in capsys.readouterr().err
    twin = tmp_path / "twin"
    twin.mkdir()
    (twin / "short.flac").write_bytes((root / "songs" / "short.flac").read_bytes())
    with pytest.raises(SystemExit):  # both would write short.kick.wav: refused before any work
        main([str(root / "songs" / "short.flac"), str(twin / "short.flac")] + argv)
    assert "would both write short.<drum>.wav" in capsys.readouterr().err


def test_models_that_do_not_fit_are_refused_at_load_by_path(files, tmp_path, capsys):
    root, codec, ckpt = files
    bad = tmp_path / "short-mixture.ckpt"
    cfg = ModelConfig(num_layers=1, num_heads=2, d_model=32, mixture_len=100)
    state = DoseTransformer(cfg).state_dict()
    torch.save({"format": FORMAT, "model_config": cfg.to_dict(), "model": state}, bad)
    songs = [str(root / "songs" / "short.flac")]
    argv = ["--codec-weights", str(codec), "--out", str(tmp_path / "o"), "--no-progress"]
    assert main(songs + ["--kick", str(bad)] + argv) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and f"{bad}: the model takes 100 mixture positions" in err
    assert main(songs + ["--kick", str(PUBLISHED_TINY), "--heads", "3"] + argv) == 2
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
    # candidates come back ranked by confidence, each its own sample
    extractor = Extractor(codec, {"kick": published}, batch_size=3)
    (ranked,) = extractor.clips(mixture[None], ["x"], Sampling("top-p", candidates=3))
    scores = [s.score for s in ranked["kick"]]
    assert scores == sorted(scores, reverse=True)
    assert sorted(s.candidate for s in ranked["kick"]) == [0, 1, 2]


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
    assert oneshot_frames(ModelConfig()) == 173


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_extraction_equals_cpu(files):
    """Model and codec on the GPU give the one-shot the CPU gives (greedy, fp32, no TF32)."""
    root, codec_path, ckpt = files
    mixture = clip(sf.read(root / "songs" / "short.flac", dtype="float32")[0], 0, 4 * SR)
    shots = []
    for device in ("cpu", "cuda"):
        codec = DacCodec.load(codec_path, device=device)
        codec.tf32 = False
        model = load_any_model(ckpt, device=device)
        shots.append(extract_clip(mixture, codec, {"kick": model})["kick"])
    assert shots[0].frames == shots[1].frames
    np.testing.assert_allclose(shots[1].audio, shots[0].audio, atol=1e-4)


def test_concurrent_drums_give_the_sequential_bytes(files, tmp_path):
    """Three different drum models generated at the same time (a thread per drum) give
    exactly the one-shots, scores and ranking of the drum-after-drum path."""
    root, codec_path, _ = files
    codec = DacCodec.load(codec_path)
    models = {}
    for seed, drum in enumerate(("kick", "snare", "hihat")):
        path = write_tiny_dose_checkpoint(tmp_path / f"{drum}.ckpt", TARGET_ROWS, seed=seed + 1)
        models[drum] = load_any_model(path)
    rng = np.random.default_rng(2)
    mixtures = np.stack([clicks(4, SR, 0.2 + 0.1 * i, rng) for i in range(3)])
    sampling = Sampling("top-p", candidates=2, seed=5)
    runs = []
    for concurrent in (False, True):
        extractor = Extractor(codec, models, batch_size=4, concurrent=concurrent)
        assert extractor.concurrent is concurrent
        runs.append(extractor.clips(mixtures, ["a", "b", "c"], sampling))
    sequential, concurrent = runs
    assert len(concurrent) == 3
    for seq_clip, con_clip in zip(sequential, concurrent, strict=True):
        assert list(con_clip) == ["kick", "snare", "hihat"]
        for drum in models:
            pairs = list(zip(seq_clip[drum], con_clip[drum], strict=True))
            assert len(pairs) == 2
            for s, c in pairs:
                assert (s.candidate, s.frames, s.ended, s.score) == (
                    c.candidate,
                    c.frames,
                    c.ended,
                    c.score,
                )
                assert s.audio.tobytes() == c.audio.tobytes()
    kicks = [shot.audio.tobytes() for shot in sequential[0]["kick"]]
    snares = [shot.audio.tobytes() for shot in sequential[0]["snare"]]
    assert kicks != snares  # the drums really are different models
    assert Extractor(codec, models).concurrent is False  # default on the CPU: one after another


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_concurrent_drums_equal_sequential(files, tmp_path):
    """On CUDA (graphs captured first, then a stream per drum) the drums generated at the
    same time give the tokens and scores of one after another."""
    root, codec_path, _ = files
    codec = DacCodec.load(codec_path, device="cuda")
    models = {}
    for seed, drum in enumerate(("kick", "snare", "hihat")):
        path = write_tiny_dose_checkpoint(tmp_path / f"{drum}.ckpt", TARGET_ROWS, seed=seed + 1)
        models[drum] = load_any_model(path, device="cuda")
    mixtures = np.stack([clicks(4, SR, 0.2 + 0.1 * i) for i in range(3)])
    sampling = Sampling("top-p", candidates=2, seed=5)
    runs = []
    for concurrent in (False, True, True):
        extractor = Extractor(codec, models, "bf16", batch_size=4, concurrent=concurrent)
        runs.append(extractor.clips(mixtures, ["a", "b", "c"], sampling))
    for run in runs[1:]:
        for seq_clip, con_clip in zip(runs[0], run, strict=True):
            for drum in models:
                for s, c in zip(seq_clip[drum], con_clip[drum], strict=True):
                    assert (s.candidate, s.frames, s.score) == (c.candidate, c.frames, c.score)
                    np.testing.assert_allclose(c.audio, s.audio, atol=1e-6)


SHARED_FLOAT_CASES = [
    ("--top-p", "nan", "'nan' is not a finite number"),
    ("--top-p", "0", "0 is out of range (must be > 0 and <= 1)"),
    ("--temperature", "inf", "'inf' is not a finite number"),
    ("--temperature", "1e-40", "1e-40 is out of range (must be >= 0.01 and <= 100)"),
]
EXTRACT_FLOAT_CASES = [
    ("--start", "nan", "'nan' is not a finite number"),
    ("--start", "-1", "-1 is out of range (must be >= 0)"),
    ("--trim-db", "nan", "'nan' is not a finite number"),
    ("--trim-db", "6", "6 is out of range (must be >= -200 and <= 0)"),
    ("--fade-ms", "inf", "'inf' is not a finite number"),
    ("--fade-ms", "-1", "-1 is out of range (must be >= 0)"),
    ("--peak-db", "nan", "'nan' is not a finite number"),
    ("--peak-db", "-inf", "'-inf' is not a finite number"),
    ("--peak-db", "20", "20 is out of range (must be >= -90 and <= 0)"),
    ("--peak-db", "loud", "'loud' is not a number"),
]


@pytest.mark.parametrize(
    "tool, option, value, why",
    [("dose-extract", *case) for case in SHARED_FLOAT_CASES + EXTRACT_FLOAT_CASES]
    + [("dose-eval", *case) for case in SHARED_FLOAT_CASES],
)
def test_float_options_refuse_non_finite_and_absurd_values_by_name(
    tool, option, value, why, tmp_path, capsys
):
    from dose_model.cli import evaluate, extract

    out = tmp_path / "out"
    common = ["--kick", "k.ckpt", "--codec-weights", "codec.pth", "--out", str(out)]
    first = ["song.wav"] if tool == "dose-extract" else ["--manifest", str(tmp_path)]
    main_ = extract.main if tool == "dose-extract" else evaluate.main
    with pytest.raises(SystemExit) as stop:
        main_([*first, *common, f"{option}={value}"])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == f"{tool}: error: argument {option}: {why}", err
    assert not out.exists()


def test_sampling_refuses_an_infinite_temperature():
    with pytest.raises(ValueError, match="temperature must be finite"):
        Sampling("top-p", temperature=float("inf"))


# ----------------------------------------------------------------- long songs, hostile songs
def whole_song_plan(path, windows: int) -> tuple[np.ndarray, list[float]]:
    """Clips and activities as dose-extract made them before streaming: the whole song read
    at once (sf.read, channel mean, one resample_poly), the flux over all of it, then cuts."""
    from tests.dose_model.test_audio_stream import whole_file_mono

    audio = whole_file_mono(path, SR)
    frames = np.lib.stride_tricks.sliding_window_view(np.pad(audio, (0, 1024)), 1024)[::512]
    frames = frames[: (max(audio.size, 1024) - 1024) // 512 + 1]
    db = 20 * np.log10(np.maximum(np.abs(np.fft.rfft(frames * np.hanning(1024))), 1e-12))
    db = np.maximum(db, db.max() - 80.0)
    flux = np.concatenate([[0.0], np.maximum(np.diff(db, axis=0), 0.0).sum(axis=-1)])
    from dose_model.extract.songs import choose_windows

    picked = choose_windows(flux, audio.size, SR, windows)
    return np.stack([clip(audio, s, 4 * SR) for s, _ in picked]), [a for _, a in picked]


def test_streamed_songs_give_the_clips_of_the_whole_song(files):
    """Three passes over a stream of blocks choose and cut the same clips, bit for bit."""
    root, _, _ = files
    for rel in ("song.wav", "short.flac", "sub/b.ogg", "sub/c.aiff"):
        path = root / "songs" / rel
        plan = plan_song(Song(path, "x"), SR, windows=2, start_s=None, normalize=False)
        clips, activity = whole_song_plan(path, 2)
        assert np.array_equal(plan.clips, clips), rel
        assert [w["activity"] for w in plan.windows] == activity, rel


def test_a_long_song_costs_no_more_memory_than_a_short_one(tmp_path):
    """A 2-minute song: 14 MiB traced at the peak (182 MiB when read whole; 2.1 GB of RSS
    for 20 minutes then, 0.35 GB now, see the report)."""
    import tracemalloc

    import scipy.signal  # noqa: F401 (imported before tracing: the import itself is not data)

    rng = np.random.default_rng(3)
    sr = 22050
    song = (0.3 * np.sin(2 * np.pi * 220 * np.arange(120 * sr) / sr)).astype(np.float32)
    song[::5512] += 0.5
    song += 0.05 * rng.standard_normal(song.size).astype(np.float32)
    path = tmp_path / "long.wav"
    sf.write(path, song, sr, subtype="PCM_16")
    tracemalloc.start()
    try:
        plan = plan_song(Song(path, "long"), SR, windows=2, start_s=None, normalize=True)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert plan.clips.shape == (2, 4 * SR)
    assert peak < 32 * 2**20, f"{peak / 2**20:.0f} MiB"


def test_hostile_headers_are_skipped_songs(files, tmp_path, capsys):
    """A WAV declaring 2**31 - 1 Hz crashed dose-extract (exit 3); one declaring 1 Hz took
    3.4 GB; a FIFO among the songs blocked for ever."""
    from tests.hostile_audio import wav_bytes

    root, codec, ckpt = files
    (tmp_path / "max.wav").write_bytes(wav_bytes(2**31 - 1))
    (tmp_path / "one.wav").write_bytes(wav_bytes(1))
    os.mkfifo(tmp_path / "fifo.wav")
    songs = [str(tmp_path / n) for n in ("max.wav", "one.wav", "fifo.wav")]
    argv = ["--kick", str(ckpt), "--codec-weights", str(codec), "--no-progress"]
    assert main(songs + argv + ["--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert f"skipped {tmp_path / 'max.wav'}: declared sample rate 2,147,483,647 Hz" in err
    assert "is above MAX_SAMPLE_RATE = 384,000 Hz" in err
    assert f"skipped {tmp_path / 'one.wav'}: declared sample rate 1 Hz is below" in err
    assert f"skipped {tmp_path / 'fifo.wav'}: not a regular file (a FIFO)" in err


def test_out_inside_the_song_folder_is_left_out_of_the_search(files, tmp_path, capsys):
    """Each rerun once extracted its own outputs again (songs/ex/ex/ex/song.kick.kick.kick)."""
    root, codec, ckpt = files
    songs = tmp_path / "songs"
    songs.mkdir()
    shutil.copy(root / "songs" / "short.flac", songs / "short.flac")
    argv = [str(songs), "--kick", str(ckpt), "--codec-weights", str(codec), "--no-progress"]
    for _ in range(2):
        assert main(argv + ["--out", str(songs / "ex")]) == 0
        assert "1 of 1 songs extracted" in capsys.readouterr().out
    assert sorted(p.relative_to(songs).as_posix() for p in songs.rglob("*.wav")) == [
        "ex/short.kick.wav"
    ]
    assert [s.name for s in find_songs([songs], songs / "ex")] == ["short"]
    for out in (songs, tmp_path):  # the folder itself, or one holding it: refused
        with pytest.raises(SystemExit) as stop:
            main(argv + ["--out", str(out)])
        assert stop.value.code == 2
        assert "the song folder is the output folder" in capsys.readouterr().err


def test_links_out_of_a_song_folder_are_not_followed(files, tmp_path, capsys):
    root, codec, ckpt = files
    songs = tmp_path / "songs"
    songs.mkdir()
    shutil.copy(root / "songs" / "short.flac", songs / "short.flac")
    (songs / "inside.flac").symlink_to(songs / "short.flac")
    (songs / "secret.wav").symlink_to(root / "songs" / "song.wav")
    argv = [str(songs), "--kick", str(ckpt), "--codec-weights", str(codec), "--no-progress"]
    assert main(argv + ["--out", str(tmp_path / "o")]) == 1
    captured = capsys.readouterr()
    assert f"skipped {songs / 'secret.wav'}: a link to {root / 'songs' / 'song.wav'}, out of" in (
        captured.err
    )
    assert "2 of 3 songs extracted" in captured.out
    assert (tmp_path / "o" / "inside.kick.wav").is_file()
    assert not (tmp_path / "o" / "secret.kick.wav").exists()
    # a file given by itself is the user's own choice, link or not
    assert main([str(songs / "secret.wav")] + argv[1:] + ["--out", str(tmp_path / "p")]) == 0
