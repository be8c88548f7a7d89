"""Which soundfonts the built-in library draws from: the best ones installed on the machine.

Search order (the first of each name wins; symbolic links are resolved so one file is
used once):

1. ``$RMOD_SOUNDFONTS``: a ``os.pathsep``-separated list of SF2 files or folders. When
   set, only these are searched (set it empty to use the fallback alone).
2. Otherwise Debian's sound-font folders: :data:`SEARCH_DIRS`.

Recognized files (:data:`KNOWN`): the AVL Drumkits of ``avldrums.lv2-soundfont`` (drum
kits only), FluidR3 of ``fluid-soundfont-gm`` and MuseScore General of
``musescore-general-soundfont-lossless`` (General MIDI: kits in bank 128, melodic
programs in bank 0). A file named in ``$RMOD_SOUNDFONTS`` that is not recognized is used
as a drum-kit font when it has no bank-128 preset and as a General MIDI font otherwise.
The soundfont ``pretty_midi`` ships (TimGM6mb) is always used too, last, so the library
exists on every machine.

:func:`find_fonts` returns :class:`Font` records; :func:`sources_tag` digests their names and
sizes (plus the ``espeak-ng`` version when it is installed), so the built-in library's
cache folder changes whenever the machine's sources change.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from rmod.library.builtin.sf2 import SoundFontError, default_sf2_path, load_soundfont

ENV_VAR = "RMOD_SOUNDFONTS"
SEARCH_DIRS = ("/usr/share/sounds/sf2", "/usr/share/soundfonts", "/usr/local/share/soundfonts")
#: file name -> (role, rank): lower ranks are preferred for melodic loops.
KNOWN = {
    "Black_Pearl_4_LV2.sf2": ("kits", 0),
    "Red_Zeppelin_4_LV2.sf2": ("kits", 0),
    "MuseScore_General.sf2": ("gm", 0),
    "MuseScore_General-Full.sf2": ("gm", 0),
    "FluidR3_GM.sf2": ("gm", 1),
    "TimGM6mb.sf2": ("gm", 9),
}


@dataclass(frozen=True)
class Font:
    """One soundfont the library uses: path, ``role`` (``"kits"``: drum kits only,
    ``"gm"``: General MIDI), preference ``rank`` for loops (lower first), size in bytes."""

    path: str
    role: str
    rank: int
    size: int

    @property
    def name(self) -> str:
        """The file name, which the library's ``source`` fields quote."""
        return Path(self.path).name


def _candidates() -> list[Path]:
    env = os.environ.get(ENV_VAR)
    roots = [Path(p) for p in env.split(os.pathsep) if p] if env is not None else []
    if env is None:
        roots = [Path(d) for d in SEARCH_DIRS]
    files: list[Path] = []
    for root in roots:
        if root.is_file():
            files.append(root)
        elif root.is_dir():
            files += sorted(p for p in root.iterdir() if p.suffix.lower() == ".sf2")
    return files


def _role(path: Path) -> tuple[str, int] | None:
    if path.name in KNOWN:
        return KNOWN[path.name]
    if os.environ.get(ENV_VAR) is None:
        return None  # only known files from the system folders
    try:
        sf = load_soundfont(str(path))
    except SoundFontError:
        return None
    return ("gm", 5) if any(bank == 128 for bank, _ in sf.names) else ("kits", 5)


def find_fonts() -> tuple[Font, ...]:
    """The soundfonts to use, drum-kit fonts first, then General MIDI fonts by rank."""
    seen: set[str] = set()
    fonts = []
    for path in [*_candidates(), default_sf2_path()]:
        real = path.resolve()
        if real.name in seen or not real.is_file():
            continue
        role = _role(real)
        if role is None:
            continue
        seen.add(real.name)
        fonts.append(Font(str(real), role[0], role[1], real.stat().st_size))
    return tuple(sorted(fonts, key=lambda f: (f.role != "kits", f.rank, f.name)))


def espeak_version() -> str | None:
    """``espeak-ng``'s version line when the program is installed, else ``None``."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip().split(" Data at:")[0] or None


def sources_tag(fonts: tuple[Font, ...], espeak: str | None) -> str:
    """Ten hex digits naming the sources: each font's name and size, and espeak's version."""
    text = "|".join(f"{f.name}:{f.size}:{f.role}" for f in fonts) + f"|espeak:{espeak}"
    return hashlib.sha256(text.encode()).hexdigest()[:10]
