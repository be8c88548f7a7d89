"""Audio as the model sees it: float32 mono at the codec's rate, decoded block by block.

Files are opened and decoded by the bounded reader of `rmod_dose_common.audio` (regular files
only; the declared rate, channels and length checked before anything is allocated; errors as
:class:`RowAudioError` naming the file). A block becomes mono as the mean of its channels, and
is resampled to the codec's rate with :class:`Resampler`, a streaming form of
``scipy.signal.resample_poly`` whose output is bit for bit that of one call on the whole file.
So memory stays at a few blocks however long a file is, and only the part a caller needs is
decoded: `load_mono` stops after its ``samples``, `read_clips` after its last clip. Used by
`dose-tokenize`, `dose-extract` and `dose-eval`.

A ``path`` may also be a member of a tar shard (:class:`~dose_model.dataset.members.TarMember`,
what the manifest reader gives for a ``--layout tar`` build): the bounded reader reads it
through the shard's index and decodes it from memory; a member that cannot be trusted is a
`RowAudioError` naming the shard and key.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Generator, Iterable, Sequence
from pathlib import Path

import numpy as np

from dose_model.dataset.members import TarMember
from dose_model.errors import DoseError
from rmod_dose_common.audio import (
    BLOCK_SAMPLES,
    MAX_SAMPLES,
    MAX_STREAM_SAMPLES,
    AudioReader,
    AudioReadError,
    Limit,
)


class RowAudioError(DoseError, AudioReadError):
    """One row's audio cannot be used; carries the file ``path`` and the ``reason``."""


