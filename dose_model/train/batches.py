"""PyTorch dataset over a token cache (see :mod:`dose_model.cache.tokenize`) and its collate.

One item = (mixture tokens long [353, 9], target tokens long [target_frames + 10, 9]) for
one drum class, built from the cached int16 codes with
:func:`dose_model.codec.tokens.mixture_sequence` and :func:`dose_model.codec.tokens.target_sequence`.
Shards are memory-mapped, so a dataset of a million rows costs no RAM up front; at most
:data:`MAX_OPEN_SHARDS` are open at once, and the maps are reopened lazily in each
DataLoader worker. Opening a dataset checks every shard file's size against the index;
mapping a shard checks its quick checksum; every code read is checked against the codebook
size (`dose_model.cache.index`): a corrupted cache is a `CacheError` naming the file.

Training reads whole batches with `TokenDataset.batch` (one gather per shard, the delay
pattern applied to the whole batch at once); it equals `collate` of the items.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch.utils.data import Dataset

from dose_model import DRUMS
from dose_model.cache.index import CacheError, check_codes, check_shard_files, read_index
from dose_model.codec.tokens import PAD_ID, mixture_sequence, target_sequence
from dose_model.errors import InputError

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
"""(mixture [B, M, K] long, target [B, L, K] long, target_mask [B, L] bool)."""


class ExampleSet(Protocol):
    """What training reads (for annotations): a sized set of items ``(mixture [M, K],
    target [L, K])`` long tensors, such as `TokenDataset` (whose ``batch(indices)`` training
    uses when it is there) or a list of such pairs."""

    def __len__(self) -> int: ...

    def __getitem__(self, i: int, /) -> tuple[torch.Tensor, torch.Tensor]: ...


MAX_OPEN_SHARDS = 64
"""Shards a dataset keeps memory-mapped at once (per process)."""


class TokenDataset(Dataset):
    """Rows of one split of a token cache, for one drum class.

    Args:
        tokdir: the token cache folder (holds ``index.json``).
        split: ``train``, ``valid`` or ``test`` (any split the cache holds).
        drum: ``kick``, ``snare`` or ``hihat``.
        target_frames: one-shot frames kept from the start (paper code: 90 for kick and
            snare, 40 for hi-hat; paper text: 2 s = 173). None = all cached frames.

    ``ids[i]`` is the manifest id of item ``i``.
    """

    def __init__(
        self,
        tokdir: str | os.PathLike,
        split: str,
        drum: str,
        target_frames: int | None = None,
    ):
        self.tokdir = Path(tokdir)
        index = read_index(self.tokdir)
        if not index.get("complete"):
            raise CacheError(
                f"{self.tokdir}: token cache is incomplete; rerun dose-tokenize to finish it"
            )
        if drum not in DRUMS:
            raise ValueError(f"drum must be one of {DRUMS}, got {drum!r}")
        if split not in index["splits"]:
            raise CacheError(f"{self.tokdir}: no split {split!r} (has {sorted(index['splits'])})")
        config = index["config"]
        self.cached_frames = int(config["oneshot_frames"])
        self.mixture_frames = int(config["mixture_frames"])
        if target_frames is None:
            target_frames = self.cached_frames
        if not 1 <= target_frames <= self.cached_frames:
            raise InputError(
                f"target_frames must lie in [1, {self.cached_frames}] (cached one-shot frames), "
                f"got {target_frames}"
            )
        self.split, self.drum, self.target_frames = split, drum, int(target_frames)
        self.codebook_size = int(config["codec"]["codebook_size"])
        self.shards = index["splits"][split]["shards"]
        self.files = ["mixture.npy", f"{drum}.npy"]
        for shard in self.shards:
            check_shard_files(self.tokdir, shard, self.files, quick=False)
        self.shard_dirs = [self.tokdir / s["dir"] for s in self.shards]
        self.shard_rows = [int(s["rows"]) for s in self.shards]
        self.offsets = np.cumsum([0, *self.shard_rows]).tolist()
        self.identity = _identity(index, drum, self.target_frames)
        self._ids: list[str] | None = None
        self._maps: OrderedDict[int, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._lock = threading.Lock()
        self._checked: set[int] = set()
        self.max_open_shards = MAX_OPEN_SHARDS

    def __len__(self) -> int:
        return self.offsets[-1]

    @property
    def ids(self) -> list[str]:
        """Manifest ids in item order (read from the shards' meta.json on first use)."""
        if self._ids is None:
            self._ids = []
            for shard in self.shard_dirs:
                meta = shard / "meta.json"
                try:
                    ids = json.loads(meta.read_text(encoding="utf-8"))["ids"]
                except (OSError, ValueError, TypeError, KeyError) as err:
                    raise CacheError(f"{meta}: unreadable shard meta ({err!r})") from None
                if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
                    raise CacheError(f"{meta}: 'ids' is not a list of row ids")
                self._ids += ids
        return self._ids

    def _shard(self, s: int) -> tuple[np.ndarray, np.ndarray]:
        """Memory maps of shard ``s`` (the least recently used beyond ``max_open_shards``
        are closed: each map holds a file descriptor). Safe to call from the training
        thread and the loader's thread at once."""
        with self._lock:
            return self._open_shard(s)

    def _open_shard(self, s: int) -> tuple[np.ndarray, np.ndarray]:
        if s in self._maps:
            self._maps.move_to_end(s)
        else:
            while len(self._maps) >= max(1, self.max_open_shards):
                self._maps.popitem(last=False)
            if s not in self._checked:
                check_shard_files(self.tokdir, self.shards[s], self.files, quick=True)
                self._checked.add(s)
            shard = self.shard_dirs[s]
            try:
                mix = np.load(shard / "mixture.npy", mmap_mode="r", allow_pickle=False)
                shot = np.load(shard / f"{self.drum}.npy", mmap_mode="r", allow_pickle=False)
            except (OSError, ValueError) as err:
                raise CacheError(f"{shard}: cannot map the shard's arrays ({err})") from None
            rows = self.shard_rows[s]
            if mix.shape[0] != rows or shot.shape[0] != rows:
                raise CacheError(f"{shard}: holds {mix.shape[0]} rows, index says {rows}")
            self._maps[s] = (mix, shot)
            return mix, shot
        return self._maps[s]

    def _gather(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Raw codes of the items ``indices`` (in that order): int64 mixture [B, 9, T] and
        one-shot [B, 9, target_frames], read with one gather per shard and range-checked."""
        idx = np.asarray(indices, dtype=np.int64)
        if idx.size == 0:
            raise ValueError("a batch needs at least one item")
        if idx.min() < 0 or idx.max() >= len(self):
            raise IndexError(f"indices out of range for {len(self)} items")
        shard_of = np.searchsorted(self.offsets, idx, side="right") - 1
        mix_out: np.ndarray | None = None
        shot_out: np.ndarray | None = None
        for s in np.unique(shard_of):
            mix, shot = self._shard(int(s))
            sel = np.flatnonzero(shard_of == s)
            rows = idx[sel] - self.offsets[s]
            order = np.argsort(rows, kind="stable")  # memory maps read best in order
            m = mix[rows[order]]
            t = shot[rows[order], :, : self.target_frames]
            check_codes(m, self.codebook_size, self.shard_dirs[s] / "mixture.npy")
            check_codes(t, self.codebook_size, self.shard_dirs[s] / self.files[1])
            if mix_out is None:
                mix_out = np.empty((len(idx), *m.shape[1:]), dtype=np.int64)
                shot_out = np.empty((len(idx), *t.shape[1:]), dtype=np.int64)
            assert shot_out is not None  # made with mix_out
            mix_out[sel[order]] = m
            shot_out[sel[order]] = t
        assert mix_out is not None and shot_out is not None  # idx is not empty: a shard was read
        return mix_out, shot_out

    def batch(self, indices: Sequence[int] | np.ndarray) -> Batch:
        """The batch of items ``indices``, equal to ``collate([self[i] for i in indices])``:
        (mixture long [B, T + 8, 9], target long [B, target_frames + 10, 9], mask all True)."""
        mix, shot = self._gather(np.asarray(indices))
        target = target_sequence(torch.from_numpy(shot))
        mask = torch.ones(target.shape[:2], dtype=torch.bool)
        return mixture_sequence(torch.from_numpy(mix)), target, mask

    def codes(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw codes of item ``i``: mixture long [9, 345], one-shot long [9, target_frames]."""
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} items")
        i %= len(self)
        s = bisect.bisect_right(self.offsets, i) - 1
        mix, shot = self._shard(s)
        r = i - self.offsets[s]
        mixture = np.array(mix[r], dtype=np.int64)
        target = np.array(shot[r, :, : self.target_frames], dtype=np.int64)
        check_codes(mixture, self.codebook_size, self.shard_dirs[s] / "mixture.npy")
        check_codes(target, self.codebook_size, self.shard_dirs[s] / self.files[1])
        return torch.from_numpy(mixture), torch.from_numpy(target)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(mixture tokens long [mixture_frames + 8, 9], target tokens long
        [target_frames + 10, 9])."""
        mixture, target = self.codes(i)
        return mixture_sequence(mixture), target_sequence(target)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_maps"] = OrderedDict()  # memory maps are reopened in the receiving process
        del state["_lock"]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()


def _identity(index: dict, drum: str, target_frames: int) -> dict:
    """What a model trained on this data depends on (recorded in checkpoints; a resume must
    match it): the drum, the cache's content identity (codec and manifests' SHA-256, lengths;
    not its folder, which may move) and the lengths a user of the model needs."""
    config = index["config"]
    content = {k: v for k, v in config.items() if k != "manifests"}
    content["manifests"] = {s: m.get("sha256") for s, m in config.get("manifests", {}).items()}
    text = json.dumps(content, sort_keys=True)
    return {
        "drum": drum,
        "token_cache": hashlib.sha256(text.encode("utf-8")).hexdigest(),
        "sample_rate": int(config["codec"]["sample_rate"]),
        "mixture_seconds": float(config["mixture_seconds"]),
        "mixture_frames": int(config["mixture_frames"]),
        "target_frames": int(target_frames),
    }


def collate(
    batch: list[tuple[torch.Tensor, torch.Tensor]],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Stack items into (mixture long [B, 353, 9], target long [B, Lmax, 9],
    target_mask bool [B, Lmax]).

    Targets shorter than the longest are padded at the end with :data:`PAD_ID`;
    ``target_mask`` is True at real positions (start and end rows included) and False at
    padding. Mixtures must all have the same length.
    """
    if not batch:
        raise ValueError("collate got an empty batch")
    mixtures = [m for m, _ in batch]
    if len({m.shape for m in mixtures}) != 1:
        raise ValueError(f"mixtures differ in shape: {sorted({tuple(m.shape) for m in mixtures})}")
    lengths = [t.shape[0] for _, t in batch]
    l_max = max(lengths)
    n_books = batch[0][1].shape[1]
    target = torch.full((len(batch), l_max, n_books), PAD_ID, dtype=torch.long)
    mask = torch.zeros(len(batch), l_max, dtype=torch.bool)
    for b, (_, t) in enumerate(batch):
        target[b, : t.shape[0]] = t
        mask[b, : t.shape[0]] = True
    return torch.stack(mixtures).long(), target, mask
