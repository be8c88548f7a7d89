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

Many processes (``--rank R --world-size W``, or ``torchrun``) each encode their own shards
and leave the index to one merge (:mod:`dose_model.cache.ranks`); a single process ends
with the same merge (`assemble_index`), so both write the same bytes. While the codec
encodes one batch, a thread pool already reads the next batch's audio
(`_encode_shard`).
"""

from __future__ import annotations

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
from dose_model.cache.options import TokenizeOptions
from dose_model.codec.dac_codec import DacCodec
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
from rmod_dose_common.cli import counted
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
            f"tokenized {counted(self.rows_encoded, 'row')} into {self.out} "
            f"({counted(self.shards_written, 'shard')} written, {self.shards_kept} kept, "
            f"{counted(self.rows_skipped, 'row')} skipped): {self.audio_seconds:.0f} audio-s in "
            f"{self.elapsed_s:.1f} s = {self.audio_seconds_per_second:.1f} audio-s/s"
        )


def load_row(
    row: ManifestRow, sample_rate: int, mix_samples: int, shot_samples: int
) -> tuple[np.ndarray, np.ndarray] | RowAudioError:
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


def _shard_done(shard_dir: Path, rows: int | None = None) -> dict | None:
    """The meta of a shard an earlier run (or another rank) completed; None when it has
    none that reads as one, when its files are not the sizes the meta records, or when it
    does not account for ``rows`` rows (encoded + skipped). Such a shard is encoded again
    (or, in a merge, reported missing)."""
    meta = shard_dir / "meta.json"
    if not meta.is_file():
        return None
    try:
        done = json.loads(meta.read_text(encoding="utf-8"))
        files = done["files"]
        for name, record in files.items():
            if (shard_dir / name).stat().st_size != record["size"]:
                return None
        counted = len(done["ids"]) + len(done["skipped"])
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None
    if rows is not None and counted != rows:
        return None
    return done


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


def _clean_stale(split_dir: Path, names: set[str] | None = None) -> None:
    """Remove temporary folders/files left by a run that was killed: all of them, or with
    ``names`` only those of these shard folders (a rank leaves the other ranks' alone)."""
    if split_dir.is_dir():
        for entry in split_dir.iterdir():
            if not entry.name.startswith(TMP_PREFIX):
                continue
            if names is not None and entry.name[len(TMP_PREFIX) :].split(".")[0] not in names:
                continue
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()


# ------------------------------------------------------------------------- encoding
def _batches(rows: list[ManifestRow], size: int) -> Iterator[list[ManifestRow]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def _encode(codec: DacCodec, audio: np.ndarray) -> np.ndarray:
    """float32 [n, samples] -> int16 codes [n, 9, frames] on the CPU."""
    codes = codec.encode(torch.from_numpy(audio)[:, None, :])
    return codes.to("cpu", torch.int16).numpy()


class ShardCodes:
    """The codes of one shard, encoded batch by batch (`encode`), as the shard's arrays
    (`arrays`). ``lengths``: samples of a mixture and of a one-shot at the codec's rate.
    `dose-tokenize` and the token sink of ``rmod-build --tokens``
    (:mod:`dose_model.cache.sink`) both encode through it, with the same batches, so they
    write the same codes."""

    def __init__(self, codec: DacCodec, lengths: tuple[int, int]):
        self.codec = codec
        self.frames = (codec.frames(lengths[0]), codec.frames(lengths[1]))
        self.parts: dict[str, list[np.ndarray]] = {name: [] for name in ("mixture", *DRUMS)}

    def encode(self, good: list[tuple[np.ndarray, np.ndarray]]) -> None:
        """Encode one batch of rows, each (mixture [mix_samples], one-shots [3,
        shot_samples]) float32: their mixtures together, then their 3 x n one-shots."""
        if not good:
            return
        self.parts["mixture"].append(_encode(self.codec, np.stack([m for m, _ in good])))
        shots = _encode(self.codec, np.concatenate([s for _, s in good]))  # [3n, 9, F]
        shots = shots.reshape(len(good), len(DRUMS), *shots.shape[1:])
        for d, drum in enumerate(DRUMS):
            self.parts[drum].append(shots[:, d])

    def arrays(self) -> dict[str, np.ndarray]:
        """name -> int16 codes ``[rows, n_codebooks, frames]`` (mixture, then each drum)."""
        arrays = {}
        for name, chunks in self.parts.items():
            n_frames = self.frames[0] if name == "mixture" else self.frames[1]
            empty = np.zeros((0, self.codec.n_codebooks, n_frames), dtype=np.int16)
            arrays[name] = np.ascontiguousarray(np.concatenate(chunks)) if chunks else empty
        return arrays


def _encode_shard(
    codec: DacCodec,
    rows: list[ManifestRow],
    pool: ThreadPoolExecutor,
    batch_size: int,
    lengths: tuple[int, int],
    on_batch: Callable[[int], None],
) -> tuple[list[str], list[dict], dict[str, np.ndarray]]:
    """Encode the rows of one shard in batches. Reading overlaps encoding: the next batch's
    audio is submitted to the reader threads before the codec starts on this batch."""
    mix_samples, shot_samples = lengths
    ids: list[str] = []
    skipped: list[dict] = []
    codes = ShardCodes(codec, lengths)

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
        codes.encode(good)
        on_batch(len(batch))
    return ids, skipped, codes.arrays()


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


def tokenize_manifest(
    options: TokenizeOptions, on_shard: Callable[[str, int], None] | None = None
) -> TokenizeSummary:
    """Encode every row of ``options.manifest`` with the DAC weights at
    ``options.codec_weights`` into the token cache ``options.out`` (see `TokenizeOptions`).

    Resumes a cache of the same settings (codec, lengths, shard size, manifest contents);
    raises TokenizeError for a cache of other settings. Rows with missing or undecodable
    audio are skipped and listed in the summary and index. ``on_shard(split, i)`` is
    called after each shard is written. ``options.rank`` / ``world_size`` / ``merge``
    (`TokenizeOptions.part`): a rank among others encodes only its shards and leaves the
    index to the merge, which encodes nothing (see :mod:`dose_model.cache.ranks`). Returns a
    :class:`TokenizeSummary`.
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
    part = options.part
    plan = shard_plan(rows, options.shard_size)
    mine = [shard for ordinal, shard in enumerate(plan) if part.owns(ordinal)]
    with (
        ThreadPoolExecutor(max_workers=options.workers) as pool,
        tqdm(
            total=sum(len(r) for _, _, r in mine),
            desc="dose-tokenize",
            unit="row",
            disable=not options.progress,
        ) as bar,
    ):
        job = _Job(codec, config, pool, bar, options.batch_size, summary, on_shard, out)
        job.clean(mine, everything=part.writes_index)
        metas = [job.shard(split, i, shard_rows) for split, i, shard_rows in mine]
    if part.writes_index:
        splits, summary.skipped = assemble_index(out, rows, options.shard_size)
        if part.merge:
            summary.shards_kept = len(plan)
    else:
        summary.skipped = [
            {"split": split, **item}
            for (split, _, _), meta in zip(mine, metas, strict=True)
            for item in meta["skipped"]
        ]
    for item in summary.skipped:
        tqdm.write(f"skipped row {item['id']} ({item['path']}): {item['reason']}", file=sys.stderr)
    summary.rows_skipped = len(summary.skipped)
    if part.writes_index:
        _write_json(
            out / INDEX_NAME,
            {"format": FORMAT, "version": VERSION, "complete": True, "config": config}
            | {"splits": splits, "skipped": summary.skipped},
        )
    summary.elapsed_s = time.perf_counter() - start
    return summary


def shard_plan(
    rows: dict[str, list[ManifestRow]], shard_size: int
) -> list[tuple[str, int, list[ManifestRow]]]:
    """Every shard of a cache in ordinal order: (split, number, its rows). Shard ``i`` of a
    split holds rows ``[i * shard_size, (i + 1) * shard_size)`` in file order; splits come in
    the manifests' order."""
    return [
        (split, i, split_rows[i * shard_size : (i + 1) * shard_size])
        for split, split_rows in rows.items()
        for i in range(math.ceil(len(split_rows) / shard_size))
    ]


class MissingShards(TokenizeError):
    """A merge found shards that no rank finished; ``missing`` lists their folders."""

    def __init__(self, out: Path, missing: list[str]):
        self.missing = missing
        shown = ", ".join(missing[:10]) + (
            f" and {len(missing) - 10} more" if len(missing) > 10 else ""
        )
        super().__init__(
            f"{out}: {len(missing)} shard(s) missing or incomplete: {shown}. Rerun the rank that "
            "owns each (shard ordinal g, counted over the splits in order, belongs to rank "
            "g % world size), or run dose-tokenize without --merge to encode them here"
        )


def assemble_index(
    out: Path, rows: dict[str, list[ManifestRow]], shard_size: int
) -> tuple[dict, list[dict]]:
    """The merge: read back every shard's ``meta.json`` and build the index's ``splits``
    and ``skipped`` (each skipped row with its split) from them, in shard order. Every
    shard must be there, with files of the sizes its meta records and exactly its rows
    (encoded or skipped), else `MissingShards` names them. A single process and the merge
    of many ranks both end here, so they write the same index."""
    splits: dict[str, dict[str, Any]] = {
        split: {"rows": 0, "skipped": 0, "shards": []} for split in rows
    }
    skipped: list[dict] = []
    missing: list[str] = []
    for split, i, shard_rows in shard_plan(rows, shard_size):
        rel = f"{split}/{i:06d}"
        meta = _shard_done(out / rel, len(shard_rows))
        if meta is None or not _same_rows(meta, shard_rows):
            missing.append(rel)
            continue
        entry = splits[split]
        entry["shards"].append({"dir": rel, "rows": len(meta["ids"]), "files": meta.get("files")})
        entry["rows"] += len(meta["ids"])
        entry["skipped"] += len(meta["skipped"])
        skipped += [{"split": split, **item} for item in meta["skipped"]]
    if missing:
        raise MissingShards(out, missing)
    return splits, skipped


def _same_rows(meta: dict, rows: list[ManifestRow]) -> bool:
    """True when a shard's meta lists exactly ``rows``: encoded ids in row order, the rest
    skipped."""
    skipped = {item.get("id") for item in meta["skipped"]}
    return meta["ids"] == [r.id for r in rows if r.id not in skipped] and len(skipped) == len(
        meta["skipped"]
    )


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

    def clean(self, mine: list[tuple[str, int, list[ManifestRow]]], everything: bool) -> None:
        """Create the split folders of this run's shards and remove what killed runs left in
        them: every temporary entry, or (``everything`` False: a rank among others) only
        those of its own shards."""
        for split in dict.fromkeys(split for split, _, _ in mine):
            split_dir = self.out / split
            split_dir.mkdir(parents=True, exist_ok=True)
            names = None if everything else {f"{i:06d}" for s, i, _ in mine if s == split}
            _clean_stale(split_dir, names)

    def shard(self, split: str, i: int, rows: list[ManifestRow]) -> dict:
        """Shard ``i`` of ``split``: kept when complete, else encoded and written; its meta."""
        shard_dir = self.out / split / f"{i:06d}"
        meta = _shard_done(shard_dir, len(rows))
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
    """Create ``out`` or check that the cache already there was made with ``config``.

    Safe when several ranks start at once: the folder is listed before the index is looked
    for, and a rank writes the index before any shard folder, so a rank that sees another's
    folders also sees its index; the index writer's temporary files are not content."""
    index_path = out / INDEX_NAME
    entries = [p.name for p in out.iterdir()] if out.is_dir() else []
    if index_path.is_file():
        index = read_index(out)
        old, new = _identity(index.get("config", {})), _identity(config)
        if index.get("version") != VERSION or old != new:
            differ = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
            raise TokenizeError(
                f"{out} holds a token cache made with other settings (differing: "
                f"{', '.join(differ) or 'version'}); use another --out or delete it"
            )
    elif any(n != INDEX_NAME and not n.startswith(f".{INDEX_NAME}.") for n in entries):
        raise TokenizeError(f"{out} exists, is not empty and holds no {INDEX_NAME}; refusing")
    out.mkdir(parents=True, exist_ok=True)
    _write_json(
        index_path, {"format": FORMAT, "version": VERSION, "complete": False, "config": config}
    )
