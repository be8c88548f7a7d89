"""The token cache: encode an RMOD dataset once with DAC, so training never touches audio.

Layout of a token cache folder ``TOKDIR`` (all codes are raw DAC codes 0..1023, int16):

    TOKDIR/index.json                 settings, codec, manifests, shards, counts, skipped rows
    TOKDIR/{split}/{shard:06d}/mixture.npy   [rows, 9, 345]  mixture, mono mean, 4 s
    TOKDIR/{split}/{shard:06d}/kick.npy      [rows, 9, F]    one-shot, mono mean, cropped or
    TOKDIR/{split}/{shard:06d}/snare.npy     [rows, 9, F]    zero-padded to the target length
    TOKDIR/{split}/{shard:06d}/hihat.npy     [rows, 9, F]    (2 s -> F = 173)
    TOKDIR/{split}/{shard:06d}/meta.json     {"ids": [...], "skipped": [...], "files": {...}}

Each shard's ``files`` (in ``meta.json`` and again in the index's shard entry) records every
``.npy`` file's ``size`` in bytes, ``sha256`` and ``quick`` (SHA-256 of its first and last
`QUICK_BYTES`); `dose_model.cache.index` defines the index and its checks.

Shard ``i`` holds manifest rows ``[i * shard_size, (i + 1) * shard_size)`` in file order,
minus the rows whose audio is missing or undecodable: those are skipped, reported by id
and path, and listed in ``meta.json`` and ``index.json``. A shard is written in a
temporary folder and renamed into place, so a shard folder is always complete: an
interrupted run is resumed by running the same command again (finished shards are kept,
the rest is redone; the files come out byte-identical). A shard's files are ``fsync``-ed
before its folder is renamed into place, and the rename before the next step. ``index.json`` says
``"complete": true`` only once every shard is there. A rerun with other settings, another
codec or a changed manifest is refused rather than mixed in.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from dose_model import DRUMS
from dose_model.cache.index import (
    FORMAT,
    INDEX_NAME,
    VERSION,
    file_record,
    read_index,
)
from dose_model.codec.dac_codec import DacCodec, default_weights_path
from dose_model.dataset.audio import RowAudioError, load_mono
from dose_model.dataset.manifest import (
    ManifestRow,
    find_manifests,
    manifest_sha256,
    read_rows,
    row_seconds,
)
from dose_model.device import resolve_device
from dose_model.errors import DoseError, InputError
from rmod_dose_common.fileio import atomic_write_text, replace_durably, sync_folder

TMP_PREFIX = ".tmp-"
PAPER_MIXTURE_SECONDS = 4.0
"""Mixture length encoded when neither the caller nor the rows' frame counts say (the paper)."""
PAPER_ONESHOT_SECONDS = 2.0
"""One-shot length encoded when neither the caller nor the rows' frame counts say (paper
text: 2 s)."""
MAX_CLIP_SECONDS = 60.0
"""The longest clip encoded (mixture or one-shot), in seconds: far above any RMOD length,
far below what would exhaust memory."""


class TokenizeError(DoseError, RuntimeError):
    """The token cache cannot be written (e.g. it holds a cache of other settings)."""


@dataclass
class TokenizeSummary:
    """What one run did. ``audio_seconds`` counts the audio encoded in this run (mixture +
    three one-shots per row); shards found complete are ``shards_kept``."""

    out: str
    rows_encoded: int = 0
    rows_skipped: int = 0
    shards_written: int = 0
    shards_kept: int = 0
    audio_seconds: float = 0.0
    elapsed_s: float = 0.0
    skipped: list[dict] = field(default_factory=list)

    @property
    def audio_seconds_per_second(self) -> float:
        """Encoding throughput of this run (audio seconds per wall-clock second)."""
        return self.audio_seconds / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def __str__(self) -> str:
        return (
            f"tokenized {self.rows_encoded} rows into {self.out} "
            f"({self.shards_written} shards written, {self.shards_kept} kept, "
            f"{self.rows_skipped} rows skipped): {self.audio_seconds:.0f} audio-s in "
            f"{self.elapsed_s:.1f} s = {self.audio_seconds_per_second:.1f} audio-s/s"
        )


