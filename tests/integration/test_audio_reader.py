"""The one bounded audio reader (rmod_dose_common.audio): regular files only, header checked
against named limits before anything is allocated, decoded in blocks to the same values as
soundfile's whole-file read, errors of the caller's class in one line."""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dose_model.dataset.audio import RowAudioError
from dose_model.errors import DoseError
from rmod.audio import AudioFileError, audio_info, read_audio
from rmod.errors import RmodError
from rmod_dose_common import audio as common
from rmod_dose_common.audio import AudioReader, AudioReadError, Limit
from tests.hostile_audio import WAVE_FORMAT_IEEE_FLOAT, flac_bytes, patch_flac, wav_bytes


@pytest.mark.parametrize(
    "rate,limit",
    [(1, "MIN_SAMPLE_RATE = 8,000 Hz"), (7999, "MIN_SAMPLE_RATE"),
     (2**31 - 1, "MAX_SAMPLE_RATE = 384,000 Hz"), (384_001, "MAX_SAMPLE_RATE")],
)  # fmt: skip
def test_a_declared_rate_out_of_range_is_refused_from_the_header(tmp_path, rate, limit):
    """A 4 KB WAV declaring 1 Hz once resampled to 3.4 GB; 2**31-1 Hz asked for 320 GiB."""
    path = tmp_path / "rate.wav"
    path.write_bytes(wav_bytes(rate))
    for call in (common.read_audio, common.read_header):
        with pytest.raises(AudioReadError, match=limit) as err:
            call(path)
        assert str(err.value).startswith(f"{path}: declared sample rate {rate:,} Hz")
        assert "\n" not in str(err.value)
    path.write_bytes(wav_bytes(8000))  # the limits themselves are allowed
    assert common.read_audio(path)[1] == 8000
    path.write_bytes(wav_bytes(384_000))
    assert common.read_header(path).sample_rate == 384_000


def test_too_many_channels_and_too_many_samples_are_refused_before_decoding(tmp_path):
    path = tmp_path / "wide.wav"
    path.write_bytes(wav_bytes(44100, channels=65, data=b"\0" * 65 * 2 * 10))
    with pytest.raises(
        AudioReadError, match="declared 65 channels; allowed 1 to MAX_CHANNELS = 64"
    ):
        common.read_audio(path)
    # 20 minutes of silence: a FLAC of a few hundred KB declaring 52.9 M samples
    long = tmp_path / "long.flac"
    long.write_bytes(patch_flac(flac_bytes(np.zeros(4096)), frames=20 * 60 * 44100))
    header = common.read_header(long)
    assert header.frames == 20 * 60 * 44100 and header.seconds == 1200.0
    cap = Limit("TEST_CAP", 1_000_000, "samples")
    with pytest.raises(AudioReadError, match=r"= 52,920,000 samples \(1,200 s\) is above TEST_CAP"):
        common.read_audio(long, max_samples=cap)
    long.write_bytes(patch_flac(flac_bytes(np.zeros(4096)), frames=2**35))
    with pytest.raises(AudioReadError, match="is above MAX_SAMPLES = 268,435,456 samples"):
        common.read_audio(long)  # would be 128 GiB of float32


def test_headers_that_lie_about_the_length(tmp_path):
    """A WAV whose data chunk claims more than the file holds gives the frames that are
    there; a FLAC claiming more frames than it holds is one line; so is a FLAC that declares
    no length (0 in STREAMINFO: libsndfile says 2**63 - 1 frames, which soundfile's own read
    turned into a ValueError)."""
    wav = tmp_path / "claims.wav"
    wav.write_bytes(wav_bytes(44100, data=b"\x01\x00" * 2000, data_size=10**6))
    assert common.read_audio(wav)[0].shape == (1, 2000)
    flac = tmp_path / "claims.flac"
    flac.write_bytes(patch_flac(flac_bytes(0.5 * np.ones(4096)), frames=100_000))
    with pytest.raises(AudioReadError, match=r"claims.flac: cannot decode audio \(\w+: .+\)$"):
        common.read_audio(flac)
    flac.write_bytes(patch_flac(flac_bytes(0.5 * np.ones(4096)), frames=0))
    assert common.read_header(flac).frames == common.UNKNOWN_FRAMES
    with pytest.raises(AudioReadError, match="is above MAX_SAMPLES"):
        common.read_audio(flac)
    with pytest.raises(AudioReadError, match="is above MAX_STREAM_SAMPLES"):
        AudioReader(flac)


