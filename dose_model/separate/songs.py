"""Songs in, stem files out: what `dose-separate` does around `LarsNet.separate`.

Per song: read it as float32 stereo at 44.1 kHz (mono duplicated to both channels; another
rate resampled with SciPy's polyphase ``resample_poly``), separate it, and write

    OUT/<name>.<stem>.wav    float32 WAV, 44.1 kHz, stereo, as many samples as the song at 44.1 kHz

for each stem asked for, each atomically (a temporary file beside it, then a rename). Song
names follow `dose_model.extract.songs.find_songs`: a file given by its stem, a file found in a
folder by its path below that folder without the suffix (so OUT mirrors the input tree).
Files that lie inside OUT are left out of the songs (`outside`), so a rerun with OUT inside
an input folder does not separate its own outputs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from dose_model.errors import DoseError
from dose_model.extract.songs import Song, output_path
from dose_model.separate.larsnet import SAMPLE_RATE, LarsNet, LarsNetError, resample
from rmod_dose_common.audio import AudioReadError, read_audio
from rmod_dose_common.fileio import atomic_write


@dataclass(frozen=True)
class SeparatedSong:
    """What was written for one song: its source, output name, length in samples at 44.1 kHz,
    and stem -> the file written."""

    path: Path
    name: str
    samples: int
    files: dict[str, Path]


def outside(songs: Sequence[Song], out: str | Path) -> tuple[list[Song], list[Song]]:
    """(songs that lie outside the folder ``out``, songs inside it), each in input order."""
    root = Path(out).resolve()
    kept: list[Song] = []
    inside: list[Song] = []
    for song in songs:
        (inside if song.path.resolve().is_relative_to(root) else kept).append(song)
    return kept, inside


class SongAudioError(AudioReadError, LarsNetError):
    """A song cannot be read for separation (``path``, ``reason``)."""


def read_stereo(path: str | Path) -> np.ndarray:
    """A whole audio file as float32 ``[2, samples]`` at 44.1 kHz (see the module text),
    through the bounded reader (`rmod_dose_common.audio`). Raises `SongAudioError` (a
    `LarsNetError`) naming the file if it is missing, refused, undecodable, empty, has more
    than two channels or holds non-finite samples."""
    data, rate = read_audio(path, SongAudioError)
    return as_stereo(data, rate, path)


def as_stereo(data: np.ndarray, rate: int, path: str | Path) -> np.ndarray:
    """Decoded float32 ``[channels, samples]`` at ``rate`` Hz -> what `read_stereo` gives for
    that file; `SongAudioError` naming ``path`` for more than two channels."""
    if data.shape[0] > 2:
        raise SongAudioError(path, f"{data.shape[0]} channels; LarsNet takes mono or stereo")
    audio = np.repeat(data, 2 // data.shape[0], axis=0)
    return resample(audio, rate, SAMPLE_RATE) if rate != SAMPLE_RATE else audio


def write_stem(path: str | Path, audio: np.ndarray) -> None:
    """Write float32 ``[2, samples]`` as a 44.1 kHz float32 WAV, atomically."""
    data = np.ascontiguousarray(np.asarray(audio, dtype=np.float32).T)
    atomic_write(path, lambda fh: sf.write(fh, data, SAMPLE_RATE, format="WAV", subtype="FLOAT"))


def separate_song(
    song: Song,
    larsnet: LarsNet,
    out: str | Path,
    stems: Sequence[str],
    wiener_alpha: float | None = None,
) -> SeparatedSong:
    """Read, separate and write one song (see the module text). Raises `LarsNetError` naming
    the song, or ``OSError`` when a file cannot be written."""
    out = Path(out)
    mixture = read_stereo(song.path)
    separated = larsnet.separate(mixture, wiener_alpha=wiener_alpha, stems=stems)
    files = {}
    for stem in stems:
        files[stem] = output_path(out, song.name, f".{stem}.wav")
        write_stem(files[stem], separated[stem])
    return SeparatedSong(song.path, song.name, mixture.shape[-1], files)


def separate_songs(
    songs: Sequence[Song],
    larsnet: LarsNet,
    out: str | Path,
    stems: Sequence[str],
    wiener_alpha: float | None = None,
    progress: Callable[[int], None] | None = None,
) -> Iterator[SeparatedSong | LarsNetError]:
    """`separate_song` for each song in order; yields its `SeparatedSong`, or the
    `LarsNetError` that skipped it (an unreadable or unwritable song); ``progress(n)`` after
    n songs. Raises `LarsNetError` before any song when the arguments cannot work (a stem
    not loaded, Wiener masks without all five stems: `LarsNet.check`)."""
    stems = larsnet.check(stems, wiener_alpha)
    for done, song in enumerate(songs, start=1):
        try:
            yield separate_song(song, larsnet, out, stems, wiener_alpha)
        except LarsNetError as err:
            yield err
        except DoseError as err:
            yield LarsNetError(str(err))
        except OSError as err:
            yield LarsNetError(f"{song.path}: cannot write its stems ({err})")
        if progress is not None:
            progress(done)
