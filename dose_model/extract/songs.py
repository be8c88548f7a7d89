"""Songs in, one-shot files out: what `dose-extract` does around `dose_model.extract.extractor`.

Per song: stream it as mono at the codec's rate (`dose_model.dataset.audio.mono_blocks`);
choose ``windows`` 4 s clips by drum activity (or one at a given start) and decode them; scale
each clip to the training mixtures' peak (`dose_model.extract.shaping.MIXTURE_PEAK_DBFS`);
let every drum's model produce ``candidates`` samples per clip; rank a drum's candidates of all
the song's clips by confidence (mean token log-probability); finish them (tail trim, fade,
peak: `dose_model.extract.shaping.Finish`); write

    OUT/<name>.<drum>.wav                     the best candidate
    OUT/candidates/<name>.<drum>.<rank>.wav   the others, rank 2, 3, ... (with K x N > 1)
    OUT/<name>.extract.json                   clips, settings, every candidate's score

Songs given as files are named by their stem; songs found in a folder (recursively) by their
path below that folder without the suffix, so the output tree mirrors the input tree. The search
leaves out OUT when it lies inside the folder (so a rerun never extracts its own outputs) and
refuses a folder that is OUT or lies inside it; a file found in a folder that is a link to a
file out of that folder is skipped with a report, never read. Every output path is checked to
lie inside OUT before anything is written.

Memory does not grow with a song's length: the song is decoded three times as a stream of
blocks (the loudest STFT bin, the flux of every frame, then the chosen clips), keeping a few
blocks, the flux (one float64 per 512 samples) and the clips. The clips, activities and files
are the same as from the whole song decoded at once.

Drum activity of a clip: the mean, over the clip's STFT frames (1024-point Hann window, hop
512), of the positive spectral flux: the sum over frequency bins of the rises in dB
(floored 80 dB below the song's loudest bin) from one frame to the next. Onsets of drums raise
many bins at once; sustained notes and pads, however loud, add little.
"""

from __future__ import annotations

import contextlib
import glob
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from dose_model.dataset.audio import RowAudioError, mono_blocks, read_clips
from dose_model.extract.extractor import (
    WINDOW_S,
    ExtractError,
    ExtractOptions,
    Extractor,
    OneShot,
)
from dose_model.extract.shaping import (
    MIXTURE_PEAK_DBFS,
    Finish,
    normalize_peak,
    peak_dbfs,
    wav_bytes,
)
from rmod_dose_common.fileio import atomic_write_bytes, atomic_write_text, sha256_file

GRID_S = 0.5
"""Step between the candidate clip starts of the window search."""
AUDIO_SUFFIXES = (".wav", ".flac", ".aif", ".aiff", ".ogg", ".oga", ".mp3", ".opus")
"""Files a folder search picks up (case-insensitive)."""
FLUX_FFT, FLUX_HOP, FLUX_FLOOR_DB = 1024, 512, 80.0
FLUX_FRAMES_PER_FFT = 256
"""STFT frames transformed per call (a block's spectrum: 2 MiB of complex128)."""


@dataclass(frozen=True)
class Song:
    """An input file and its output ``name`` (a relative POSIX path without suffix); ``folder``
    is the folder it was found in (None for a file given by itself): it must stay inside it."""

    path: Path
    name: str
    folder: Path | None = None


def find_songs(paths: Sequence[str | Path], out: str | Path | None = None) -> list[Song]:
    """Files as given (named by stem) and, for folders, every audio file below them (sorted,
    named by their path below the folder), leaving out whatever lies in ``out`` (the output
    folder). Raises `ExtractError` when two songs would write the same files, a folder holds
    no audio, or a folder is ``out`` or lies inside it."""
    songs: list[Song] = []
    out_real = Path(out).resolve() if out is not None else None
    for given in map(Path, paths):
        if given.is_dir():
            if out_real is not None and given.resolve().is_relative_to(out_real):
                raise ExtractError(
                    f"{given}: the song folder is the output folder {out} or lies inside it; "
                    "give an --out outside it (one inside the song folder is left out of the "
                    "search)"
                )
            found = sorted(
                p
                for p in given.rglob("*")
                if p.suffix.lower() in AUDIO_SUFFIXES
                and p.is_file()
                and not (out_real is not None and p.resolve().is_relative_to(out_real))
            )
            if not found:
                raise ExtractError(f"{given}: no audio files ({', '.join(AUDIO_SUFFIXES)}) in it")
            songs += [
                Song(p, p.relative_to(given).with_suffix("").as_posix(), given) for p in found
            ]
        else:
            songs.append(Song(given, given.stem))
    names: dict[str, Path] = {}
    for song in songs:
        if song.name in names:
            raise ExtractError(
                f"{names[song.name]} and {song.path} would both write {song.name}.<drum>.wav; "
                "extract them into different --out folders"
            )
        names[song.name] = song.path
    return songs


