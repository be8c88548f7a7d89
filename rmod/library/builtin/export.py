"""Turn a SoundFont 2 file into library folders (``rmod-library soundfont``).

* Drum kits (bank-128 presets; every preset of a font without bank 128, such as the AVL
  Drumkits): every distinct velocity layer of the General MIDI keys of kick (35, 36),
  snare (38, 39, 40) and hi-hat (42, 44, 46), played as recorded, into
  ``OUT/<class>/<family>/<kit>-k<key>-v<velocity>.flac``. One folder per family (the
  layers of a sound and every kit or key that shares a sample with it, see
  :mod:`rmod.library.builtin.drums`), so ``rmod-library index OUT --group-by folder`` keeps a
  family in one split.
* Melodic programs (bank 0) of the classes' General MIDI groups
  (:data:`rmod.library.builtin.loops.PROGRAMS`): ``loops_per_program`` random phrase loops each
  (overdrive and air drawn as in the built-in library), into
  ``OUT/<class>/p<program>-<name>/<class>-<k>.flac``.

Everything is drawn from ``SeedSequence([seed, program, k])`` generators, so the same
font and seed give the same files. Files are mono 16-bit FLAC, written atomically.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rmod import DRUMS, INSTRUMENTS
from rmod.audio import encode_audio
from rmod.library.builtin.drums import drum_bases, sampled_oneshot
from rmod.library.builtin.fonts import Font
from rmod.library.builtin.loops import PROGRAMS, program_loop, until_sound
from rmod.library.builtin.sf2 import SoundFontError, load_soundfont
from rmod.limits import real_path
from rmod_dose_common.fileio import atomic_write_bytes


@dataclass
class ExportReport:
    """Files written per class, and programs skipped with the reason."""

    counts: dict[str, int] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "x"


def _level(x: np.ndarray) -> np.ndarray:
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    return (x * (10 ** (-1 / 20) / peak)).astype(np.float32) if peak > 0 else x


def _write(path: Path, audio: np.ndarray, sr: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, encode_audio(audio[None, :], sr, "flac"))


def export_soundfont(
    sf2: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    loops_per_program: int = 2,
    min_loop_s: float = 4.5,
    seed: int = 0,
    sample_rate: int = 44100,
) -> ExportReport:
    """Write the library folders of ``sf2`` under ``out_dir`` (module docstring).

    Raises :class:`rmod.library.builtin.sf2.SoundFontError` naming the file when it cannot be read.
    """
    path = str(real_path(sf2, "SF2"))
    sf = load_soundfont(path)
    role = "gm" if any(bank == 128 for bank, _ in sf.names) else "kits"
    font = Font(path, role, 0, os.path.getsize(path))
    out_dir = real_path(out_dir, "--out")
    out = Path(out_dir)
    report = ExportReport({c: 0 for c in DRUMS + INSTRUMENTS})
    for cls in DRUMS:
        for base in drum_bases(cls, (font,)):
            kit = _slug(sf.names[(base.bank, base.program)])
            family = _slug(base.family.split("/", 1)[1])
            name = f"{kit}-k{base.key}-v{base.velocity:03d}.flac"
            x = sampled_oneshot(cls, base, 0, np.random.default_rng(0), sample_rate)
            _write(out / cls / family / name, _level(x), sample_rate)
            report.counts[cls] += 1
    if role == "kits":
        return report
    for cls in INSTRUMENTS:
        for program in sorted({p for _, group in PROGRAMS[cls] for p in group}):
            if not sf.has_preset(0, program):
                report.skipped.append(f"{cls} program {program}: not in the soundfont")
                continue
            folder = out / cls / f"p{program:03d}-{_slug(sf.names[(0, program)])}"
            for k in range(loops_per_program):
                rng = np.random.default_rng(np.random.SeedSequence([seed, program, k]))

                def loop(
                    cls: str = cls, rng: np.random.Generator = rng, program: int = program
                ) -> tuple[np.ndarray, str]:
                    return program_loop(cls, rng, path, program, min_loop_s, sample_rate)

                try:
                    x, _ = until_sound(loop, f"{path}: {cls} program {program}", sample_rate)
                except SoundFontError as exc:
                    why = (
                        str(exc)
                        .removeprefix(f"{path}: ")
                        .removeprefix(f"{cls} program {program}: ")
                    )
                    report.skipped.append(f"{cls} program {program}: {why}")
                    break
                _write(folder / f"{cls}-{k}.flac", _level(x), sample_rate)
                report.counts[cls] += 1
    return report
