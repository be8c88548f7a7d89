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

A file ``$RMOD_SOUNDFONTS`` names (or finds in a folder it names) must be a readable
soundfont: a link loop, a FIFO or device, or a file the sampler refuses (it is parsed once
per version, see below) is a one-line :class:`rmod.library.builtin.sf2.SoundFontError`
naming it, for every command that uses the built-in library. In the system folders a known
file that cannot be opened (a link loop, a FIFO) is passed over with a warning; one the
sampler refuses stops the library's generation with one line naming it.

``espeak-ng`` (spoken vocal loops) is used when it is on the PATH, unless
``$RMOD_ESPEAK`` is ``0`` (or ``off``, ``no``, ``false``): the switch that tests use to make
the library of a machine without it.

:func:`find_fonts` returns :class:`Font` records with each file's SHA-256; :func:`sources_tag`
digests their names, hashes and roles (plus the ``espeak-ng`` version), so the built-in
library's cache folder changes whenever the machine's sources change. A font's SHA-256 (and
the role of an unrecognized one, which takes a parse) is computed once per file version and
kept in ``<cache root>/soundfonts.json``, keyed by the file's real path, size and
modification time: loading the built-in library neither hashes nor parses a font again.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

from rmod.library.builtin.sf2 import SoundFontError, default_sf2_path, load_soundfont
from rmod.limits import MAX_JSON_BYTES, FileRefused, open_regular, read_regular, real_path

log = logging.getLogger(__name__)

ENV_VAR = "RMOD_SOUNDFONTS"
ESPEAK_VAR = "RMOD_ESPEAK"
FACTS_FILE = "soundfonts.json"
SEARCH_DIRS = ("/usr/share/sounds/sf2", "/usr/share/soundfonts", "/usr/local/share/soundfonts")
#: file name -> (role, rank): lower ranks are preferred for melodic loops.
KNOWN = {
    "Black_Pearl_4_LV2.sf2": ("kits", 0),
    "Red_Zeppelin_4_LV2.sf2": ("kits", 0),
    "MuseScore_General.sf2": ("gm", 0),
    "MuseScore_General-Full.sf2": ("gm", 0),
    "MuseScore_General_Full.sf2": ("gm", 0),  # the name Debian's package installs
    "FluidR3_GM.sf2": ("gm", 1),
    "TimGM6mb.sf2": ("gm", 9),
}


@dataclass(frozen=True)
class Font:
    """One soundfont the library uses: path, ``role`` (``"kits"``: drum kits only,
    ``"gm"``: General MIDI), preference ``rank`` for loops (lower first), size in bytes
    and SHA-256 of its bytes (empty when not computed)."""

    path: str
    role: str
    rank: int
    size: int
    sha256: str = ""

    @property
    def name(self) -> str:
        """The file name, which the library's ``source`` fields quote."""
        return Path(self.path).name


def _candidates() -> tuple[list[Path], bool]:
    """Soundfont paths to consider, and whether ``$RMOD_SOUNDFONTS`` named them."""
    env = os.environ.get(ENV_VAR)
    named = env is not None
    roots = (
        [Path(p) for p in env.split(os.pathsep) if p] if env is not None else map(Path, SEARCH_DIRS)
    )
    files: list[Path] = []
    for root in roots:
        try:
            mode = os.stat(root).st_mode
        except OSError as exc:
            if named and exc.errno == errno.ELOOP:
                raise SoundFontError(f"{root}: a symbolic link loop (named by {ENV_VAR})") from None
            continue  # nothing there
        if not stat.S_ISDIR(mode):
            files.append(root)
            continue
        try:
            names = sorted(os.listdir(root))
        except OSError as exc:
            if named:
                reason = exc.strerror or exc
                raise SoundFontError(
                    f"{root}: cannot list ({reason}; named by {ENV_VAR})"
                ) from None
            continue
        files += [root / name for name in names if name.lower().endswith(".sf2")]
    return files, named


