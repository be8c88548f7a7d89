"""Small audio files with chosen header fields, true or not: a WAV written field by field and
a FLAC whose STREAMINFO is patched. For the bounded reader's tests and the fuzz test.
"""

from __future__ import annotations

import io
import struct

import numpy as np
import soundfile as sf

WAVE_FORMAT_PCM, WAVE_FORMAT_IEEE_FLOAT = 1, 3


def wav_bytes(
    rate: int,
    channels: int = 1,
    bits: int = 16,
    data: bytes | None = None,
    fmt_tag: int = WAVE_FORMAT_PCM,
    data_size: int | None = None,
) -> bytes:
    """A RIFF/WAVE file: a 16-byte ``fmt `` chunk with these fields (``rate`` in Hz, taken
    modulo 2**32) and a ``data`` chunk holding ``data`` (default 4000 zero bytes) whose
    declared size is ``data_size`` (default: the true size)."""
    data = b"\0" * 4000 if data is None else data
    align = channels * bits // 8
    fmt = struct.pack(
        "<HHIIHH",
        fmt_tag & 0xFFFF,
        channels & 0xFFFF,
        rate & 0xFFFFFFFF,
        (rate * align) & 0xFFFFFFFF,
        align & 0xFFFF,
        bits & 0xFFFF,
    )
    size = len(data) if data_size is None else data_size
    body = b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt
    body += b"data" + struct.pack("<I", size & 0xFFFFFFFF) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def flac_bytes(audio: np.ndarray, rate: int = 44100, subtype: str = "PCM_16") -> bytes:
    """A true FLAC file of float ``audio`` ``[frames]`` or ``[frames, channels]``."""
    buf = io.BytesIO()
    sf.write(buf, audio, rate, format="FLAC", subtype=subtype)
    return buf.getvalue()


#: STREAMINFO's packed 64 bits (after "fLaC", the 4-byte block header and 10 bytes of block
#: and frame sizes): sample rate (20 bits), channels - 1 (3), bits per sample - 1 (5), total
#: samples per channel (36).
_STREAMINFO_FIELDS = 18


def patch_flac(
    raw: bytes,
    rate: int | None = None,
    channels: int | None = None,
    bits: int | None = None,
    frames: int | None = None,
) -> bytes:
    """``raw`` (a FLAC file whose first metadata block is STREAMINFO) with the given fields
    of STREAMINFO replaced (each masked to its width)."""
    assert raw[:4] == b"fLaC" and raw[4] & 0x7F == 0, "not a FLAC file starting with STREAMINFO"
    at = _STREAMINFO_FIELDS
    (packed,) = struct.unpack(">Q", raw[at : at + 8])
    old_rate, old_ch = packed >> 44, (packed >> 41) & 0x7
    old_bits, old_frames = (packed >> 36) & 0x1F, packed & 0xFFFFFFFFF
    new_rate = old_rate if rate is None else rate & 0xFFFFF
    new_ch = old_ch if channels is None else (channels - 1) & 0x7
    new_bits = old_bits if bits is None else (bits - 1) & 0x1F
    new_frames = old_frames if frames is None else frames & 0xFFFFFFFFF
    packed = (new_rate << 44) | (new_ch << 41) | (new_bits << 36) | new_frames
    return raw[:at] + struct.pack(">Q", packed) + raw[at + 8 :]