def output_path(out: Path, name: str, suffix: str) -> Path:
    """``out/<name><suffix>``, refused with `ExtractError` unless it lies inside ``out``."""
    path = (out / f"{name}{suffix}").resolve()
    if not path.is_relative_to(out.resolve()) or path == out.resolve():
        raise ExtractError(f"{name}: its output {name}{suffix} would lie outside {out}")
    return path


def _spectra_db(frames: np.ndarray) -> np.ndarray:
    """dB magnitude spectra (float64 ``[k, 513]``, floored at -240 dB) of frames ``[k, 1024]``
    under a Hann window."""
    mag = np.abs(np.fft.rfft(frames * np.hanning(FLUX_FFT), axis=-1))
    return 20 * np.log10(np.maximum(mag, 1e-12))


def _frame_db(blocks: Iterable[np.ndarray], counted: list[int]) -> Iterator[np.ndarray]:
    """`_spectra_db` of the STFT frames of a stream of mono blocks, at most
    `FLUX_FRAMES_PER_FFT` frames at a time; frame f covers samples ``f * 512 ... + 1024``. A
    stream shorter than one frame gives one zero-padded frame. ``counted[0]`` becomes the
    stream's length in samples."""
    tail, total = np.zeros(0, dtype=np.float32), 0
    for block in blocks:
        total += block.shape[0]
        buf = np.concatenate([tail, block])
        if buf.shape[0] < FLUX_FFT:
            tail = buf
            continue
        k = (buf.shape[0] - FLUX_FFT) // FLUX_HOP + 1
        frames = np.lib.stride_tricks.sliding_window_view(buf, FLUX_FFT)[::FLUX_HOP]
        for first in range(0, k, FLUX_FRAMES_PER_FFT):
            yield _spectra_db(frames[first : first + FLUX_FRAMES_PER_FFT])
        tail = buf[k * FLUX_HOP :]
    counted[:] = [total]
    if total < FLUX_FFT:  # the whole stream is the tail
        yield _spectra_db(np.pad(tail, (0, FLUX_FFT - total))[None])


@contextlib.contextmanager
def _opened(blocks: Callable[[], Iterable[np.ndarray]]) -> Iterator[Iterable[np.ndarray]]:
    """``blocks()``, closed (a generator's file with it) when the block ends."""
    stream = blocks()
    try:
        yield stream
    finally:
        getattr(stream, "close", lambda: None)()


def stream_flux(blocks: Callable[[], Iterable[np.ndarray]]) -> tuple[np.ndarray, int]:
    """Positive spectral flux per STFT frame (see the module text) of the audio that
    ``blocks()`` gives as mono blocks, in two passes over it (the loudest bin, then the
    flux): float64 ``[frames]`` (0 for the first frame) and the audio's length in samples."""
    top, counted = -np.inf, [0]
    with _opened(blocks) as stream:
        for db in _frame_db(stream, counted):
            top = max(top, float(db.max()))
    floor, flux, last = top - FLUX_FLOOR_DB, [np.zeros(1)], None
    with _opened(blocks) as stream:
        for db in _frame_db(stream, counted):
            db = np.maximum(db, floor)
            joined = db if last is None else np.concatenate([last, db])
            flux.append(np.maximum(np.diff(joined, axis=0), 0.0).sum(axis=-1))
            last = db[-1:]
    return np.concatenate(flux), counted[0]


def spectral_flux(audio: np.ndarray) -> np.ndarray:
    """`stream_flux` of an audio array ``[samples]``: float64 ``[frames]``."""
    return stream_flux(lambda: [audio])[0]


