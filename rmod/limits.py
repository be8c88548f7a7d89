"""Every size limit rmod applies to files it does not trust, and the checks that apply them.

One place for the numbers: each is a named constant that the error message quotes
(``... MAX_MIDI_BYTES = 1048576``), and ``docs/THREATS.md`` lists each with its value and the
test that holds it. The checks here are the small, local ones every reader of MIDI,
SoundFont, manifest and JSON files shares:

* :func:`real_path`: a path resolved, a symbolic link loop being a one-line error instead of
  Python's ``RuntimeError``;
* :func:`open_regular` / :func:`read_regular`: only regular files are opened (a FIFO, a
  device such as ``/dev/zero`` or a folder is refused before a byte is read), no bigger than
  a limit;
* :func:`bounded_lines`: the lines of a stream, each at most a limit long, blank lines
  counted, so a line-less or blank-line bomb (a small gzip that inflates to gigabytes)
  stops early.
"""

from __future__ import annotations

import errno
import gzip
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, cast

from rmod.errors import RmodError

# --- MIDI files (Groove variant, rmod.example.groove) -----------------------------------
#: Largest MIDI file read (bytes). The Groove MIDI Dataset's files are tens of kB; a 1 MiB
#: file of notes parses in about 4 s and 150 MB.
MAX_MIDI_BYTES = 1 << 20
#: Most mapped drum notes one MIDI file may hold.
MAX_MIDI_NOTES = 100_000
#: Latest onset of a mapped drum note (seconds of the file's own timeline, tempo map applied).
MAX_INFO_CSV_BYTES = 16 << 20
"""Bytes of a Groove folder's ``info.csv`` (the Groove MIDI Dataset's is 0.2 MB)."""
MAX_MIDI_SECONDS = 3600.0

# --- SoundFont 2 files (rmod.library.builtin.sf2) ------------------------------------
#: Largest preset/instrument/sample header block (the ``pdta`` chunk, bytes). FluidR3's is
#: 0.6 MB and MuseScore General Full's 0.5 MB.
MAX_SF2_PDTA_BYTES = 8 << 20
#: Most zones (preset zone x instrument zone pairs that sound) a soundfont may define in all.
#: FluidR3 has 16,912, MuseScore General Full 13,048, TimGM6mb 2,063.
MAX_SF2_ZONES = 100_000
#: Sample rates a soundfont sample may declare (Hz).
MIN_SF2_SAMPLE_RATE, MAX_SF2_SAMPLE_RATE = 400, 384_000

# --- manifests and JSON ------------------------------------------------------------------
#: Largest library manifest (bytes; rmod.library.catalog). A million entries take ~300 MB.
MAX_LIBRARY_BYTES = 1 << 30
#: Longest line of a library or dataset manifest (bytes, after gzip). A dataset row is ~3 kB.
MAX_LINE_BYTES = 1 << 20
#: Most blank lines a manifest may hold (rmod writes none).
MAX_BLANK_LINES = 1000
#: Largest ``build.json`` or ``example.json`` (bytes).
MAX_JSON_BYTES = 64 << 20
#: Largest file of a dataset row that ``rmod-verify`` reads whole to decode and hash (bytes; a
#: 4 s stereo 16-bit mixture is 1.4 MB).
MAX_ROW_FILE_BYTES = 1 << 30
#: Longest loop slice a drawn example may name (samples: an hour at 44.1 kHz; the recipe's own
#: bounds, checked afterwards, are far smaller), so no arithmetic overflows on a hostile row.
MAX_SLICE_SAMPLES = 3600 * 44100


class FileRefused(RmodError, OSError):
    """A file or folder refused before it is read: not a regular file, too big, a symbolic
    link loop. The message names the path and, for a size, the limit."""


def real_path(path: str | os.PathLike, what: str = "") -> Path:
    """``path`` made absolute with every symbolic link resolved (a missing tail is kept as
    written). A link loop is :class:`FileRefused` naming the path (and ``what`` it is)."""
    try:
        return Path(path).resolve()
    except RuntimeError:  # Python < 3.13 reports a loop this way
        raise FileRefused(f"{path}: a symbolic link loop{_for(what)}") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise FileRefused(f"{path}: a symbolic link loop{_for(what)}") from None
        raise


def _for(what: str) -> str:
    return f" ({what})" if what else ""


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def check_size(path: str | os.PathLike, size: int, limit: int, name: str) -> None:
    """:class:`FileRefused` when ``size`` (bytes) exceeds ``limit``, naming the constant."""
    if size > limit:
        raise FileRefused(f"{path}: {size} bytes, more than {name} = {limit}")


def open_regular(
    path: str | os.PathLike, limit: int | None = None, name: str = "", what: str = ""
) -> BinaryIO:
    """``path`` opened for reading bytes, when it is a regular file of at most ``limit``
    bytes (``name``: the limit's constant, quoted by the error). Anything else (a FIFO, a
    device, a folder, a link loop, a bigger file) is :class:`FileRefused`; a missing or
    unreadable file is the system's ``OSError``. Opening never blocks (a FIFO is refused
    by its type, not waited on)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise FileRefused(f"{path}: a symbolic link loop{_for(what)}") from None
        if exc.errno == errno.EISDIR:
            raise FileRefused(f"{path}: a folder, not a file{_for(what)}") from None
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise FileRefused(f"{path}: {_kind(info.st_mode)}, not a regular file{_for(what)}")
        if limit is not None:
            check_size(path, info.st_size, limit, name)
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


class _GzipOwner(gzip.GzipFile):
    """A gzip reader that closes the file it reads from when it closes."""

    def __init__(self, raw: BinaryIO) -> None:
        super().__init__(fileobj=raw, mode="rb")
        self._raw = raw

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._raw.close()


def open_stream(path: str | os.PathLike, what: str = "") -> BinaryIO:
    """A regular file opened for reading bytes (see :func:`open_regular`), gunzipped as it is
    read when its name ends in ``.gz``."""
    raw = open_regular(path, what=what)
    if not str(path).endswith(".gz"):
        return raw
    try:
        return cast(BinaryIO, _GzipOwner(raw))
    except BaseException:
        raw.close()
        raise


def read_regular(path: str | os.PathLike, limit: int, name: str, what: str = "") -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes (see :func:`open_regular`);
    a file that grows past the limit while it is read is refused too."""
    with open_regular(path, limit, name, what) as fh:
        data = fh.read(limit + 1)
    check_size(path, len(data), limit, name)
    return data


def bounded_lines(
    fh: BinaryIO,
    where: str,
    max_line: int = MAX_LINE_BYTES,
    max_blank: int = MAX_BLANK_LINES,
    *,
    blank: bool = False,
) -> Iterator[tuple[int, bytes]]:
    """``(line number, raw line)`` of a binary stream, blank lines left out unless
    ``blank``. A line longer than ``max_line`` bytes or more than ``max_blank`` blank lines
    is :class:`FileRefused` naming ``where`` and the line, before more is read.
    ``OSError``/``EOFError`` of the stream (a damaged gzip) pass through."""
    lineno = blanks = 0
    while True:
        raw = fh.readline(max_line + 1)
        if not raw:
            return
        lineno += 1
        if len(raw) > max_line:
            raise FileRefused(
                f"{where}:{lineno}: a line longer than MAX_LINE_BYTES = {max_line} bytes"
            )
        if not raw.strip():
            blanks += 1
            if blanks > max_blank:
                raise FileRefused(
                    f"{where}:{lineno}: more than MAX_BLANK_LINES = {max_blank} blank lines"
                )
            if not blank:
                continue
        yield lineno, raw
