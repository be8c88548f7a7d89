"""LarsNet from its released folder layout: equal to the reference code's stems, lengths kept,
the released widths read from shapes, bad folders refused in one line, and `dose-separate`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from torch.nn import functional as F

from dose_model.cli.separate import main
from dose_model.separate import (
    DRUM_STEMS,
    LarsNetError,
    MaskUNet,
    checkpoint_path,
    load_larsnet,
    widths_from_state_dict,
)
from tests.dose_fixtures import REFERENCE_DIR, one_thread  # noqa: F401 (one_thread: autouse)

NARROW = REFERENCE_DIR / "larsnet_narrow"
NARROW_JSON = REFERENCE_DIR / "larsnet_narrow.json"
REFERENCE = REFERENCE_DIR / "larsnet_narrow_reference.npz"
RELEASED_SHAPES = REFERENCE_DIR / "larsnet_state_dict_shapes.json"
#: Largest error allowed, relative to the reference stem's peak (float32 on the CPU).
TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def larsnet():
    return load_larsnet(NARROW)


@pytest.fixture(scope="module")
def reference():
    with np.load(REFERENCE) as data:
        return dict(data)


def relative_error(ours: np.ndarray, theirs: np.ndarray) -> float:
    """Largest absolute difference over the reference's peak."""
    return float(np.abs(ours - theirs).max() / np.abs(theirs).max())


@pytest.mark.parametrize("alpha, suffix", [(None, "waveform"), (1.0, "wiener_a1")])
def test_stems_equal_the_reference_code(larsnet, reference, alpha, suffix):
    out = larsnet.separate(reference["mixture"], wiener_alpha=alpha, stems=DRUM_STEMS)
    assert list(out) == list(DRUM_STEMS)
    for stem in DRUM_STEMS:
        theirs = reference[f"{stem}_{suffix}"]
        assert out[stem].shape == theirs.shape and out[stem].dtype == np.float32
        error = relative_error(out[stem], theirs)
        assert error < TOLERANCE, (stem, suffix, error)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_equals_the_reference_code(reference):
    """On the GPU (cuDNN's TF32 convolutions off: PyTorch turns them on by default, and they
    round to 10-bit mantissas) the stems match the reference as on the CPU."""
    larsnet = load_larsnet(NARROW, device="cuda")
    with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
        for alpha, suffix in [(None, "waveform"), (1.0, "wiener_a1")]:
            out = larsnet.separate(reference["mixture"], wiener_alpha=alpha, stems=DRUM_STEMS)
            for stem in DRUM_STEMS:
                error = relative_error(out[stem], reference[f"{stem}_{suffix}"])
                assert error < TOLERANCE, (stem, suffix, error)


def test_widths_are_read_from_the_weights():
    narrow = json.loads(NARROW_JSON.read_text())["channels"]
    for stem, model in load_larsnet(NARROW, stems=("kick", "toms")).models.items():
        assert list(model.widths) == narrow, stem
        assert not model.training and model.bins == 2048
    # The released layout (every key and shape of the full-size model) gives 16..512, and a
    # model built from those widths has exactly that layout.
    shapes = json.loads(RELEASED_SHAPES.read_text())
    released = {k: torch.empty(v, device="meta") for k, v in shapes.items()}
    widths, bins, channels = widths_from_state_dict(released)
    assert widths == (16, 32, 64, 128, 256, 512) and (bins, channels) == (2048, 2)
    with torch.device("meta"):
        model = MaskUNet(widths, bins, channels)
    assert {k: list(v.shape) for k, v in model.state_dict().items()} == shapes


def whole_song_stem(model: MaskUNet, x: torch.Tensor) -> torch.Tensor:
    """One stem as LarsNet's own code computes it, for an input it accepts: torch.stft of the
    whole end-padded signal, all 512-frame chunks through the U-Net, torch.istft."""
    n = x.shape[-1]
    window = torch.hann_window(4096, periodic=True)
    padded = F.pad(x, (0, (-(n - 4096) % 1024) % 4096))
    spec = torch.stft(padded, 4096, 1024, window=window, center=True, return_complex=True)
    frames = spec.shape[-1]
    mag = F.pad(spec.abs()[:, :2048], (0, -frames % 512))
    chunks = torch.stack(mag.split(512, dim=-1))  # [chunks, 2, 2048, 512]
    mask = torch.cat(list(model(chunks)), dim=-1)[..., :frames]
    return torch.istft(spec * F.pad(mask, (0, 0, 0, 1)), 4096, 1024, window=window, length=n)