class Resampler:
    """Streaming polyphase resampling from ``sr_in`` to ``sr_out`` Hz: feed float32 mono blocks
    to :meth:`push`, then call :meth:`finish`; the outputs joined are exactly
    ``resample_poly(whole, up, down)`` (same filter: Kaiser-windowed sinc, beta 5, 10 zero
    crossings per side; length ``ceil(n * up / down)``).

    Each output sample depends on the inputs within ``reach`` samples of its position, so
    :meth:`push` returns the outputs whose inputs have all arrived, computed over a buffer that
    starts on a multiple of ``down`` (so its polyphase phase is the whole signal's) and keeps
    ``reach`` samples of history.
    """

    def __init__(self, sr_in: int, sr_out: int) -> None:
        g = math.gcd(int(sr_in), int(sr_out))
        self.up, self.down = int(sr_out) // g, int(sr_in) // g
        half = 10 * max(self.up, self.down)
        self.same = self.up == self.down == 1
        if not self.same:  # resample_poly's own filter, designed once instead of per call
            from scipy.signal import firwin

            self._taps = firwin(2 * half + 1, 1.0 / max(self.up, self.down), window=("kaiser", 5.0))
            self._taps = self._taps.astype(np.float32)
        self.reach = half // self.up + 2
        self._buf = np.zeros(0, dtype=np.float32)
        self._start = 0  # input index of _buf[0], a multiple of down
        self._seen = 0  # inputs received
        self._next = 0  # index of the next output to return

    def push(self, block: np.ndarray) -> np.ndarray:
        """Take the next float32 input samples; return the outputs now complete (maybe none)."""
        block = np.asarray(block, dtype=np.float32)
        self._seen += block.shape[0]
        if self.same:
            self._next = self._seen
            return block
        self._buf = np.concatenate([self._buf, block])
        return self._emit(((self._seen - self.reach) * self.up) // self.down)

    def finish(self) -> np.ndarray:
        """The remaining outputs, up to ``ceil(inputs * up / down)`` in all."""
        if self.same:
            return np.zeros(0, dtype=np.float32)
        return self._emit(-(-self._seen * self.up // self.down))

    def _emit(self, end: int) -> np.ndarray:
        if end <= self._next or self._buf.shape[0] == 0:
            return np.zeros(0, dtype=np.float32)
        from scipy.signal import resample_poly

        out = resample_poly(self._buf, self.up, self.down, window=self._taps)
        base = self._start * self.up // self.down
        out = out[self._next - base : end - base].astype(np.float32, copy=False)
        self._next = end
        first_needed = max(0, self._next * self.down // self.up - self.reach)
        start = first_needed // self.down * self.down
        if start > self._start:
            self._buf = self._buf[start - self._start :]
            self._start = start
        return out


#: Up to this many channels `channel_mean` adds them itself; numpy's reduction sums eight or
#: more pairwise, in another order, so wider blocks go through it.
FAST_MEAN_CHANNELS = 4


def channel_mean(block: np.ndarray) -> np.ndarray:
    """Float32 ``[frames, channels]`` -> float32 ``[frames]``: bit for bit
    ``block.mean(axis=1, dtype=np.float32)`` (numpy adds the channels in order onto +0.0 in
    float32, then divides by their count; so a frame of -0.0 gives +0.0), at a fifth of its
    cost on stereo, where numpy's general reduction over a short axis dominated reading.
    ``test_channel_mean_is_numpys_mean_bit_for_bit`` holds it to numpy's."""
    channels = block.shape[1]
    if channels > FAST_MEAN_CHANNELS or block.dtype != np.float32:
        return block.mean(axis=1, dtype=np.float32)
    out = np.add(block[:, 0], np.float32(0.0), dtype=np.float32)
    for c in range(1, channels):
        out += block[:, c]
    if channels > 1:
        out /= np.float32(channels)
    return out


def mono_blocks(
    path: str | Path | TarMember, sample_rate: int, max_samples: Limit = MAX_STREAM_SAMPLES
) -> Generator[np.ndarray, None, None]:
    """The file as consecutive float32 mono blocks at ``sample_rate`` (channel mean, then
    `Resampler`); joined, they are the whole file. Raises `RowAudioError` naming the file when
    it is refused or fails to decode (possibly after some blocks). Close the generator (or
    use it up) to close the file."""
    with AudioReader(path, RowAudioError, max_samples) as reader:
        yield from _mono_stream(reader.blocks(), reader.header.sample_rate, sample_rate)


def _mono_stream(
    blocks: Iterable[np.ndarray], sr: int, sample_rate: int
) -> Generator[np.ndarray, None, None]:
    """Float32 ``[frames, channels]`` blocks at ``sr`` Hz -> float32 mono blocks at
    ``sample_rate`` (channel mean, then `Resampler`); empty outputs are left out."""
    resampler = Resampler(sr, sample_rate)
    for block in blocks:
        out = resampler.push(channel_mean(block))
        if out.shape[0]:
            yield out
    tail = resampler.finish()
    if tail.shape[0]:
        yield tail


def mono_at_rate(data: np.ndarray, sr: int, sample_rate: int) -> np.ndarray:
    """Float32 ``[frames, channels]`` at ``sr`` Hz, as a file decodes, -> float32 mono
    ``[samples]`` at ``sample_rate``: `mono_blocks`' own conversion, fed in the blocks the
    bounded reader would decode that file in (``BLOCK_SAMPLES`` // channels frames). The
    token sink (:mod:`dose_model.cache.sink`) reads rendered audio through it, so it gives
    the codec the samples `load_mono` gives from the file a build would have written."""
    per_block = max(1, BLOCK_SAMPLES // max(1, data.shape[1]))
    blocks = (data[at : at + per_block] for at in range(0, data.shape[0], per_block))
    parts = list(_mono_stream(blocks, sr, sample_rate))
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)


def read_mono(path: str | Path | TarMember, sample_rate: int) -> np.ndarray:
    """A whole file as float32 mono ``[samples]`` at ``sample_rate`` (at most ``MAX_SAMPLES``
    declared samples); `RowAudioError` naming the file if it is missing, refused, undecodable,
    empty or holds non-finite samples."""
    return np.concatenate(list(mono_blocks(path, sample_rate, MAX_SAMPLES)))


def read_clips(
    path: str | Path | TarMember, sample_rate: int, starts: Sequence[int], length: int
) -> tuple[np.ndarray, int, bool]:
    """``clip(audio, s, length)`` for each of ``starts`` (samples at ``sample_rate``), as
    float32 ``[len(starts), length]``, decoding only up to the end of the last clip. Also
    returns the samples decoded and whether that is the whole file."""
    clips = np.zeros((len(starts), length), dtype=np.float32)
    stop = max(starts, default=0) + length
    at = 0
    with contextlib.closing(mono_blocks(path, sample_rate)) as blocks:
        for block in blocks:
            for row, start in enumerate(starts):
                lo, hi = max(start, at), min(start + length, at + block.shape[0])
                if lo < hi:
                    clips[row, lo - start : hi - start] = block[lo - at : hi - at]
            at += block.shape[0]
            if at >= stop:
                return clips, at, False
    return clips, at, True


def clip(audio: np.ndarray, start: int, length: int) -> np.ndarray:
    """``audio[start : start + length]`` as float32, zero-padded at the end to ``length``."""
    out = np.zeros(length, dtype=np.float32)
    part = audio[start : start + length]
    out[: part.shape[0]] = part
    return out


def load_mono(path: str | Path | TarMember, sample_rate: int, samples: int) -> np.ndarray:
    """The first ``samples`` of the file as float32 mono at ``sample_rate``, zero-padded at the
    end (the same values as `read_mono` then `clip`, but only that part is decoded)."""
    return read_clips(path, sample_rate, [0], samples)[0][0]
