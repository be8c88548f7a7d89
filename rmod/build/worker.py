"""What one worker does with one shard: draw, render and write its examples, then commit.

Runs inside a joblib worker (a loky process, a dask.distributed worker, or the main
process for ``--jobs 1``). The task sent to the worker is small: the recipe, the
library's *path* and fingerprint, the seed and the shard bounds. The library itself
(entries only) is loaded once per worker process and cached here; its audio comes
through a :class:`rmod.example.sample_store.SampleStore` (raw files on disk, read in slices through the
page cache that all workers of a machine share), so a worker holds no audio between
examples.

Files of a shard are written plainly into its temporary folder (the folder is published
by one rename, so a half-written file is never visible), then made durable with one
filesystem flush per shard (:func:`rmod.audio.sync_folder`) before the commit. In the tar
layout they are streamed into the shard's temporary tar instead, which is fsynced and
renamed the same way (:mod:`rmod.build.tar_layout`); the bytes of every file are the same.
A ``--tokens`` build writes no files: each example goes to the task's token sink
(:mod:`rmod.build.sink`), which commits the shard before its manifest part is written.
"""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from threadpoolctl import threadpool_limits

from rmod import DRUMS
from rmod.audio import AudioFileError, encode_audio_file, peak_db, rms_db
from rmod.build.fingerprint import engine_fingerprint
from rmod.build.manifest import ManifestRow
from rmod.build.shards import FolderShardWriter, ShardWriter, open_shard_writer
from rmod.build.sink import TokenSink, make_sink
from rmod.build.task import ExampleFailed, ShardError, ShardResult, ShardTask
from rmod.build.upkeep import check_lease, die_with_build, peak_rss_bytes, tune_allocator
from rmod.errors import RmodError
from rmod.example.sample_store import SampleStore
from rmod.example.store_folder import STORE_DIR
from rmod.library.catalog import Library

_LIBRARIES: dict[tuple[str | None, str], Library] = {}
_LIBRARIES_LOCK = threading.Lock()


def worker_library(path: str | None, fingerprint: str) -> Library:
    """The library at ``path`` (``None`` = built-in), loaded once per process.

    Raises ``RuntimeError`` when the library this worker sees is not the one the build
    was planned with (e.g. a cluster node with a different copy).
    """
    key = (path, fingerprint)
    with _LIBRARIES_LOCK:
        lib = _LIBRARIES.get(key)
        if lib is None:
            lib = Library.load(path)
            if lib.fingerprint != fingerprint:
                raise RuntimeError(
                    f"library {path or '<built-in>'} on worker {socket.gethostname()} has "
                    f"fingerprint {lib.fingerprint[:12]}, the build expects {fingerprint[:12]}"
                )
            _LIBRARIES[key] = lib
    return lib


def worker_store(task: ShardTask) -> Any:
    """The :class:`rmod.example.sample_store.SampleStore` of the task's library at the recipe's rate, in
    the build's folder (``DIR/.rmod-store``), used only when it is the store this run made
    (its marker carries the task's lease); close it after the shard (it reports its hits)."""
    library = worker_library(task.library_path, task.library_fingerprint)
    rate = int(task.recipe.audio.sample_rate)
    folder = Path(task.root) / STORE_DIR
    return SampleStore(library, rate, folder=folder, token=task.lease)


def _level(value: float) -> float | None:
    """dBFS rounded to 1/1000 dB; ``None`` for silence (JSON has no -inf)."""
    return None if value == float("-inf") else round(float(value), 3)


def build_example(
    task: ShardTask,
    store: SampleStore,
    index: int,
    out: ShardWriter | str | os.PathLike,
    sink: TokenSink | None = None,
) -> ManifestRow:
    """Draw and render example ``index`` of the shard's split into ``out``; its row.

    ``out`` is the shard's writer (:func:`rmod.build.shards.open_shard_writer`: its
    temporary folder or tar, published as a whole, see the module docstring), or a folder to
    write the files into plainly. With a ``sink`` (and a writer that stores nothing,
    :class:`rmod.build.shards.UnstoredShardWriter`), nothing is written: the row
    (``stored`` False; its checksums and sizes those of the files' bytes, encoded in
    memory) and the rendered audio go to the sink.
    """
    from rmod.example.draw import draw_example, example_id
    from rmod.example.pattern import midi_bytes
    from rmod.example.render import render_example

    split, fmt, shard = task.shard.split, task.audio_format, task.shard
    eid = example_id(split, index)
    params = draw_example(task.recipe, store, task.seed, split, index)
    rendered = render_example(params, task.recipe, store)
    sr = int(task.recipe.audio.sample_rate)
    if isinstance(out, (str, os.PathLike)):
        out = FolderShardWriter(Path(out), f"{split}/{shard.number:06d}")
    audio = {"mixture": rendered.mixture, **{c: rendered.oneshots[c] for c in DRUMS}}
    paths, frames, checksums, loudness, channels, sizes = {}, {}, {}, {}, {}, {}
    for role, data in audio.items():
        name = f"{eid}.{role}.{fmt}"
        encoded, checksums[role] = encode_audio_file(data, sr, fmt)
        _write(out, name, encoded, checksums[role])
        sizes[role] = len(encoded)
        paths[role] = out.location(name)
        frames[role] = int(data.shape[-1])
        channels[role] = int(data.shape[0])
        loudness[f"{role}_peak_db"] = _level(peak_db(data))
        loudness[f"{role}_rms_db"] = _level(rms_db(data))
    midi_name = f"{eid}.pattern.mid"
    midi_data = midi_bytes(rendered.midi)
    checksums["midi"] = hashlib.sha256(midi_data).hexdigest()
    _write(out, midi_name, midi_data, checksums["midi"])
    sizes["midi"] = len(midi_data)
    sources = {cls: list(ids) for cls, ids in params.sources().items()}
    row = ManifestRow(
        id=eid,
        split=split,
        index=index,
        seed=task.seed,
        mixture=paths["mixture"],
        oneshots={c: paths[c] for c in DRUMS},
        sample_rate=sr,
        channels=channels["mixture"],
        duration=round(frames["mixture"] / sr, 6),
        frames=frames,
        checksums=checksums,
        sources=sources,
        params=params.to_dict(),
        loudness=loudness,
        midi=out.location(midi_name),
        sizes=sizes,
        file_channels=channels,
        stored=out.stored,
    )
    if sink is not None:
        sink.add(row.to_dict(), audio)
    return row