@pytest.mark.parametrize("n", [3001, 44101, 600 * 1024 + 17])
def test_chunked_work_equals_the_whole_song_formulation(larsnet, n):
    """One chunk at a time (bounded memory) gives LarsNet's whole-song result, across chunk
    boundaries too (600 frames: two chunks)."""
    x = np.random.default_rng(n).uniform(-0.5, 0.5, (2, n)).astype(np.float32)
    ours = larsnet.separate(x, stems=("snare",))["snare"]
    with torch.inference_mode():
        theirs = whole_song_stem(larsnet.models["snare"], torch.from_numpy(x)).numpy()
    assert relative_error(ours, theirs) < TOLERANCE


@pytest.mark.parametrize("n", [1, 7, 1023, 2047, 2049, 4097])
@pytest.mark.parametrize("rate", [44100, 22050])
def test_output_length_equals_input_length(larsnet, n, rate):
    """Mono or stereo, odd lengths, shorter than one STFT window (where LarsNet's own code
    fails), and another sample rate (resampled to 44.1 kHz and back)."""
    x = np.random.default_rng(n).uniform(-0.5, 0.5, n).astype(np.float32)
    out = larsnet.separate(x, sample_rate=rate, stems=("kick", "hihat"))
    for stem, y in out.items():
        assert y.shape == (2, n) and y.dtype == np.float32 and np.isfinite(y).all(), stem
    stereo = larsnet.separate(np.stack([x, x]), sample_rate=rate, stems=("kick", "hihat"))
    for stem in out:
        np.testing.assert_array_equal(out[stem], stereo[stem])


def test_bad_inputs_are_refused_by_name(larsnet):
    bad = [
        (np.zeros((3, 100), np.float32), {}, "expected [samples]"),
        (np.zeros((2, 0), np.float32), {}, "no samples"),
        (np.full((2, 10), np.nan, np.float32), {}, "NaN"),
        (np.zeros(10, np.float32), {"sample_rate": 0}, "sample_rate"),
        (np.zeros(10, np.float32), {"wiener_alpha": 0.0}, "wiener_alpha"),
        (np.zeros(10, np.float32), {"stems": ("bass",)}, "not loaded: bass"),
    ]
    for x, kwargs, message in bad:
        with pytest.raises(LarsNetError, match="^[^\n]*$") as err:
            larsnet.separate(x, **kwargs)
        assert message in str(err.value), kwargs


def copy_folder(tmp_path: Path, without: str | None = None) -> Path:
    folder = tmp_path / "pretrained_larsnet_models"
    shutil.copytree(NARROW, folder)
    if without:
        checkpoint_path(folder, without).unlink()
    return folder


def one_line(err: pytest.ExceptionInfo) -> str:
    text = str(err.value)
    assert "\n" not in text
    return text


def test_missing_stem_file_is_one_line_naming_it(tmp_path):
    folder = copy_folder(tmp_path, without="toms")
    with pytest.raises(LarsNetError) as err:
        load_larsnet(folder)
    assert str(checkpoint_path(folder, "toms")) in one_line(err)
    # Plain masks need only the stems they return; Wiener masks refuse without all five.
    three = load_larsnet(folder, stems=DRUM_STEMS)
    assert three.stems == DRUM_STEMS
    with pytest.raises(LarsNetError, match="all five") as err:
        three.separate(np.zeros(100, np.float32), wiener_alpha=1.0)
    assert "toms" in one_line(err)
    with pytest.raises(LarsNetError) as err:
        load_larsnet(tmp_path / "nowhere")
    assert "nowhere: not a folder" in one_line(err)


def test_wrong_layout_is_one_line_naming_the_file(tmp_path):
    folder = copy_folder(tmp_path)
    path = checkpoint_path(folder, "kick")
    ckpt = torch.load(path, weights_only=True)
    state = ckpt["model_state_dict"]
    cases = {
        "no 'model_state_dict'": {"state_dict": state},
        "missing 'mask_layer.0.bias'": {
            "model_state_dict": {k: v for k, v in state.items() if k != "mask_layer.0.bias"}
        },
        "dec3.conv_trans.weight has shape": {
            "model_state_dict": {**state, "dec3.conv_trans.weight": torch.zeros(9, 8, 5, 5)}
        },
        "no 'enc4.conv.weight'": {
            "model_state_dict": {k: v for k, v in state.items() if not k.startswith("enc4")}
        },
    }
    for message, content in cases.items():
        torch.save(content, path)
        with pytest.raises(LarsNetError) as err:
            load_larsnet(folder, stems=("kick",))
        text = one_line(err)
        assert text.startswith(str(path)) and message in text, text
    path.write_bytes(b"not a torch file")
    with pytest.raises(LarsNetError) as err:
        load_larsnet(folder, stems=("kick",))
    assert one_line(err).startswith(f"{path}: not a readable torch file")


def write_song(path: Path, audio: np.ndarray, rate: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, audio.T, rate, subtype="PCM_16")
    return path