def find_fonts() -> tuple[Font, ...]:
    """The soundfonts to use, drum-kit fonts first, then General MIDI fonts by rank."""
    candidates, named = _candidates()
    facts = _Facts()
    seen: set[str] = set()
    fonts = []
    for path, from_env in [*((p, named) for p in candidates), (default_sf2_path(), False)]:
        try:
            real = real_path(path)
            if not from_env and real.name not in KNOWN:
                continue  # only known files from the system folders
            with open_regular(real, what="soundfont") as fh:
                info = os.fstat(fh.fileno())
        except OSError as exc:  # FileRefused included
            reason = str(exc) if isinstance(exc, FileRefused) else f"{path}: {exc.strerror or exc}"
            if from_env:
                raise SoundFontError(f"{reason} (named by {ENV_VAR})") from None
            if path.name in KNOWN:
                log.warning("soundfont %s passed over: %s", path, reason)
            continue
        if real.name in seen:
            continue
        try:
            # A font the environment names is parsed (checked) once per version, known or not.
            sha256, role = facts.of(real, info, parse=from_env or real.name not in KNOWN)
        except SoundFontError as exc:
            if from_env:
                raise SoundFontError(f"{exc} (named by {ENV_VAR})") from None
            raise
        seen.add(real.name)
        known = KNOWN.get(real.name)
        if known is None:
            assert role is not None  # a font not in KNOWN is always parsed, so its role is known
            known = (role, 5)
        kind, rank = known
        fonts.append(Font(str(real), kind, rank, info.st_size, sha256))
    facts.save()
    return tuple(sorted(fonts, key=lambda f: (f.role != "kits", f.rank, f.name)))


def font_role(path: str | os.PathLike) -> str:
    """``"gm"`` when the soundfont has a bank-128 (drum kit) preset beside others, else
    ``"kits"`` (every preset is a kit); parses the file."""
    sf = load_soundfont(str(path))
    return "gm" if any(bank == 128 for bank, _ in sf.names) else "kits"


class _Facts:
    """SHA-256 and role of soundfonts by (real path, size, mtime), kept in the cache root."""

    def __init__(self) -> None:
        from rmod.library.builtin import cache_root  # here: that package imports this one

        self.path = cache_root() / FACTS_FILE
        self.changed = False
        try:
            data = json.loads(read_regular(self.path, MAX_JSON_BYTES, "MAX_JSON_BYTES"))
            self.entries = data["fonts"] if data.get("version") == 1 else {}
            if not isinstance(self.entries, dict):
                self.entries = {}
        except (OSError, ValueError, TypeError, KeyError, AttributeError, RecursionError):
            self.entries = {}  # absent or damaged: rebuilt

    def of(self, real: Path, info: os.stat_result, parse: bool) -> tuple[str, str | None]:
        """``(sha256, role or None)`` of the file ``real`` whose ``os.stat`` is ``info``; with
        ``parse``, the role is known (the file parsed once: a bad one raises
        :class:`rmod.library.builtin.sf2.SoundFontError`)."""
        key = str(real)
        entry = self.entries.get(key)
        if not (
            isinstance(entry, dict)
            and entry.get("size") == info.st_size
            and entry.get("mtime_ns") == info.st_mtime_ns
            and isinstance(entry.get("sha256"), str)
        ):
            entry = {"size": info.st_size, "mtime_ns": info.st_mtime_ns, "sha256": _sha256(real)}
            self.entries[key] = entry
            self.changed = True
        if parse and entry.get("role") not in ("kits", "gm"):
            entry["role"] = font_role(real)
            self.changed = True
        return entry["sha256"], entry.get("role")

    def save(self) -> None:
        """Write the facts back when they changed (a cache: a failed write is ignored)."""
        if not self.changed:
            return
        from rmod_dose_common.fileio import atomic_write_text

        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            text = json.dumps({"version": 1, "fonts": self.entries}, indent=1, sort_keys=True)
            atomic_write_text(self.path, text + "\n")
        except OSError as exc:
            log.debug("could not write %s: %s", self.path, exc)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open_regular(path, what="soundfont") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def espeak_version() -> str | None:
    """``espeak-ng``'s version line when the program is installed and ``$RMOD_ESPEAK`` does
    not switch it off, else ``None``."""
    if os.environ.get(ESPEAK_VAR, "").strip().lower() in ("0", "off", "no", "false"):
        return None
    exe = shutil.which("espeak-ng")
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip().split(" Data at:")[0] or None


def sources_tag(fonts: tuple[Font, ...], espeak: str | None) -> str:
    """Ten hex digits naming the sources: each font's name, SHA-256 (its size when the hash
    is unknown) and role, and espeak's version."""
    text = "|".join(f"{f.name}:{f.sha256 or f.size}:{f.role}" for f in fonts)
    return hashlib.sha256(f"{text}|espeak:{espeak}".encode()).hexdigest()[:10]
