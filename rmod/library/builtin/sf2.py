"""A small SoundFont 2 sampler: parse zones with ``sf2utils``, render single notes with numpy.

What it reads: sample data at each sample's own rate, key and velocity ranges (velocity
layers), root key and tuning, loop points, attenuation, the volume envelope (attack,
hold, decay, sustain, release) and the low-pass filter (initial cutoff and resonance, with
the SoundFont's default velocity-to-cutoff modulation of up to -2400 cents applied to
zones whose filter is set). Preset-level generators add to the instrument's (tuning,
attenuation, filter, envelope times) and narrow its key/velocity ranges. LFOs, the
modulation envelope and custom modulators are ignored; SF3 (compressed) samples are
refused. Notes are rendered by reading the zone's sample at a fractional position
(linear interpolation), wrapping inside the loop when the zone loops, low-pass
filtering and multiplying by the envelope. Sample data stay on disk (memory-mapped).

What it trusts: nothing in the file. Only a regular file is opened; the header block
(``pdta``) may hold at most :data:`rmod.limits.MAX_SF2_PDTA_BYTES`; its records must point
forward (bags, generators and modulators in order), so each is read once; presets may
define at most :data:`rmod.limits.MAX_SF2_ZONES` distinct zones in all (preset zones with
equal generators over one instrument are built once, so their cost is that of one); a
sample a zone plays must lie inside the sample data and declare a rate from
:data:`rmod.limits.MIN_SF2_SAMPLE_RATE` to :data:`rmod.limits.MAX_SF2_SAMPLE_RATE`. Each refusal
is a :class:`SoundFontError` naming the file (and the sample or limit). Generator values
are clamped to the ranges of the SoundFont 2.04 specification (section 8.1.3), as players
do; zones whose sample is empty are left out, and :meth:`SoundFont.zones` passes over those
whose sample is silent.
"""

from __future__ import annotations

import functools
import logging
import os
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from rmod.errors import RmodError
from rmod.limits import (
    MAX_SF2_PDTA_BYTES,
    MAX_SF2_SAMPLE_RATE,
    MAX_SF2_ZONES,
    MIN_SF2_SAMPLE_RATE,
    FileRefused,
    open_regular,
)

# Generator operator numbers of the SoundFont 2.04 specification.
_START_LOOP_OFS, _END_LOOP_OFS = 2, 3
_PAN, _ATTACK, _HOLD, _DECAY, _SUSTAIN, _RELEASE = 17, 34, 35, 36, 37, 38
_KEY_RANGE, _VEL_RANGE, _ATTENUATION = 43, 44, 48
_START_LOOP_COARSE, _END_LOOP_COARSE = 45, 50
_COARSE_TUNE, _FINE_TUNE, _SAMPLE_ID, _SAMPLE_MODES = 51, 52, 53, 54
_SCALE_TUNING, _ROOT_KEY = 56, 58
_FILTER_FC, _FILTER_Q = 8, 9
#: Generators a preset zone adds to its instrument zones' values (SF2.04 section 9.4).
_ADDITIVE: tuple[int, ...] = (_ATTENUATION, _COARSE_TUNE, _FINE_TUNE, _FILTER_FC, _FILTER_Q)
_ADDITIVE += (_ATTACK, _HOLD, _DECAY, _SUSTAIN, _RELEASE)
#: Allowed range of each generator's value (SoundFont 2.04 section 8.1.3; instrument and
#: preset values summed first): values outside are clamped.
_RANGES = {
    _ATTENUATION: (0, 1440),
    _COARSE_TUNE: (-120, 120),
    _FINE_TUNE: (-99, 99),
    _SCALE_TUNING: (0, 1200),
    _ATTACK: (-12000, 8000),
    _HOLD: (-12000, 5000),
    _DECAY: (-12000, 8000),
    _SUSTAIN: (0, 1440),
    _RELEASE: (-12000, 8000),
    _FILTER_FC: (1500, 13500),
    _FILTER_Q: (0, 960),
}
_INSTRUMENT, _MAX_CHUNKS = 41, 64
_FC_OPEN = 13500  # cents (about 20 kHz): the default, no filtering
_VEL_TO_FC = -2400  # cents at velocity 0 (the default modulator), zones with a filter only
_TIMECENT_DEFAULT = -12000  # about 1 ms