def drum_song(seconds: float, rate: int, channels: int, seed: int) -> np.ndarray:
    """Clicks with decays (kick-like thumps and hi-hat-like noise), ``[channels, samples]``."""
    rng = np.random.default_rng(seed)
    n = int(seconds * rate) | 1  # odd
    t = np.arange(n) / rate
    out = np.zeros((channels, n))
    for start in np.arange(0.0, seconds, 0.25):
        k = t >= start
        tail = np.exp(-(t[k] - start) * 20)
        out[:, k] += 0.4 * np.sin(2 * np.pi * 60 * (t[k] - start)) * tail
        out[:, k] += 0.1 * rng.standard_normal((channels, k.sum())) * tail**4
    return out.astype(np.float32)


def test_cli_writes_float_stems_and_skips_its_own_outputs(tmp_path, capsys):
    songs = tmp_path / "songs"
    stereo = write_song(songs / "groove.wav", drum_song(1.3, 44100, 2, 0), 44100)
    mono = write_song(songs / "sub" / "mono.flac", drum_song(0.7, 22050, 1, 1), 22050)
    out = songs / "separated"  # inside the songs folder
    argv = [str(songs), "--larsnet", str(NARROW), "--out", str(out), "--no-progress"]
    assert main(argv + ["--device", "cpu"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1].startswith("dose-separate: 2 of 2 songs separated") and "plain" in lines[-1]

    larsnet = load_larsnet(NARROW, stems=DRUM_STEMS)
    for name, source, n in [("groove", stereo, 57331), ("sub/mono", mono, 30870)]:
        mixture, rate = sf.read(source, dtype="float32", always_2d=True)
        if rate != 44100:  # what the command does with another rate: resample_poly
            from scipy.signal import resample_poly

            mixture = resample_poly(mixture, 2, 1, axis=0).astype(np.float32)
        assert mixture.shape[0] == n
        expected = larsnet.separate(mixture.T)
        for stem in DRUM_STEMS:
            info = sf.info(out / f"{name}.{stem}.wav")
            assert (info.samplerate, info.channels, info.frames) == (44100, 2, n)
            assert info.subtype == "FLOAT"
            written, _ = sf.read(out / f"{name}.{stem}.wav", dtype="float32", always_2d=True)
            np.testing.assert_array_equal(written.T, expected[stem])
        assert not (out / f"{name}.toms.wav").exists()
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*"))
    assert len(written) == 7 and "sub" in written  # 6 stems and the subfolder, no temp files

    # A rerun leaves the outputs inside --out alone and writes the same names again.
    assert main(argv + ["--all-stems"]) == 0
    assert "6 file(s) inside --out" in capsys.readouterr().err
    assert len(list(out.rglob("*.wav"))) == 10


def test_cli_wiener_and_refusals(tmp_path, capsys):
    song = write_song(tmp_path / "a.wav", drum_song(0.5, 44100, 2, 2), 44100)
    out = tmp_path / "out"
    argv = [str(song), "--out", str(out), "--no-progress"]
    assert main(argv + ["--larsnet", str(NARROW), "--wiener", "2"]) == 0
    assert "alpha-Wiener masks (alpha 2)" in capsys.readouterr().out
    larsnet = load_larsnet(NARROW)
    mixture, _ = sf.read(song, dtype="float32", always_2d=True)
    expected = larsnet.separate(mixture.T, wiener_alpha=2.0, stems=DRUM_STEMS)
    for stem in DRUM_STEMS:
        written, _ = sf.read(out / f"a.{stem}.wav", dtype="float32", always_2d=True)
        np.testing.assert_array_equal(written.T, expected[stem])

    # Wiener masks without the toms model: one line naming the missing file, exit 2.
    folder = copy_folder(tmp_path, without="toms")
    assert main(argv + ["--larsnet", str(folder), "--wiener", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("dose-separate: error: ")
    assert str(checkpoint_path(folder, "toms")) in err[0]
    # ... while plain masks of kick, snare and hi-hat do not need it.
    assert main(argv + ["--larsnet", str(folder)]) == 0
    capsys.readouterr()

    # An unreadable song is skipped by path (exit 1); a bad alpha is argparse's error.
    bad = tmp_path / "songs" / "broken.wav"
    bad.parent.mkdir()
    bad.write_bytes(b"RIFF nonsense")
    assert (
        main([str(bad), str(song), "--out", str(out), "--larsnet", str(NARROW), "--no-progress"])
        == 1
    )
    captured = capsys.readouterr()
    assert f"skipped {bad}: cannot decode audio" in captured.err
    assert "1 of 2 songs separated" in captured.out
    with pytest.raises(SystemExit) as exit_:
        main(argv + ["--larsnet", str(NARROW), "--wiener", "0"])
    assert exit_.value.code == 2
    assert "--wiener" in capsys.readouterr().err