def load_row(row: ManifestRow, sample_rate: int, mix_samples: int, shot_samples: int):
    """(mixture [mix_samples], one-shots [3, shot_samples]) float32, or a RowAudioError."""
    try:
        mixture = load_mono(row.mixture, sample_rate, mix_samples)
        shots = np.stack([load_mono(row.oneshots[d], sample_rate, shot_samples) for d in DRUMS])
    except RowAudioError as err:
        return err
    return mixture, shots


# ------------------------------------------------------------------------- files
def _write_json(path: Path, obj: dict) -> None:
    atomic_write_text(path, json.dumps(obj, indent=1, sort_keys=True) + "\n")


def _shard_done(shard_dir: Path) -> dict | None:
    """The meta of a shard an earlier run completed; None when it has none that reads as one
    (the shard is then encoded again)."""
    meta = shard_dir / "meta.json"
    if not meta.is_file():
        return None
    try:
        done = json.loads(meta.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return done if isinstance(done, dict) else None


def _write_shard(
    shard_dir: Path, ids: list[str], skipped: list[dict], arrays: dict[str, np.ndarray]
) -> dict:
    """Write one shard into a temporary folder beside it, make its files durable, then
    rename it into place durably: a shard that an index or a resumed run finds is whole on
    disk, even after a power cut (the commit of rmod's shards, :mod:`rmod_dose_common.fileio`)."""
    tmp = shard_dir.with_name(f"{TMP_PREFIX}{shard_dir.name}.{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        files = {}
        for name, arr in arrays.items():
            np.save(tmp / f"{name}.npy", arr, allow_pickle=False)
            files[f"{name}.npy"] = file_record(tmp / f"{name}.npy")
        meta = {"ids": ids, "skipped": skipped, "files": files}
        text = json.dumps(meta, indent=1, sort_keys=True) + "\n"
        (tmp / "meta.json").write_text(text, encoding="utf-8")
        sync_folder(tmp)
        replace_durably(tmp, shard_dir)
    except BaseException:  # a full disk or Ctrl-C: leave no half-written shard behind
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return meta


def _clean_stale(split_dir: Path) -> None:
    """Remove temporary folders/files left by a run that was killed."""
    if split_dir.is_dir():
        for entry in split_dir.iterdir():
            if entry.name.startswith(TMP_PREFIX):
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()


# ------------------------------------------------------------------------- encoding
def _batches(rows: list[ManifestRow], size: int) -> Iterator[list[ManifestRow]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def _encode(codec: DacCodec, audio: np.ndarray) -> np.ndarray:
    """float32 [n, samples] -> int16 codes [n, 9, frames] on the CPU."""
    codes = codec.encode(torch.from_numpy(audio)[:, None, :])
    return codes.to("cpu", torch.int16).numpy()


def _encode_shard(
    codec: DacCodec,
    rows: list[ManifestRow],
    pool: ThreadPoolExecutor,
    batch_size: int,
    lengths: tuple[int, int],
    on_batch: Callable[[int], None],
) -> tuple[list[str], list[dict], dict[str, np.ndarray]]:
    """Encode the rows of one shard in batches; audio of the next batch loads meanwhile."""
    mix_samples, shot_samples = lengths
    frames = (codec.frames(mix_samples), codec.frames(shot_samples))
    ids: list[str] = []
    skipped: list[dict] = []
    parts: dict[str, list[np.ndarray]] = {name: [] for name in ("mixture", *DRUMS)}

    def submit(batch: list[ManifestRow]) -> list[Future]:
        return [
            pool.submit(load_row, r, codec.sample_rate, mix_samples, shot_samples) for r in batch
        ]

    batches = list(_batches(rows, batch_size))
    pending = submit(batches[0]) if batches else []
    for i, batch in enumerate(batches):
        loaded = [f.result() for f in pending]
        pending = submit(batches[i + 1]) if i + 1 < len(batches) else []
        good = []
        for row, item in zip(batch, loaded, strict=True):
            if isinstance(item, RowAudioError):
                skipped.append({"id": row.id, "path": item.path, "reason": item.reason})
            else:
                ids.append(row.id)
                good.append(item)
        if good:
            parts["mixture"].append(_encode(codec, np.stack([m for m, _ in good])))
            shots = _encode(codec, np.concatenate([s for _, s in good]))  # [3n, 9, F]
            shots = shots.reshape(len(good), len(DRUMS), *shots.shape[1:])
            for d, drum in enumerate(DRUMS):
                parts[drum].append(shots[:, d])
        on_batch(len(batch))
    arrays = {}
    for name, chunks in parts.items():
        n_frames = frames[0] if name == "mixture" else frames[1]
        empty = np.zeros((0, codec.n_codebooks, n_frames), dtype=np.int16)
        arrays[name] = np.ascontiguousarray(np.concatenate(chunks)) if chunks else empty
    return ids, skipped, arrays


def cache_config(
    codec: DacCodec,
    manifests: dict[str, Path],
    n_rows: dict[str, int],
    mixture_seconds: float,
    oneshot_seconds: float,
    shard_size: int,
) -> dict:
    """The settings that define a token cache's content (a resumed run must match them)."""
    mix_samples = round(mixture_seconds * codec.sample_rate)
    shot_samples = round(oneshot_seconds * codec.sample_rate)
    return {
        "codec": {
            "kwargs": codec.kwargs,
            "sha256": codec.sha256,
            "sample_rate": codec.sample_rate,
            "hop_length": codec.hop_length,
            "n_codebooks": codec.n_codebooks,
            "codebook_size": codec.codebook_size,
            "cuda_tf32": codec.tf32,
        },
        "mixture_seconds": mixture_seconds,
        "mixture_samples": mix_samples,
        "mixture_frames": codec.frames(mix_samples),
        "oneshot_seconds": oneshot_seconds,
        "oneshot_samples": shot_samples,
        "oneshot_frames": codec.frames(shot_samples),
        "drums": list(DRUMS),
        "shard_size": shard_size,
        "manifests": {
            split: {
                "path": str(Path(path).resolve()),
                "sha256": manifest_sha256(path),
                "rows": n_rows[split],
            }
            for split, path in manifests.items()
        },
    }


@dataclass(frozen=True)
class TokenizeOptions:
    """What `tokenize_manifest` encodes, and how (the `dose-tokenize` options).

    ``manifest``: a ``.jsonl`` file or a dataset DIR (all its splits); ``codec_weights``:
    the DAC weights file; ``out``: the token cache folder. ``device``: where to encode.
    ``batch_size`` rows are encoded at once (their mixtures, then their 3 x batch_size
    one-shots); ``shard_size`` rows form a shard (the unit of resume). ``mixture_seconds``
    / ``oneshot_seconds`` None take the lengths of the first row's files (its documented
    ``frames`` / ``sample_rate``; the longest one-shot), else 4.0 s / 2.0 s (the paper).
    ``workers`` threads read audio ahead. ``tf32`` sets :attr:`DacCodec.tf32` (None:
    torch's setting; False: strict FP32 on CUDA, codes as on the CPU).
    """

    manifest: str | os.PathLike
    codec_weights: str | os.PathLike
    out: str | os.PathLike
    device: str = "cpu"
    batch_size: int = 8
    shard_size: int = 1024
    mixture_seconds: float | None = None
    oneshot_seconds: float | None = None
    workers: int = 4
    progress: bool = True
    tf32: bool | None = None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> TokenizeOptions:
        """The options `dose-tokenize`'s parsed arguments ask for; ``--codec-weights``
        defaults to the reference package's cache file (InputError when there is none, or
        when the file named is not there: before any work)."""
        weights = args.codec_weights or default_weights_path()
        if weights is None:
            raise InputError(
                "no --codec-weights given and no cached DAC weights found "
                "(~/.cache/descript/dac/weights_44khz_8kbps_0.0.1.pth)"
            )
        if not os.path.isfile(weights):
            raise InputError(f"{weights}: DAC weights file not found")
        return cls(
            manifest=args.manifest,
            codec_weights=weights,
            out=args.out,
            device=args.device,
            batch_size=args.batch_size,
            shard_size=args.shard_size,
            mixture_seconds=args.mixture_seconds,
            oneshot_seconds=args.oneshot_seconds,
            workers=args.workers,
            progress=not args.no_progress,
            tf32=False if args.no_tf32 else None,
        )


def tokenize_manifest(
    options: TokenizeOptions, on_shard: Callable[[str, int], None] | None = None
) -> TokenizeSummary:
    """Encode every row of ``options.manifest`` with the DAC weights at
    ``options.codec_weights`` into the token cache ``options.out`` (see `TokenizeOptions`).

    Resumes a cache of the same settings (codec, lengths, shard size, manifest contents);
    raises TokenizeError for a cache of other settings. Rows with missing or undecodable
    audio are skipped and listed in the summary and index. ``on_shard(split, i)`` is
    called after each shard is written. Returns a :class:`TokenizeSummary`.
    """
    for option, value in (("--batch-size", options.batch_size),
                          ("--shard-size", options.shard_size),
                          ("--workers", options.workers)):  # fmt: skip
        if value < 1:
            raise InputError(f"{option} must be at least 1, got {value}")
    start = time.perf_counter()
    out = Path(options.out)
    manifests = find_manifests(options.manifest)
    rows = {split: read_rows(path) for split, path in manifests.items()}
    mixture_seconds, oneshot_seconds = _clip_seconds(
        rows, options.mixture_seconds, options.oneshot_seconds
    )
    codec = DacCodec.load(options.codec_weights, device=resolve_device(options.device))
    codec.tf32 = options.tf32
    n_rows = {s: len(r) for s, r in rows.items()}
    config = cache_config(
        codec, manifests, n_rows, mixture_seconds, oneshot_seconds, options.shard_size
    )
    _prepare_out(out, config)
    summary = TokenizeSummary(out=str(out))
    with (
        ThreadPoolExecutor(max_workers=options.workers) as pool,
        tqdm(
            total=sum(n_rows.values()),
            desc="dose-tokenize",
            unit="row",
            disable=not options.progress,
        ) as bar,
    ):
        job = _Job(codec, config, pool, bar, options.batch_size, summary, on_shard, out)
        splits = {split: job.split(out, split, split_rows) for split, split_rows in rows.items()}
    summary.rows_skipped = len(summary.skipped)
    _write_json(
        out / INDEX_NAME,
        {"format": FORMAT, "version": VERSION, "complete": True, "config": config}
        | {"splits": splits, "skipped": summary.skipped},
    )
    summary.elapsed_s = time.perf_counter() - start
    return summary


def _clip_seconds(
    rows: dict[str, list[ManifestRow]], mixture_seconds: float | None, oneshot_seconds: float | None
) -> tuple[float, float]:
    """The mixture and one-shot lengths in seconds: as given, else the first row's (see
    :func:`row_seconds`), else the paper's."""
    found = row_seconds(next((r[0] for r in rows.values() if r), None))
    if mixture_seconds is None:
        mixture_seconds = found.get("mixture_seconds", PAPER_MIXTURE_SECONDS)
    if oneshot_seconds is None:
        oneshot_seconds = found.get("target_seconds", PAPER_ONESHOT_SECONDS)
    for option, value in (("--mixture-seconds", mixture_seconds),
                          ("--oneshot-seconds", oneshot_seconds)):  # fmt: skip
        if not 0 < value <= MAX_CLIP_SECONDS:  # also refuses NaN
            raise InputError(
                f"{option} must be above 0 and at most {MAX_CLIP_SECONDS:g} s, got {value}"
            )
    return mixture_seconds, oneshot_seconds


@dataclass
class _Job:
    """What every shard of one `tokenize_manifest` run shares; ``config`` is the cache's
    (see :func:`cache_config`)."""

    codec: DacCodec
    config: dict
    pool: ThreadPoolExecutor
    bar: tqdm
    batch_size: int
    summary: TokenizeSummary
    on_shard: Callable[[str, int], None] | None
    out: Path

    @property
    def shard_size(self) -> int:
        """Rows per shard."""
        return self.config["shard_size"]

    @property
    def lengths(self) -> tuple[int, int]:
        """Samples of a mixture and of a one-shot."""
        return (self.config["mixture_samples"], self.config["oneshot_samples"])

    @property
    def row_seconds(self) -> float:
        """Seconds of audio a row holds: its mixture and its one-shots."""
        return self.config["mixture_seconds"] + len(DRUMS) * self.config["oneshot_seconds"]

    def split(self, out: Path, split: str, rows: list[ManifestRow]) -> dict:
        """Encode (or keep) every shard of one split; returns its index entry."""
        split_dir = out / split
        split_dir.mkdir(parents=True, exist_ok=True)
        _clean_stale(split_dir)
        shards: list[dict[str, Any]] = []
        skipped: list[dict[str, Any]] = []
        for i in range(math.ceil(len(rows) / self.shard_size)):
            meta = self.shard(split, i, rows[i * self.shard_size : (i + 1) * self.shard_size])
            for item in meta["skipped"]:
                tqdm.write(
                    f"skipped row {item['id']} ({item['path']}): {item['reason']}",
                    file=sys.stderr,
                )
                skipped.append({"split": split, **item})
            entry = {"dir": f"{split}/{i:06d}", "rows": len(meta["ids"])}
            shards.append(entry | {"files": meta.get("files")})
        self.summary.skipped.extend(skipped)
        rows_kept = sum(s["rows"] for s in shards)
        return {"rows": rows_kept, "skipped": len(skipped), "shards": shards}

    def shard(self, split: str, i: int, rows: list[ManifestRow]) -> dict:
        """Shard ``i`` of ``split``: kept when complete, else encoded and written; its meta."""
        shard_dir = self.out / split / f"{i:06d}"
        meta = _shard_done(shard_dir)
        if meta is not None:
            self.summary.shards_kept += 1
            self.bar.update(len(rows))
            return meta
        if shard_dir.exists():  # not ours in a complete state: redo it
            shutil.rmtree(shard_dir)
        ids, skipped, arrays = _encode_shard(
            self.codec, rows, self.pool, self.batch_size, self.lengths, self.bar.update
        )
        meta = _write_shard(shard_dir, ids, skipped, arrays)
        self.summary.shards_written += 1
        self.summary.rows_encoded += len(ids)
        self.summary.audio_seconds += len(ids) * self.row_seconds
        if self.on_shard is not None:
            self.on_shard(split, i)
        return meta


def _identity(config: dict) -> dict:
    """What must match for a rerun to continue a cache: everything but manifest paths
    (a dataset and its cache may move; the manifests' SHA-256 still has to match)."""
    out = dict(config)
    if isinstance(out.get("manifests"), dict):
        out["manifests"] = {
            split: {k: v for k, v in m.items() if k != "path"} if isinstance(m, dict) else m
            for split, m in out["manifests"].items()
        }
    return out


def _prepare_out(out: Path, config: dict) -> None:
    """Create ``out`` or check that the cache already there was made with ``config``."""
    index_path = out / INDEX_NAME
    if index_path.is_file():
        index = read_index(out)
        old, new = _identity(index.get("config", {})), _identity(config)
        if index.get("version") != VERSION or old != new:
            differ = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
            raise TokenizeError(
                f"{out} holds a token cache made with other settings (differing: "
                f"{', '.join(differ) or 'version'}); use another --out or delete it"
            )
    elif out.is_dir() and any(p.name != INDEX_NAME for p in out.iterdir()):
        raise TokenizeError(f"{out} exists, is not empty and holds no {INDEX_NAME}; refusing")
    out.mkdir(parents=True, exist_ok=True)
    _write_json(
        index_path, {"format": FORMAT, "version": VERSION, "complete": False, "config": config}
    )