@pytest.mark.parametrize(
    "fmt,subtype,rate,channels",
    [("WAV", "PCM_16", 22050, 1), ("FLAC", "PCM_24", 48000, 2), ("WAV", "FLOAT", 96000, 3),
     ("AIFF", "PCM_16", 32000, 2), ("OGG", "VORBIS", 44100, 1)],
)  # fmt: skip
def test_blocks_give_the_values_of_a_whole_file_read(tmp_path, fmt, subtype, rate, channels):
    rng = np.random.default_rng(0)
    audio = (0.5 * rng.standard_normal((rate // 2 + 17, channels))).clip(-1, 1)
    path = tmp_path / f"a.{fmt.lower()}"
    sf.write(path, audio, rate, format=fmt, subtype=subtype)
    whole, _ = sf.read(str(path), dtype="float32", always_2d=True)
    got, got_rate = common.read_audio(path)
    assert got_rate == rate and got.dtype == np.float32
    assert np.array_equal(got, whole.T)  # bit for bit: rmod's library bytes depend on it
    with AudioReader(path) as reader:
        blocks = list(reader.blocks(block_samples=1000))
    assert len(blocks) > 1 and all(b.shape[0] * channels <= max(1000, channels) for b in blocks)
    assert np.array_equal(np.concatenate(blocks), whole)


def test_special_files_are_refused_without_being_read(tmp_path):
    """A FIFO nobody writes would block an open for ever; /dev/zero never ends."""
    fifo = tmp_path / "song.wav"
    os.mkfifo(fifo)
    code = (
        "import sys; from rmod_dose_common.audio import read_audio, AudioReadError\n"
        "try: read_audio(sys.argv[1])\n"
        "except AudioReadError as e: print(e)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(fifo)], capture_output=True, text=True, timeout=60
    )
    assert out.stdout.strip() == f"{fifo}: not a regular file (a FIFO)"
    for path, kind in (("/dev/zero", "a character device"), (tmp_path, "a folder")):
        with pytest.raises(AudioReadError, match=rf"not a regular file \({kind}\)"):
            common.read_audio(path)
    with pytest.raises(AudioReadError, match="missing.wav: file not found"):
        common.read_audio(tmp_path / "missing.wav")
    link = tmp_path / "link.wav"
    link.symlink_to("/dev/zero")
    with pytest.raises(AudioReadError, match="a character device"):
        common.read_header(link)
    real = tmp_path / "real.wav"
    real.write_bytes(wav_bytes(8000))
    (tmp_path / "ok.wav").symlink_to(real)  # a link to a regular file is that file
    assert common.read_audio(tmp_path / "ok.wav")[0].shape == (1, 2000)


def test_unreadable_undecodable_empty_and_non_finite_files(tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF but not really a wav file\n")
    with pytest.raises(AudioReadError, match=r"bad.wav: cannot decode audio \(LibsndfileError"):
        common.read_audio(bad)
    empty = tmp_path / "empty.wav"
    empty.write_bytes(wav_bytes(44100, data=b""))
    with pytest.raises(AudioReadError, match="empty.wav: file holds no samples"):
        common.read_audio(empty)
    nan = tmp_path / "nan.wav"
    samples = np.array([0.0, np.nan, 0.5], dtype=np.float32).tobytes()
    nan.write_bytes(wav_bytes(44100, bits=32, data=samples, fmt_tag=WAVE_FORMAT_IEEE_FLOAT))
    with pytest.raises(AudioReadError, match="non-finite samples"):
        common.read_audio(nan)
    if os.geteuid() != 0:  # root reads anything
        locked = tmp_path / "locked.wav"
        locked.write_bytes(wav_bytes(8000))
        locked.chmod(0)
        with pytest.raises(AudioReadError, match=r"cannot read \(Permission denied\)"):
            common.read_audio(locked)


def test_each_package_gets_its_own_error_class(tmp_path):
    path = tmp_path / "one-hertz.wav"
    path.write_bytes(wav_bytes(1))
    with pytest.raises(AudioFileError) as err:
        read_audio(path)
    assert isinstance(err.value, RmodError) and err.value.path == str(path)
    assert err.value.reason.startswith("declared sample rate 1 Hz is below MIN_SAMPLE_RATE")
    with pytest.raises(AudioFileError, match="MIN_SAMPLE_RATE"):
        audio_info(path)
    with pytest.raises(RowAudioError) as err:
        common.read_audio(path, RowAudioError)
    assert isinstance(err.value, DoseError) and isinstance(err.value, AudioReadError)
    assert str(RowAudioError(Path("x.wav"), "two\nlines")) == "x.wav: two lines"


def test_no_other_module_decodes_audio_files_itself():
    """One copy of audio decoding: outside rmod_dose_common.audio, no module of either
    package opens a file with soundfile (``sf.read``/``sf.info``/``sf.SoundFile``/
    ``sf.blocks``). rmod-verify decodes bytes it has already read, in memory."""
    import ast

    root = Path(__file__).resolve().parents[2]
    allowed = {"rmod/inspect/verify.py": "decodes dataset files from bytes in memory (io.BytesIO)"}
    found = []
    for package in ("rmod", "dose_model"):
        for path in sorted((root / package).rglob("*.py")):
            rel = path.relative_to(root).as_posix()
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if (
                    isinstance(node, ast.Attribute)
                    and isinstance(node.value, ast.Name)
                    and node.value.id in ("sf", "soundfile")
                    and node.attr in ("read", "info", "SoundFile", "blocks")
                    and rel not in allowed
                ):
                    found.append(f"{rel}:{node.lineno} sf.{node.attr}")
    assert found == [], "decode through rmod_dose_common.audio instead"


# ------------------------------------------------------------- tar members decoded in memory
class _Member:
    """A tar member as the reader sees one (a ``MemberSource``): its bytes, and its name."""

    def __init__(self, data: bytes):
        self.data = data

    def read_bytes(self) -> bytes:
        return self.data

    def tar_member(self) -> tuple[str, str]:
        return "train/train-000000.tar", "train-00000000.mixture.wav"

    def __str__(self) -> str:
        return "train/train-000000.tar#train-00000000.mixture.wav"


def _no_libsndfile(*args, **kwargs):
    raise AssertionError("libsndfile was asked to decode a plain 16-bit WAV member")


def _outcome(source, block_samples: int | None = None):
    """(header, blocks) the reader gives, or ("refused", reason)."""
    try:
        with AudioReader(source, AudioReadError, common.MAX_STREAM_SAMPLES) as reader:
            return reader.header, [b.copy() for b in reader.blocks(block_samples)]
    except AudioReadError as exc:
        return "refused", exc.reason


def _same_as_a_file(data: bytes, tmp: Path, block_samples: int | None = None) -> None:
    """A member of these bytes decodes to what libsndfile gives for them as a file: the same
    header and bit-identical blocks, or a refusal of both."""
    path = tmp / "same.wav"
    path.write_bytes(data)
    member, file = _outcome(_Member(data), block_samples), _outcome(path, block_samples)
    if file[0] == "refused" or member[0] == "refused":
        assert member[0] == file[0] == "refused", (member, file)
        return
    assert member[0] == file[0]
    assert len(member[1]) == len(file[1])
    for got, want in zip(member[1], file[1], strict=True):
        assert got.dtype == want.dtype == np.float32
        np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))


@pytest.mark.parametrize("channels", [1, 2, 3])
@pytest.mark.parametrize("frames", [1, 777, 140_001])
def test_a_member_decodes_as_libsndfile_decodes_the_file(tmp_path, channels, frames):
    """soundfile's own 16-bit WAVs (what rmod writes) go through numpy, in several blocks,
    and give libsndfile's values bit for bit; FLAC, 24-bit and float members go to
    libsndfile."""
    rng = np.random.default_rng(frames + channels)
    audio = rng.uniform(-1.2, 1.2, (frames, channels)).astype(np.float32)  # clips too
    for fmt, subtype in (("WAV", "PCM_16"), ("FLAC", "PCM_16"), ("WAV", "PCM_24"),
                         ("WAV", "FLOAT")):  # fmt: skip
        buf = io.BytesIO()
        sf.write(buf, audio, 22050, format=fmt, subtype=subtype)
        data = buf.getvalue()
        plain = common.plain_pcm16_wav(data)
        assert (plain is not None) == (fmt == "WAV" and subtype == "PCM_16")
        if plain is not None:
            assert plain[0] == channels and plain[1] == 22050 and plain[3] == frames
            with pytest.MonkeyPatch.context() as mp:  # numpy decodes it: libsndfile is not asked
                mp.setattr(common.sf, "SoundFile", _no_libsndfile)
                assert _outcome(_Member(data))[0] != "refused"
        _same_as_a_file(data, tmp_path, block_samples=50_000)


def _chunk(name: bytes, body: bytes) -> bytes:
    return name + struct.pack("<I", len(body)) + body + b"\0" * (len(body) & 1)


def _riff(*chunks: bytes, extra: int = 0) -> bytes:
    body = b"WAVE" + b"".join(chunks)
    return b"RIFF" + struct.pack("<I", len(body) + extra) + body


_FMT = struct.pack("<HHIIHH", 1, 2, 44100, 44100 * 4, 4, 16)
_DATA = np.arange(-4000, 4000, dtype="<i2").tobytes()


@pytest.mark.parametrize(
    "data,plain",
    [
        (_riff(_chunk(b"fmt ", _FMT), _chunk(b"data", _DATA)), True),
        (_riff(_chunk(b"fmt ", _FMT + b"\0\0"), _chunk(b"data", _DATA)), True),  # size 18
        (_riff(_chunk(b"fmt ", _FMT), _chunk(b"LIST", b"odd"), _chunk(b"data", _DATA)), True),
        (_riff(_chunk(b"fmt ", _FMT), _chunk(b"data", _DATA), _chunk(b"LIST", b"tail")), True),
        (_riff(_chunk(b"fmt ", _FMT), _chunk(b"data", _DATA), extra=8), False),  # RIFF size
        (_riff(_chunk(b"fmt ", _FMT), _chunk(b"data", _DATA))[:-2], False),  # truncated
        (_riff(_chunk(b"fmt ", _FMT), _chunk(b"data", _DATA[:-2])), False),  # half a frame
        (_riff(_chunk(b"data", _DATA), _chunk(b"fmt ", _FMT)), False),  # fmt after data
        (_riff(_chunk(b"fmt ", _FMT[:14] + b"\x18\0"), _chunk(b"data", _DATA)), False),  # 24 bit
        (_riff(_chunk(b"fmt ", _FMT[:12] + b"\2\0" + _FMT[14:]), _chunk(b"data", _DATA)), False),
        (_riff(_chunk(b"fmt ", _FMT), _chunk(b"fmt ", _FMT), _chunk(b"data", _DATA)), False),
        (_riff(_chunk(b"fmt ", _FMT), _chunk(b"data", b"")), True),  # no samples: refused
    ],
    ids=["plain", "fmt-18", "chunk-before-data", "chunk-after-data", "riff-size", "truncated",
         "half-frame", "fmt-after-data", "24-bit", "bad-align", "two-fmt", "empty"],
)  # fmt: skip
def test_odd_wav_members_decode_or_fail_as_the_file_would(tmp_path, data, plain):
    """What numpy decodes is exactly what :func:`plain_pcm16_wav` accepts; every other layout
    goes to libsndfile, so a member and a file of the same bytes always agree."""
    assert (common.plain_pcm16_wav(data) is not None) is plain
    _same_as_a_file(data, tmp_path)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    flips=st.lists(st.tuples(st.integers(0, 63), st.integers(1, 255)), max_size=3),
    cut=st.integers(0, 120),
)
def test_a_damaged_header_decodes_from_memory_as_from_a_file(flips, cut):
    """Random bytes of a plain WAV's header changed, its end cut: member and file agree."""
    data = bytearray(_riff(_chunk(b"fmt ", _FMT), _chunk(b"data", _DATA[:200])))
    for at, xor in flips:
        data[at] ^= xor
    with tempfile.TemporaryDirectory() as tmp:
        _same_as_a_file(bytes(data[: len(data) - cut]), Path(tmp))