MAX_RELEASE_S = 1.0


def default_sf2_path() -> Path:
    """The General MIDI soundfont shipped inside the ``pretty_midi`` package (TimGM6mb.sf2)."""
    import pretty_midi

    return Path(pretty_midi.__file__).parent / "TimGM6mb.sf2"


@dataclass(frozen=True)
class Zone:
    """One key/velocity zone of an instrument, with everything the sampler uses.

    ``start``/``end``: sample bounds in the soundfont's sample pool; ``loop``: loop start
    and end relative to ``start`` (None when the zone does not loop). Times in seconds,
    ``attenuation_db`` and ``sustain_db`` in dB below full scale, tunings in cents.
    """

    name: str
    key_range: tuple[int, int]
    vel_range: tuple[int, int]
    sample_rate: int
    start: int
    end: int
    loop: tuple[int, int] | None
    root_key: int
    tune_cents: float
    scale_tuning: float
    attenuation_db: float
    attack_s: float
    hold_s: float
    decay_s: float
    sustain_db: float
    release_s: float
    filter_fc_cents: float = _FC_OPEN
    filter_q_db: float = 0.0

    @property
    def filtered(self) -> bool:
        """Whether the zone sets a low-pass cutoff below the open default."""
        return self.filter_fc_cents < _FC_OPEN


class SoundFontError(RmodError, ValueError):
    """A soundfont this sampler cannot read; the message names the file."""


def _short(gens: dict, oper: int, default: int) -> int:
    gen = gens.get(oper)
    value = default if gen is None else gen.short
    if oper in _ADDITIVE and "preset" in gens:
        pgen = gens["preset"].get(oper)
        value += 0 if pgen is None else pgen.short
    lo, hi = _RANGES.get(oper, (value, value))
    return min(hi, max(lo, value))


def _range(gens: dict, oper: int) -> tuple[int, int]:
    gen = gens.get(oper)
    if gen is None:
        return (0, 127)
    lo, hi = gen.amount & 0xFF, (gen.amount >> 8) & 0xFF
    return (min(lo, hi), max(lo, hi))


def _timecents(gens: dict, oper: int) -> float:
    return float(2.0 ** (_short(gens, oper, _TIMECENT_DEFAULT) / 1200.0))


