"""PyTorch dataset over a token cache (see :mod:`dose_model.tokenize`) and its collate.

One item = (mixture tokens long [353, 9], target tokens long [target_frames + 10, 9]) for
one drum class, built from the cached int16 codes with
:func:`dose_model.tokens.mixture_sequence` and :func:`dose_model.tokens.target_sequence`.
Shards are memory-mapped, so a dataset of a million rows costs no RAM up front; at most
:data:`MAX_OPEN_SHARDS` are open at once, and the maps are reopened lazily in each
DataLoader worker.
"""

from __future__ import annotations

import bisect
import os
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from dose_model import DRUMS
from dose_model.tokenize import read_index
from dose_model.tokens import PAD_ID, mixture_sequence, target_sequence

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
            raise ValueError(
                f"{self.tokdir}: token cache is incomplete; rerun dose-tokenize to finish it"
            )
        if drum not in DRUMS:
            raise ValueError(f"drum must be one of {DRUMS}, got {drum!r}")
        if split not in index["splits"]:
            raise ValueError(f"{self.tokdir}: no split {split!r} (has {sorted(index['splits'])})")
        config = index["config"]
        self.cached_frames = int(config["oneshot_frames"])
        self.mixture_frames = int(config["mixture_frames"])
        if target_frames is None:
            target_frames = self.cached_frames
        if not 1 <= target_frames <= self.cached_frames:
            raise ValueError(
                f"target_frames must lie in [1, {self.cached_frames}] (cached one-shot frames), "
                f"got {target_frames}"
            )
        self.split, self.drum, self.target_frames = split, drum, int(target_frames)
        self.shard_dirs = [self.tokdir / s["dir"] for s in index["splits"][split]["shards"]]
        self.shard_rows = [int(s["rows"]) for s in index["splits"][split]["shards"]]
        self.offsets = np.cumsum([0, *self.shard_rows]).tolist()
        self._ids: list[str] | None = None
        self._maps: OrderedDict[int, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self.max_open_shards = MAX_OPEN_SHARDS

    def __len__(self) -> int:
        return self.offsets[-1]

    @property
    def ids(self) -> list[str]:
        """Manifest ids in item order (read from the shards' meta.json on first use)."""
        if self._ids is None:
            import json

            self._ids = []
            for shard in self.shard_dirs:
                self._ids += json.loads((shard / "meta.json").read_text(encoding="utf-8"))["ids"]
        return self._ids

    def _shard(self, s: int) -> tuple[np.ndarray, np.ndarray]:
        """Memory maps of shard ``s`` (the least recently used beyond ``max_open_shards``
        are closed: each map holds a file descriptor)."""
        if s in self._maps:
            self._maps.move_to_end(s)
        else:
            while len(self._maps) >= max(1, self.max_open_shards):
                self._maps.popitem(last=False)
            shard = self.shard_dirs[s]
            mix = np.load(shard / "mixture.npy", mmap_mode="r")
            shot = np.load(shard / f"{self.drum}.npy", mmap_mode="r")
            rows = self.shard_rows[s]
            if mix.shape[0] != rows or shot.shape[0] != rows:
                raise ValueError(f"{shard}: holds {mix.shape[0]} rows, index says {rows}")
            self._maps[s] = (mix, shot)
        return self._maps[s]

    def codes(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw codes of item ``i``: mixture long [9, 345], one-shot long [9, target_frames]."""
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} items")
        i %= len(self)
        s = bisect.bisect_right(self.offsets, i) - 1
        mix, shot = self._shard(s)
        r = i - self.offsets[s]
        mixture = torch.from_numpy(np.array(mix[r], dtype=np.int64))
        target = torch.from_numpy(np.array(shot[r, :, : self.target_frames], dtype=np.int64))
        return mixture, target

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(mixture tokens long [mixture_frames + 8, 9], target tokens long
        [target_frames + 10, 9])."""
        mixture, target = self.codes(i)
        return mixture_sequence(mixture), target_sequence(target)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_maps"] = OrderedDict()  # memory maps are reopened in the receiving process
        return state


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