def pick_windows(audio: np.ndarray, sample_rate: int, count: int) -> list[tuple[int, float]]:
    """Up to ``count`` non-overlapping ``WINDOW_S`` clips with the most drum activity, as
    (start sample, activity) in order of activity; starts on a ``GRID_S`` grid and the last
    full window. A song shorter than a window gives (0, its activity)."""
    return choose_windows(spectral_flux(audio), audio.shape[0], sample_rate, count)


def choose_windows(
    flux: np.ndarray, samples: int, sample_rate: int, count: int
) -> list[tuple[int, float]]:
    """`pick_windows` from a song's ``flux`` (`stream_flux`) and length in ``samples``."""
    window, grid = int(round(WINDOW_S * sample_rate)), int(round(GRID_S * sample_rate))
    total = np.concatenate([[0.0], np.cumsum(flux)])
    last = max(samples - window, 0)
    starts = np.unique(np.append(np.arange(0, last + 1, grid), last))
    first = starts // FLUX_HOP
    end = np.minimum(first + window // FLUX_HOP, flux.shape[0])
    activity = (total[end] - total[first]) / np.maximum(end - first, 1)
    chosen: list[tuple[int, float]] = []
    for i in np.argsort(-activity, kind="stable"):
        start = int(starts[i])
        if all(abs(start - s) >= window for s, _ in chosen):
            chosen.append((start, float(activity[i])))
            if len(chosen) == count:
                break
    return chosen


@dataclass
class SongResult:
    """What was written for one song (the JSON sidecar's content, less the settings)."""

    song: str
    name: str
    song_sha256: str
    clips: list[dict]
    oneshots: dict[str, dict] = field(default_factory=dict)


@dataclass
class SongPlan:
    """A song read and cut into clips, waiting for its one-shots."""

    song: Song
    clips: np.ndarray  # [windows, samples]
    windows: list[dict]


def plan_song(
    song: Song, sample_rate: int, windows: int, start_s: float | None, normalize: bool
) -> SongPlan:
    """Read ``song`` as a stream and cut its clips (by activity, or the one at ``start_s``).
    Raises `ExtractError` naming the file when it cannot be read, is a link out of its folder,
    or ``start_s`` lies outside it."""
    check_inside_folder(song)
    window = int(round(WINDOW_S * sample_rate))
    try:
        if start_s is None:
            flux, samples = stream_flux(lambda: mono_blocks(song.path, sample_rate))
            chosen = choose_windows(flux, samples, sample_rate, windows)
            picked: list[tuple[int, float | None, str]] = [(s, a, "activity") for s, a in chosen]
        else:
            picked = [(int(round(start_s * sample_rate)), None, "given")]
        pieces, decoded, whole = read_clips(song.path, sample_rate, [p[0] for p in picked], window)
    except RowAudioError as err:
        raise ExtractError(str(err)) from None
    if start_s is not None and whole and not 0.0 <= start_s < decoded / sample_rate:
        raise ExtractError(
            f"{song.path}: --start {start_s} s is outside the song "
            f"(0..{decoded / sample_rate:.2f} s)"
        )
    clips, info = [], []
    for piece, (start, activity, how) in zip(pieces, picked, strict=True):
        level = peak_dbfs(piece)
        info.append({"start_s": start / sample_rate, "chosen": how, "activity": activity})
        info[-1]["input_peak_dbfs"] = level
        clips.append(normalize_peak(piece, MIXTURE_PEAK_DBFS) if normalize else piece)
    return SongPlan(song, np.stack(clips), info)


def check_inside_folder(song: Song) -> None:
    """`ExtractError` when a song found in a folder leads out of it (a link to a file
    elsewhere): it is not read."""
    if song.folder is not None:
        real = song.path.resolve()
        if not real.is_relative_to(song.folder.resolve()):
            raise ExtractError(
                f"{song.path}: a link to {real}, out of the folder {song.folder}; not read"
            )


def _remove_old_candidates(out: Path, name: str, drum: str) -> None:
    """Delete ``out/candidates/<name>.<drum>.<rank>.wav`` files of an earlier run."""
    folder = output_path(out / "candidates", name, "").parent
    prefix = f"{Path(name).name}.{drum}."
    for old in folder.glob(f"{glob.escape(prefix)}*.wav"):
        if old.name[len(prefix) : -len(".wav")].isdigit():
            old.unlink(missing_ok=True)


def write_song(
    plan: SongPlan,
    ranked: list[dict[str, list[OneShot]]],
    out: Path,
    finish: Finish,
    record: dict,
) -> SongResult:
    """Write the song's files from its clips' ranked one-shots (``ranked[w][drum]``)."""
    result = SongResult(str(plan.song.path), plan.song.name, sha256_file(plan.song.path), [])
    result.clips = plan.windows
    out_json = output_path(out, plan.song.name, ".extract.json")
    for drum in ranked[0] if ranked else {}:
        pool = [(w, s) for w, clip_shots in enumerate(ranked) for s in clip_shots[drum]]
        pool.sort(key=lambda ws: (-ws[1].score, ws[0], ws[1].candidate))
        best = output_path(out, plan.song.name, f".{drum}.wav")
        _remove_old_candidates(out, plan.song.name, drum)
        entries = []
        for rank, (w, shot) in enumerate(pool, start=1):
            audio = finish.apply(shot.audio, shot.sample_rate)
            if rank == 1:
                path = best
            else:
                path = output_path(out / "candidates", plan.song.name, f".{drum}.{rank}.wav")
            if audio.size:
                atomic_write_bytes(path, wav_bytes(audio, shot.sample_rate))
            else:  # no one-shot this time: leave no file of an earlier run behind
                path.unlink(missing_ok=True)
            entries.append(
                {
                    "rank": rank,
                    "file": path.relative_to(out.resolve()).as_posix() if audio.size else None,
                    "window": w,
                    "candidate": shot.candidate,
                    "score": shot.score,
                    "frames": shot.frames,
                    "seconds": audio.shape[0] / shot.sample_rate,
                    "ended": shot.ended,
                    "peak_dbfs": peak_dbfs(np.clip(audio, -1.0, 1.0)),
                }
            )
        result.oneshots[drum] = {**entries[0], "candidates": entries[1:]}
    atomic_write_text(out_json, json.dumps({**asdict(result), **record}, indent=2) + "\n")
    return result


def extract_songs(
    songs: Sequence[Song],
    extractor: Extractor,
    out: str | Path,
    options: ExtractOptions,
    record: dict | None = None,
    progress: Callable[[int], None] | None = None,
) -> Iterator[SongResult | ExtractError]:
    """Extract ``songs`` into ``out``, batching the clips of several songs per decode; yields
    each song's `SongResult`, or the `ExtractError` that skipped it, in song order.
    ``options`` gives the sampling, the clips (``windows``, ``start_s``,
    ``normalize_input``) and the finish; ``record`` is added to every sidecar
    (checkpoints, ...); ``progress(n)`` after n songs."""
    sampling, finish, windows = options.sampling, options.finish, options.windows
    start_s, normalize_input = options.start_s, options.normalize_input
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    sr = extractor.codec.sample_rate
    per_song = (1 if start_s is not None else windows) * sampling.candidates
    group = max(1, extractor.batch_size // per_song)
    settings = {
        "sampling": asdict(sampling),
        "finish": asdict(finish),
        "windows": windows,
        "window_s": WINDOW_S,
        "normalize_input_dbfs": MIXTURE_PEAK_DBFS if normalize_input else None,
        "precision": extractor.precision,
        "codec_sha256": extractor.codec.sha256,
        **(record or {}),
    }
    for first in range(0, len(songs), group):
        plans: list[SongPlan | ExtractError] = []
        for song in songs[first : first + group]:
            try:
                plans.append(plan_song(song, sr, windows, start_s, normalize_input))
            except ExtractError as err:
                plans.append(err)
        ready = [p for p in plans if isinstance(p, SongPlan)]
        ranked = []
        if ready:
            keys = [f"{p.song.name}@{w['start_s']:.6f}" for p in ready for w in p.windows]
            ranked = extractor.clips(np.concatenate([p.clips for p in ready]), keys, sampling)
        for plan in plans:
            if isinstance(plan, ExtractError):
                yield plan
                continue
            mine, ranked = ranked[: len(plan.windows)], ranked[len(plan.windows) :]
            try:
                yield write_song(plan, mine, out, finish, settings)
            except (ExtractError, OSError) as err:
                yield ExtractError(f"{plan.song.path}: {err}")
        if progress is not None:
            progress(min(first + group, len(songs)))