class SoundFont:
    """A parsed SoundFont 2 file: presets by (bank, program), zones, the sample pool."""

    def __init__(self, path: str | Path | None = None):
        with warnings.catch_warnings():  # sf2utils imports audioop, deprecated in 3.11+
            warnings.simplefilter("ignore", DeprecationWarning)
            from sf2utils.sf2parse import Sf2File

        self.path = Path(path) if path is not None else default_sf2_path()
        previous = logging.root.manager.disable
        logging.disable(logging.WARNING)  # sf2utils warns about harmless quirks of most files
        try:
            with open_regular(self.path, what="soundfont") as fh:
                smpl = _layout(fh, os.fstat(fh.fileno()).st_size, self.path)
                fh.seek(0)
                sf = Sf2File(fh)
                _check_hydra(sf.raw.pdta, self.path)
                presets = [p for p in sf.presets if p.name != "EOP"]
                samples = [s for s in sf.samples if s.name != "EOS"]
                headers = sf.raw.pdta["Shdr"]
                if any(h.sample_type & 0x10 for h in headers):
                    raise SoundFontError(f"{self.path}: compressed (SF3) samples are not supported")
                if not samples or smpl is None:
                    raise SoundFontError(f"{self.path}: the soundfont holds no samples")
                offset, n_bytes = smpl
                self.pool = np.memmap(
                    self.path, dtype="<i2", mode="r", offset=offset, shape=(max(1, n_bytes // 2),)
                )
                self._silent: dict[tuple[int, int], bool] = {}
                self._n_samples = n_bytes // 2
                self._built: dict[tuple, list[Zone]] = {}
                self._count = 0
                self.names = {(p.bank, p.preset): p.name for p in presets}
                self._zones = {(p.bank, p.preset): self._preset_zones(p) for p in presets}
        except SoundFontError:
            raise
        except FileRefused as exc:
            raise SoundFontError(str(exc)) from None
        except Exception as exc:  # sf2utils raises many kinds on a damaged file
            detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise SoundFontError(
                f"{self.path}: not a readable SoundFont 2 file ({detail})"
            ) from None
        finally:
            logging.disable(previous)
        del self._built

    def _preset_zones(self, preset: Any) -> list[Zone]:  # an sf2utils preset (untyped)
        """The zones of a preset. Zones of one instrument under equal preset generators are
        built once per font (the same records serve every preset zone that repeats them);
        what is built and what each preset plays count towards
        :data:`rmod.limits.MAX_SF2_ZONES`."""
        zones: list[Zone] = []
        preset_global: dict = {}
        for pbag in preset.bags:
            inst = pbag.instrument
            if inst is None:
                preset_global = dict(pbag.gens)
                continue
            pgens = {**preset_global, **pbag.gens}
            key = (id(inst), tuple(sorted((o, g.amount) for o, g in pgens.items())))
            if key not in self._built:
                self._spend(len(inst.bags))
                self._built[key] = self._instrument_zones(inst, pgens)
            self._spend(len(self._built[key]))
            zones += self._built[key]
        return zones

    def _spend(self, n: int) -> None:
        self._count += n
        if self._count > MAX_SF2_ZONES:
            raise SoundFontError(f"{self.path}: more than MAX_SF2_ZONES = {MAX_SF2_ZONES} zones")

    def _instrument_zones(self, inst: Any, pgens: dict) -> list[Zone]:  # an sf2utils instrument
        """The zones of instrument ``inst`` under preset generators ``pgens``."""
        pkeys, pvels = _range(pgens, _KEY_RANGE), _range(pgens, _VEL_RANGE)
        zones: list[Zone] = []
        global_gens: dict = {}
        for ibag in inst.bags:
            if _SAMPLE_ID not in ibag.gens:
                global_gens = dict(ibag.gens)
                continue
            gens = {**global_gens, **ibag.gens, "preset": pgens}
            keys, vels = _range(gens, _KEY_RANGE), _range(gens, _VEL_RANGE)
            keys = (max(keys[0], pkeys[0]), min(keys[1], pkeys[1]))
            vels = (max(vels[0], pvels[0]), min(vels[1], pvels[1]))
            if keys[0] > keys[1] or vels[0] > vels[1] or not self._plays(ibag):
                continue
            zones.append(self._zone(ibag, gens, keys, vels))
        return zones

    def _plays(self, ibag: Any) -> bool:  # an sf2utils instrument bag (untyped)
        """Whether the zone's sample can sound: inside the sample data (else
        :class:`SoundFontError`), at an allowed rate (else too), not empty."""
        s = ibag.sample
        if not 0 <= s.start <= s.end <= self._n_samples:
            raise SoundFontError(
                f"{self.path}: sample {s.name!r} ({s.start}..{s.end}) lies outside the "
                f"sample data ({self._n_samples} samples)"
            )
        if not MIN_SF2_SAMPLE_RATE <= s.sample_rate <= MAX_SF2_SAMPLE_RATE:
            raise SoundFontError(
                f"{self.path}: sample {s.name!r} declares {s.sample_rate} Hz, outside "
                f"MIN_SF2_SAMPLE_RATE..MAX_SF2_SAMPLE_RATE = "
                f"{MIN_SF2_SAMPLE_RATE}..{MAX_SF2_SAMPLE_RATE}"
            )
        return s.end - s.start >= 2

    def _zone(self, ibag: Any, gens: dict, keys: tuple[int, int], vels: tuple[int, int]) -> Zone:
        s = ibag.sample
        looping = _short(gens, _SAMPLE_MODES, 0) & 1 == 1
        loop = None
        if looping:
            ls = s.start_loop + _short(gens, _START_LOOP_OFS, 0)
            ls += 32768 * _short(gens, _START_LOOP_COARSE, 0)
            le = s.end_loop + _short(gens, _END_LOOP_OFS, 0)
            le += 32768 * _short(gens, _END_LOOP_COARSE, 0)
            if 0 <= ls < le <= s.duration and le - ls >= 8:
                loop = (int(ls), int(le))
        root = _short(gens, _ROOT_KEY, -1)
        if not 0 <= root <= 127:
            root = min(127, max(0, s.original_pitch))
        tune = 100.0 * _short(gens, _COARSE_TUNE, 0) + _short(gens, _FINE_TUNE, 0)
        return Zone(
            name=s.name,
            key_range=keys,
            vel_range=vels,
            sample_rate=int(s.sample_rate),
            start=int(s.start),
            end=int(s.end),
            loop=loop,
            root_key=int(root),
            tune_cents=tune + s.pitch_correction,
            scale_tuning=float(_short(gens, _SCALE_TUNING, 100)),
            attenuation_db=max(0.0, _short(gens, _ATTENUATION, 0) / 10.0),
            attack_s=_timecents(gens, _ATTACK),
            hold_s=_timecents(gens, _HOLD),
            decay_s=_timecents(gens, _DECAY),
            sustain_db=min(100.0, _short(gens, _SUSTAIN, 0) / 10.0),
            release_s=min(MAX_RELEASE_S, _timecents(gens, _RELEASE)),
            filter_fc_cents=float(_short(gens, _FILTER_FC, _FC_OPEN)),
            filter_q_db=_short(gens, _FILTER_Q, 0) / 10.0,
        )

    def zones(self, bank: int, program: int, key: int, velocity: int | None = 100) -> list[Zone]:
        """Zones that sound for ``key`` at ``velocity`` (``None``: any) in (bank, program)."""
        return [
            z
            for z in self._zones.get((bank, program), [])
            if z.key_range[0] <= key <= z.key_range[1]
            and (velocity is None or z.vel_range[0] <= velocity <= z.vel_range[1])
            and not self._is_silent(z)
        ]

    def _is_silent(self, zone: Zone) -> bool:
        """Whether the zone's sample is all zeros (such zones never sound; checked when first
        asked, so only the samples that are played are read)."""
        key = (zone.start, zone.end)
        if key not in self._silent:
            self._silent[key] = not np.any(self.pool[zone.start : zone.end])
        return self._silent[key]

    def has_preset(self, bank: int, program: int) -> bool:
        """Whether the soundfont defines preset (bank, program)."""
        return (bank, program) in self._zones

    def sample(self, zone: Zone) -> np.ndarray:
        """The zone's raw sample, float32 mono, at ``zone.sample_rate``."""
        return np.asarray(self.pool[zone.start : zone.end], dtype=np.float32) / np.float32(32768)


def _layout(fh: BinaryIO, size: int, path: Path) -> tuple[int, int] | None:
    """Offset and size (bytes) of the sample data (``smpl``), from the RIFF chunk headers;
    :class:`SoundFontError` for a file that is no SoundFont 2 or whose header block
    (``pdta``) is bigger than :data:`rmod.limits.MAX_SF2_PDTA_BYTES`."""
    head = fh.read(12)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:] != b"sfbk":
        raise SoundFontError(f"{path}: not a SoundFont 2 file (no RIFF sfbk header)")
    end = min(size, 8 + struct.unpack("<I", head[4:8])[0])
    pos, smpl = 12, None
    for _ in range(_MAX_CHUNKS):
        fh.seek(pos)
        chunk = fh.read(12)
        if pos + 8 > end or len(chunk) < 8:
            break
        tag, n = struct.unpack("<4sI", chunk[:8])
        if tag == b"LIST" and chunk[8:] == b"pdta" and n > MAX_SF2_PDTA_BYTES:
            raise SoundFontError(
                f"{path}: a header block of {n} bytes, more than MAX_SF2_PDTA_BYTES = "
                f"{MAX_SF2_PDTA_BYTES}"
            )
        if tag == b"LIST" and chunk[8:] == b"sdta":
            sub, sub_end = pos + 12, min(end, pos + 8 + n)
            for _ in range(_MAX_CHUNKS):
                fh.seek(sub)
                sub_head = fh.read(8)
                if sub + 8 > sub_end or len(sub_head) < 8:
                    break
                sub_tag, sub_n = struct.unpack("<4sI", sub_head)
                if sub_tag == b"smpl":
                    smpl = (sub + 8, max(0, min(sub_n, size - sub - 8)))
                sub += 8 + sub_n + (sub_n & 1)
        pos += 8 + n + (n & 1)
    return smpl


def _check_hydra(pdta: dict, path: Path) -> None:
    """Refuse header records that point backwards or past their lists (each bag, generator
    and modulator then belongs to one preset or instrument, read once)."""
    pairs: tuple[tuple[str, str, str], ...] = (("Phdr", "bag", "Pbag"), ("Inst", "bag", "Ibag"))
    pairs += (("Pbag", "gen", "Pgen"), ("Pbag", "mod", "Pmod"))
    pairs += (("Ibag", "gen", "Igen"), ("Ibag", "mod", "Imod"))
    for records, field_name, target in pairs:
        index = [getattr(r, field_name) for r in pdta.get(records, [])]
        size = len(pdta.get(target, []))
        if any(b < a for a, b in zip(index, index[1:], strict=False)) or (
            index and index[-1] > size
        ):
            raise SoundFontError(
                f"{path}: not a readable SoundFont 2 file ({records} records point out of "
                f"order or past the {size} {target} records)"
            )


@functools.lru_cache(maxsize=8)
def load_soundfont(path: str | None = None) -> SoundFont:
    """Parse a soundfont once per process (``None``: the one pretty_midi ships)."""
    return SoundFont(path)


def cents_to_hz(cents: float) -> float:
    """SoundFont absolute cents to Hz (8.176 Hz x 2^(cents / 1200))."""
    return 8.175798915643707 * 2.0 ** (cents / 1200.0)


def lowpass(x: np.ndarray, fc_hz: float, q_db: float, sr: int) -> np.ndarray:
    """The SoundFont filter: a 2-pole resonant low-pass (RBJ biquad) at ``fc_hz``, with
    its resonance peak ``q_db`` dB above the DC gain (0 dB: Butterworth). Unchanged when
    the cutoff is at or above 0.45 ``sr``."""
    from scipy.signal import lfilter

    if fc_hz >= 0.45 * sr or x.size == 0:
        return x
    q = max(1 / np.sqrt(2), 10.0 ** (q_db / 20.0))
    w0 = 2 * np.pi * fc_hz / sr
    alpha = np.sin(w0) / (2 * q)
    cw = np.cos(w0)
    b = np.array([(1 - cw) / 2, 1 - cw, (1 - cw) / 2])
    a = np.array([1 + alpha, -2 * cw, 1 - alpha])
    return lfilter(b / a[0], a / a[0], x)


ENVELOPE_BLOCK = 32  # samples per envelope control point
SILENT_GAIN = 1e-4  # -80 dB: a voice is cut once its envelope stays below this


def _envelope_points(zone: Zone, n: int, note_off: int, sr: int) -> tuple[np.ndarray, np.ndarray]:
    """Envelope control points: sample indices (every :data:`ENVELOPE_BLOCK`) and gains."""
    ctrl = np.arange(0, n + ENVELOPE_BLOCK, ENVELOPE_BLOCK)
    t = ctrl / sr
    decay_rate = 96.0 / max(zone.decay_s, 1e-3)  # dB/s
    after_hold = np.clip(t - zone.attack_s - zone.hold_s, 0, None)
    db = -np.minimum(after_hold * decay_rate, zone.sustain_db)
    t_off = note_off / sr
    db_off = -min(max(0.0, t_off - zone.attack_s - zone.hold_s) * decay_rate, zone.sustain_db)
    released = t >= t_off
    db[released] = db_off - (t[released] - t_off) * (96.0 / max(zone.release_s, 1e-3))
    gain = 10.0 ** (np.maximum(db, -120.0) / 20.0)
    if zone.attack_s > 1.0 / sr:
        gain *= np.clip(t / zone.attack_s, 0.0, 1.0)
    return ctrl, gain


def _lerp(values: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """``values`` read at fractional indices ``pos`` (0 <= pos <= size - 1), linearly."""
    if values.size < 2:
        return np.full(pos.shape, float(values[0]) if values.size else 0.0)
    i = np.minimum(pos.astype(np.int64), values.size - 2)
    frac = pos - i
    return values[i] * (1.0 - frac) + values[i + 1] * frac


def envelope(zone: Zone, n: int, note_off: int, sr: int) -> np.ndarray:
    """Volume envelope (linear gain) of ``n`` samples with the key released at ``note_off``.

    Attack is linear; decay falls at 96 dB per ``decay_s`` down to ``-sustain_db``;
    after note-off the level falls at 96 dB per ``release_s``. Computed every
    :data:`ENVELOPE_BLOCK` samples and linearly interpolated in between.
    """
    _, gain = _envelope_points(zone, n, note_off, sr)
    return _lerp(gain, np.arange(n) / ENVELOPE_BLOCK)


def _audible_length(zone: Zone, n: int, note_off: int, sr: int) -> int:
    """Samples until the envelope has fallen below :data:`SILENT_GAIN` for good."""
    ctrl, gain = _envelope_points(zone, n, note_off, sr)
    loud = np.flatnonzero(gain > SILENT_GAIN)
    return 0 if loud.size == 0 else min(n, int(ctrl[loud[-1]]) + 2 * ENVELOPE_BLOCK)


def render_zone(
    sf: SoundFont,
    zone: Zone,
    key: float,
    velocity: int,
    note_s: float,
    sr: int,
    *,
    cents: float = 0.0,
    vibrato: tuple[float, float, float] | None = None,
    tail_s: float | None = None,
) -> np.ndarray:
    """Play one zone at MIDI ``key`` (fractional keys detune) for ``note_s`` seconds.

    ``cents``: extra pitch offset; ``vibrato``: (rate Hz, depth cents, delay s), a sine
    pitch modulation that fades in over 0.2 s after the delay.
    The output (float32 mono at ``sr`` Hz) lasts ``note_s`` + the release (or
    ``tail_s``), shorter if a non-looping sample ends first or the envelope has
    fallen below -80 dB.
    """
    data = sf.sample(zone)
    tail = min(zone.release_s, MAX_RELEASE_S) if tail_s is None else tail_s
    note_off = int(round(note_s * sr))
    n = int(round((note_s + tail) * sr))
    step = (
        zone.sample_rate
        / sr
        * 2.0 ** (((key - zone.root_key) * zone.scale_tuning + zone.tune_cents + cents) / 1200.0)
    )
    if zone.loop is None:
        n = min(n, int(np.ceil((data.size - 1) / step)))
    n = _audible_length(zone, max(n, 0), note_off, sr)
    if vibrato is None:
        pos = np.arange(n) * step
    else:
        rate, depth, delay = vibrato
        t = np.arange(n) / sr
        cents_t = depth * np.clip((t - delay) / 0.2, 0, 1) * np.sin(2 * np.pi * rate * t)
        ratio = step * 2.0 ** (cents_t / 1200.0)
        pos = np.concatenate([[0.0], np.cumsum(ratio[:-1])]) if n else np.zeros(0)
    if zone.loop is not None:
        ls, le = zone.loop
        over = pos >= le
        pos[over] = ls + np.mod(pos[over] - ls, le - ls)
    else:
        pos = pos[pos < data.size - 1]
    out = _lerp(data, pos)
    if zone.filtered:
        fc = zone.filter_fc_cents + _VEL_TO_FC * (1.0 - velocity / 127.0)
        out = lowpass(out, cents_to_hz(fc), zone.filter_q_db, sr)
    out *= envelope(zone, out.size, note_off, sr)
    gain = 10.0 ** (-zone.attenuation_db / 20.0) * (velocity / 127.0) ** 2
    return (out * gain).astype(np.float32)


def render_note(
    sf: SoundFont,
    bank: int,
    program: int,
    key: int,
    velocity: int,
    note_s: float,
    sr: int,
    *,
    cents: float = 0.0,
    vibrato: tuple[float, float, float] | None = None,
    tail_s: float | None = None,
) -> np.ndarray:
    """Sum of every zone that sounds for (``key``, ``velocity``): float32 mono at ``sr`` Hz."""
    parts = [
        render_zone(sf, z, key, velocity, note_s, sr, cents=cents, vibrato=vibrato, tail_s=tail_s)
        for z in sf.zones(bank, program, key, velocity)
    ]
    if not parts:
        return np.zeros(0, dtype=np.float32)
    out = np.zeros(max(p.size for p in parts), dtype=np.float32)
    for p in parts:
        out[: p.size] += p
    return out
