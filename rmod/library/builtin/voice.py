"""Spoken vocal loops with ``espeak-ng`` (when installed): consonants and sibilance.

Choir and "ooh" pads never carry what a real voice puts above 5 kHz (s, sh, t, k, f).
A speech loop is a random string of made-up words (consonant-vowel syllables, drawn from
:data:`ONSETS` and :data:`VOWELS`) spoken by one of :data:`VOICES` at a random pitch and
speed; the speech is placed back to back (gaps of at most 0.12 s) until it fills the
phrase, and what runs past the loop end wraps to its start so the loop repeats seamlessly.
espeak-ng is deterministic for a given version, which the library's sources record.
"""

from __future__ import annotations

import shutil
import subprocess

import numpy as np

from rmod.audio import resample

ONSETS = ("s", "sh", "t", "k", "ch", "f", "th", "st", "sk", "tr", "p", "z", "l", "m", "n", "d")
VOICES = ("en-us+f2", "en-us+f3", "en-us+f4", "en+m3", "en+m5", "en-us+m1", "en+f5")
VOWELS = ("a", "e", "i", "o", "u", "ay", "ee", "oo", "ai")
ESPEAK_RATE = 22050


def available() -> bool:
    """Whether ``espeak-ng`` is on the PATH."""
    return shutil.which("espeak-ng") is not None


def _words(rng: np.random.Generator, n: int) -> str:
    words = []
    for _ in range(n):
        syllables = int(rng.integers(1, 4))
        word = "".join(str(rng.choice(ONSETS)) + str(rng.choice(VOWELS)) for _ in range(syllables))
        if rng.random() < 0.4:
            word += str(rng.choice(("s", "st", "sh", "t", "ks")))
        words.append(word)
    return " ".join(words)


def _pcm(wav: bytes) -> np.ndarray:
    """Samples of espeak-ng's WAV output (16-bit mono; its size fields may be unset)."""
    k = wav.find(b"data")
    if k < 0:
        raise RuntimeError("espeak-ng wrote no audio")
    body = wav[k + 8 :]
    return np.frombuffer(body[: len(body) // 2 * 2], dtype="<i2").astype(np.float64) / 32768.0


def speak(rng: np.random.Generator, sr: int) -> np.ndarray:
    """One random utterance (3-8 made-up words), float64 mono at ``sr`` Hz."""
    cmd = [
        "espeak-ng",
        "-v",
        str(rng.choice(VOICES)),
        "-p",
        str(int(rng.integers(20, 90))),
        "-s",
        str(int(rng.integers(120, 200))),
        "-g",
        str(int(rng.integers(0, 6))),
        "--stdout",
        _words(rng, int(rng.integers(3, 9))),
    ]
    out = subprocess.run(cmd, capture_output=True, check=True, timeout=60).stdout
    x = _pcm(out)
    a = np.abs(x)
    loud = np.flatnonzero(a > 0.01 * a.max())
    x = x[loud[0] : loud[-1] + 1]  # espeak pads with silence
    return resample(x[None, :], ESPEAK_RATE, sr)[0].astype(np.float64)


def speech_loop(rng: np.random.Generator, duration_s: float, sr: int) -> np.ndarray:
    """A seamless speech loop of ``duration_s`` seconds (module docstring)."""
    n = int(round(duration_s * sr))
    out = np.zeros(n)
    t = 0
    while t < n:
        x = speak(rng, sr)[:n]
        first = min(x.size, n - t)
        out[t : t + first] += x[:first]
        out[: x.size - first] += x[first:]
        t += x.size + int(rng.uniform(0.0, 0.12) * sr)
    return out