class OutputError(RmodError, OSError):
    """A file of a shard that could not be written (full disk, lost mount): names the path."""


def _write(out: ShardWriter, name: str, data: bytes, sha256: str | None = None) -> None:
    """Write file ``name`` through a shard's writer (published with the shard)."""
    try:
        out.write(name, data, sha256)
    except OSError as exc:
        where = getattr(out, "tmp", None) or getattr(out, "folder", "")
        raise OutputError(f"cannot write {name} in {where}: {exc.strerror or exc}") from None


def render_shard(task: ShardTask) -> ShardResult:
    """Build every example of ``task.shard`` in a temporary folder (or into the task's
    token sink) and commit it.

    Raises :class:`ExampleFailed` naming the first example that failed (and the file,
    for an unreadable library file), :class:`ShardError` when the library cannot be
    loaded or the output written; nothing of a failed shard becomes visible.
    """
    start = time.perf_counter()
    tune_allocator()
    if engine_fingerprint() != task.engine_fingerprint:
        raise ShardError(
            task.shard.name,
            f"worker {socket.gethostname()} runs other rmod code or audio package versions "
            f"(engine {engine_fingerprint()[:12]}, the build has {task.engine_fingerprint[:12]}); "
            "install the same version everywhere",
        )
    die_with_build(task)
    check_lease(task)
    try:
        store = worker_store(task)
    except Exception as exc:
        raise ShardError(task.shard.name, f"cannot load the library: {_text(exc)}") from None
    sink = None
    try:
        if task.sink is not None:
            sink = make_sink(task.sink)  # a fresh one per shard: it holds only this shard
        out = open_shard_writer(task.root, task.shard, stored=task.sink is None)
    except (OSError, RmodError) as exc:
        raise ShardError(task.shard.name, f"cannot write the output: {_text(exc)}") from None
    rows = []
    committed = False
    # One thread per worker in numeric libraries: a worker is one core's worth of work, and
    # idle BLAS/OpenMP threads spinning beside other workers cost system time (loky limits
    # them for its own workers; dask workers otherwise keep one pool per core).
    limits = threadpool_limits(limits=1)
    try:
        for index in task.shard.indices():
            check_lease(task)  # an orphaned worker stops within one example
            try:
                rows.append(build_example(task, store, index, out, sink))
                out.add_row(rows[-1])
            except AudioFileError as exc:
                raise ExampleFailed(_eid(task, index), exc.reason, exc.path) from None
            except OutputError as exc:
                raise ShardError(task.shard.name, str(exc)) from None
            except OSError as exc:  # add_row's write
                raise ShardError(task.shard.name, f"cannot write: {_text(exc)}") from None
            except Exception as exc:
                raise ExampleFailed(_eid(task, index), _text(exc)) from None
        check_lease(task)
        if sink is not None:  # the sink's shard first: the part is the commit record
            try:
                sink.commit_shard(task.shard.split, task.shard.number)
            except Exception as exc:
                raise ShardError(task.shard.name, f"the token sink: {_text(exc)}") from None
        try:
            out.commit(rows)
            committed = True
        except OSError as exc:
            raise ShardError(task.shard.name, f"cannot commit: {_text(exc)}") from None
    finally:
        limits.restore_original_limits()
        store.close()  # adds its hits and misses to the store's usage record
        if not committed:  # leave nothing half-built behind
            out.discard()
    worker = f"{socket.gethostname()}:{os.getpid()}"
    return ShardResult(task.shard, time.perf_counter() - start, peak_rss_bytes(), worker)


def _text(exc: BaseException) -> str:
    """``Type: message`` of an exception, on one line."""
    return "".join(traceback.format_exception_only(type(exc), exc)).strip()


def _eid(task: ShardTask, index: int) -> str:
    from rmod.example.draw import example_id

    return example_id(task.shard.split, index)
