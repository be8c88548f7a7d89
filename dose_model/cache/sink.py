"""``rmod-build --tokens``: the DAC token sink, which writes a token cache straight from the
build's renders, with no audio file in between.

rmod finds this class by name (``dac`` in the ``rmod.token_sinks`` entry point group, see
``setup.cfg``) and calls it through its sink protocol (rmod/build/sink.py, read for the
calls, never imported: the packages meet only at documented formats). The cache it writes
is the one ``dose-tokenize`` writes (:mod:`dose_model.cache.tokenize`): one token shard per
build shard (``shard_size`` = the build's), the lengths of the recipe (as ``dose-tokenize``
reads them from a row's ``frames``), the same batches.

Why the codes equal those of ``dose-tokenize`` on a stored build of the same recipe and
seed: each rendered array is quantized to 16 bits by the writer's own function
(:func:`rmod_dose_common.pcm.to_pcm16`), turned back into the floats libsndfile gives
when ``dose-tokenize`` reads that file (:func:`rmod_dose_common.pcm.pcm16_as_float`), made
mono and resampled by the bounded reader's own conversion
(:func:`dose_model.dataset.audio.mono_at_rate`: the channel mean and streaming resampler of
``mono_blocks``, fed in the reader's blocks),
cropped or padded like a file (:func:`dose_model.dataset.audio.clip`), and encoded in the
same batches by the same code (:class:`dose_model.cache.tokenize.ShardCodes`).

Where the calls run: ``open``, ``has_shard`` and ``close`` in the process that plans the
build; ``add`` and ``commit_shard`` in a worker, on a fresh instance per shard (the codec
is loaded once per worker process and kept).
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dose_model import DRUMS
from dose_model.cache.index import FORMAT, INDEX_NAME, VERSION, read_index
from dose_model.cache.tokenize import (
    ShardCodes,
    TokenizeError,
    _clean_stale,
    _shard_done,
    _write_json,
    _write_shard,
    assemble_index,
    cache_config,
)
from dose_model.codec.dac_codec import DacCodec, default_weights_path
from dose_model.dataset.audio import clip, mono_at_rate
from dose_model.dataset.manifest import read_rows
from dose_model.device import resolve_device
from dose_model.errors import InputError
from rmod_dose_common.pcm import pcm16_as_float, to_pcm16

OPTIONS = {"codec_weights", "device", "batch_size", "tf32"}
"""What ``rmod-build --tokens`` may set: the DAC weights file, the torch device of the
workers' encoding (default ``cpu``), rows per batch (default 8, as ``dose-tokenize``)
and TF32 on CUDA (default torch's; False: codes as on the CPU)."""

_CODECS: dict[tuple[str, str], DacCodec] = {}
_CODECS_LOCK = threading.Lock()


def as_read(audio: np.ndarray, sample_rate: int, codec_rate: int, samples: int) -> np.ndarray:
    """Float ``[channels, n]`` at ``sample_rate`` -> float32 ``[samples]`` at ``codec_rate``:
    what ``dose-tokenize`` reads from the 16-bit file the build would have written."""
    read = pcm16_as_float(to_pcm16(audio))  # [n, channels], as soundfile returns a file
    return clip(mono_at_rate(read, sample_rate, codec_rate), 0, samples)


def _load_codec(weights: str, device: str) -> DacCodec:
    """The codec at ``weights`` on ``device``, loaded once per process."""
    with _CODECS_LOCK:
        codec = _CODECS.get((weights, device))
        if codec is None:
            codec = _CODECS[(weights, device)] = DacCodec.load(weights, resolve_device(device))
    return codec


def _flag(value: Any) -> bool | None:
    """A boolean option as given in code or on a command line (true/false/none)."""
    if value is None or isinstance(value, bool):
        return value
    words = {"true": True, "false": False, "none": None}
    if str(value).lower() not in words:
        raise ValueError(f"expected true, false or none, got {value!r}")
    return words[str(value).lower()]


def _option(options: Mapping[str, Any], key: str, default: Any, parse: Any) -> Any:
    """``options[key]`` parsed (the command line gives strings); InputError naming it."""
    if key not in options:
        return default
    try:
        return parse(options[key])
    except (TypeError, ValueError) as exc:
        raise InputError(f"option {key}: {exc}") from None


class DacTokenSink:
    """The ``dac`` token sink (see the module docstring). ``out``: the token cache folder;
    ``options``: `OPTIONS`; ``build``: what rmod tells a sink of the build (``sample_rate``
    Hz, ``mixture_samples``, ``target_samples``, ``shard_size``, ``counts``, ``identity``).
    Construction checks the options and the folder and writes nothing."""

    def __init__(self, out: str, options: Mapping[str, Any], build: Mapping[str, Any]):
        unknown = sorted(set(options) - OPTIONS)
        if unknown:
            raise InputError(f"unknown option(s) {', '.join(unknown)} (known: {sorted(OPTIONS)})")
        weights = options.get("codec_weights") or default_weights_path()
        if weights is None:
            raise InputError(
                "no --codec-weights given and no cached DAC weights found "
                "(~/.cache/descript/dac/weights_44khz_8kbps_0.0.1.pth)"
            )
        if not Path(weights).is_file():
            raise InputError(f"{weights}: DAC weights file not found")
        self.out = Path(out)
        self.weights = str(Path(weights).resolve())
        self.device = str(options.get("device", "cpu"))
        self.batch_size = _option(options, "batch_size", 8, int)
        self.tf32 = _option(options, "tf32", None, _flag)
        if self.batch_size < 1:
            raise InputError(f"batch_size must be at least 1, got {self.batch_size}")
        self.rate = int(build["sample_rate"])
        # the lengths dose-tokenize takes from a row: frames / sample_rate
        self.seconds = (build["mixture_samples"] / self.rate, build["target_samples"] / self.rate)
        self.shard_size = int(build["shard_size"])
        self.identity = dict(build["identity"])
        self._codes: ShardCodes | None = None
        self._lengths = (0, 0)  # samples of a mixture and a one-shot at the codec's rate
        self._ids: list[str] = []
        self._batch: list[tuple[np.ndarray, np.ndarray]] = []
        self._check_out(read_only=True)

    # ------------------------------------------------------------- planning process
    def _codec(self) -> DacCodec:
        codec = _load_codec(self.weights, self.device)
        codec.tf32 = self.tf32
        return codec

    def _config(self, manifests: dict[str, Path], rows: dict[str, int]) -> dict:
        """The cache's settings (:func:`cache_config`) plus the build it comes from."""
        codec = self._codec()  # the workers' own codec: no second copy on another device
        config = cache_config(codec, manifests, rows, *self.seconds, self.shard_size)
        return config | {"source": {"rmod_build": self.identity}}

    def _check_out(self, read_only: bool) -> None:
        """Refuse a folder that holds something else than this build's cache; with
        ``read_only`` False, also write the incomplete index (the settings, ``"complete":
        false``) and remove what killed workers left."""
        index_path = self.out / INDEX_NAME
        if index_path.is_file():
            old = read_index(self.out).get("config", {})
            new = self._config({}, {})
            differ = sorted(
                k for k in set(old) | set(new) if k != "manifests" and old.get(k) != new.get(k)
            )
            if differ:
                raise InputError(
                    f"{self.out} holds a token cache of another build or other settings "
                    f"(differing: {', '.join(differ)}); use another --tokens or delete it"
                )
        elif self.out.is_dir() and any(
            not p.name.startswith(f".{INDEX_NAME}.") for p in self.out.iterdir()
        ):
            raise InputError(f"{self.out} exists, is not empty and holds no {INDEX_NAME}")
        if read_only:
            return
        self.out.mkdir(parents=True, exist_ok=True)
        index = {"format": FORMAT, "version": VERSION, "complete": False}
        _write_json(index_path, index | {"config": self._config({}, {})})
        for split in self.identity["counts"]:
            _clean_stale(self.out / split)

    def open(self) -> None:
        """Create the cache folder, or check that it holds this build's (a resume)."""
        self._check_out(read_only=False)

    def has_shard(self, split: str, number: int, size: int) -> bool:
        """True when the token shard is whole and holds ``size`` rows."""
        return _shard_done(self.out / split / f"{number:06d}", size) is not None

    def close(self, manifests: dict[str, str]) -> None:
        """Write the complete index: every shard read back and checked against the final
        manifests (:func:`assemble_index`, the merge of ``dose-tokenize``)."""
        paths = {split: Path(path) for split, path in manifests.items()}
        rows = {split: read_rows(path) for split, path in paths.items()}
        config = self._config(paths, {split: len(r) for split, r in rows.items()})
        splits, skipped = assemble_index(self.out, rows, self.shard_size)
        _write_json(
            self.out / INDEX_NAME,
            {"format": FORMAT, "version": VERSION, "complete": True, "config": config}
            | {"splits": splits, "skipped": skipped},
        )

    # ------------------------------------------------------------- worker
    def add(self, row: dict[str, Any], audio: dict[str, np.ndarray]) -> None:
        """Take one rendered example; every `batch_size` rows are encoded together.

        On the CPU a worker encodes on one thread: a build worker is one core's worth of
        work (rmod's workers limit their numeric libraries the same way), and torch's own
        pool beside the other workers would only oversubscribe the cores."""
        codec = self._codec()
        if codec.device.type == "cpu" and torch.get_num_threads() != 1:
            torch.set_num_threads(1)
        if self._codes is None:
            mix, shot = (round(s * codec.sample_rate) for s in self.seconds)
            self._lengths = (mix, shot)
            self._codes = ShardCodes(codec, self._lengths)
        mix, shot = self._lengths
        rate = int(row.get("sample_rate", self.rate))
        mixture = as_read(audio["mixture"], rate, codec.sample_rate, mix)
        shots = np.stack([as_read(audio[d], rate, codec.sample_rate, shot) for d in DRUMS])
        self._ids.append(str(row["id"]))
        self._batch.append((mixture, shots))
        if len(self._batch) == self.batch_size:
            self._codes.encode(self._batch)
            self._batch = []

    def commit_shard(self, split: str, number: int) -> None:
        """Encode what is left and publish the shard (a temporary folder renamed into
        place; an older copy of the shard is replaced)."""
        if self._codes is None:
            raise TokenizeError(f"shard {split}-{number:06d}: no example was added")
        self._codes.encode(self._batch)
        self._batch = []
        shard_dir = self.out / split / f"{number:06d}"
        if shard_dir.exists():  # a killed build committed it, but not its manifest part
            shutil.rmtree(shard_dir)
        _write_shard(shard_dir, self._ids, [], self._codes.arrays())
