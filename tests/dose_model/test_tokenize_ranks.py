"""dose-tokenize on many processes (dose_model.cache.ranks): two CPU ranks plus a merge, and
two torchrun-style ranks, write the bytes of one process; a merge names missing shards; the
reader threads run ahead of the codec."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

import dose_model.cache.tokenize as T
from dose_model.cache.index import read_index
from dose_model.cache.options import TokenizeOptions
from dose_model.cache.ranks import TokenizeRank
from dose_model.cache.tokenize import MissingShards, tokenize_manifest
from tests.dose_fixtures import one_thread, write_fake_rmod, write_tiny_codec  # noqa: F401

SHOT_S = 0.25
SETTINGS = {"batch_size": 2, "shard_size": 1, "oneshot_seconds": SHOT_S, "progress": False}
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    # 3 train + 2 valid rows, one per shard: ordinals 0..4, rank 0 owns 0, 2, 4
    return write_fake_rmod(
        tmp_path_factory.mktemp("rmod"), {"train": 3, "valid": 2}, seed=7, mixture_seconds=1.0
    )


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    return write_tiny_codec(tmp_path_factory.mktemp("codec") / "tiny.pth", seed=2)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, dataset, weights) -> Path:
    out = tmp_path_factory.mktemp("tok") / "one"
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # as one_thread, which a module fixture runs before
    try:
        tokenize_manifest(TokenizeOptions(dataset, weights, out, **SETTINGS))
    finally:
        torch.set_num_threads(before)
    return out


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def cli(dataset: Path, weights: Path, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "dose_model.cli.tokenize", "--manifest", str(dataset),
        "--codec-weights", str(weights), "--out", str(out), "--batch-size", "2",
        "--shard-size", "1", "--oneshot-seconds", str(SHOT_S), "--workers", "1",
        "--no-progress", *extra,
    ]  # fmt: skip


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    env["OMP_NUM_THREADS"] = "1"
    return env | extra


def run_together(cmds: list[list[str]], envs: list[dict]) -> list[subprocess.CompletedProcess]:
    procs = [
        subprocess.Popen(c, env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for c, e in zip(cmds, envs, strict=True)
    ]
    done = []
    for p, cmd in zip(procs, cmds, strict=True):
        out, err = p.communicate(timeout=300)
        done.append(subprocess.CompletedProcess(cmd, p.returncode, out, err))
    return done


def test_rank_ownership_and_its_checks():
    part = TokenizeRank(1, 3)
    assert [g for g in range(8) if part.owns(g)] == [1, 4, 7]
    assert not part.writes_index and TokenizeRank().writes_index
    assert not any(TokenizeRank(merge=True).owns(g) for g in range(4))
    with pytest.raises(ValueError, match="--rank"):
        TokenizeRank(2, 2)
    with pytest.raises(ValueError, match="--merge"):
        TokenizeRank(0, 2, merge=True)


@pytest.mark.slow
def test_two_rank_processes_then_merge_equal_one_process(tmp_path, dataset, weights, reference):
    out = tmp_path / "tok"
    ranks = run_together(
        [cli(dataset, weights, out, "--rank", str(r), "--world-size", "2") for r in (0, 1)],
        [child_env(), child_env()],
    )
    for r, proc in enumerate(ranks):
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert proc.stdout.startswith(f"rank {r} of 2: tokenized {3 - r} rows")
    assert read_index(out)["complete"] is False  # no rank wrote the shard list
    assert "splits" not in read_index(out)
    merged = subprocess.run(
        cli(dataset, weights, out, "--merge"), env=child_env(), capture_output=True, text=True
    )
    assert merged.returncode == 0, merged.stderr[-2000:]
    assert merged.stdout.startswith("tokenized 0 rows") and "5 kept" in merged.stdout
    assert tree_bytes(out) == tree_bytes(reference)


def test_a_merge_names_the_shards_no_rank_finished(tmp_path, dataset, weights, reference):
    out = tmp_path / "tok"
    summary = tokenize_manifest(
        TokenizeOptions(dataset, weights, out, **SETTINGS, rank=0, world_size=2)
    )
    assert summary.shards_written == 3 and summary.rows_encoded == 3
    assert sorted(p.name for p in (out / "train").iterdir()) == ["000000", "000002"]
    assert [p.name for p in (out / "valid").iterdir()] == ["000001"]
    with pytest.raises(MissingShards, match="2 shard") as err:
        tokenize_manifest(TokenizeOptions(dataset, weights, out, **SETTINGS, merge=True))
    assert err.value.missing == ["train/000001", "valid/000000"]
    assert read_index(out)["complete"] is False
    # a shard file cut short is not a finished shard either
    tokenize_manifest(TokenizeOptions(dataset, weights, out, **SETTINGS, rank=1, world_size=2))
    kick = out / "train" / "000002" / "kick.npy"
    kick.write_bytes(kick.read_bytes()[:-7])
    with pytest.raises(MissingShards) as err:
        tokenize_manifest(TokenizeOptions(dataset, weights, out, **SETTINGS, merge=True))
    assert err.value.missing == ["train/000002"]
    # rank 0 again redoes just that shard, then the merge gives the one-process bytes
    again = tokenize_manifest(
        TokenizeOptions(dataset, weights, out, **SETTINGS, rank=0, world_size=2)
    )
    assert again.shards_written == 1 and again.shards_kept == 2
    tokenize_manifest(TokenizeOptions(dataset, weights, out, **SETTINGS, merge=True))
    assert tree_bytes(out) == tree_bytes(reference)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_torchrun_ranks_meet_and_rank_0_merges(tmp_path, dataset, weights, reference):
    """What torchrun sets (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT), without torchrun:
    each rank encodes its shards, they meet at a gloo barrier and rank 0 writes the index."""
    out = tmp_path / "tok"
    port = str(_free_port())
    envs = [
        child_env(RANK=str(r), LOCAL_RANK=str(r), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                  MASTER_PORT=port)
        for r in (0, 1)
    ]  # fmt: skip
    ranks = run_together([cli(dataset, weights, out), cli(dataset, weights, out)], envs)
    for proc in ranks:
        assert proc.returncode == 0, proc.stderr[-2000:]
    assert ranks[0].stdout.startswith("tokenized 0 rows") and "5 kept" in ranks[0].stdout
    assert ranks[1].stdout.startswith("rank 1 of 2: tokenized 2 rows")
    assert tree_bytes(out) == tree_bytes(reference)


def test_reader_threads_run_ahead_of_the_codec(tmp_path, dataset, weights, monkeypatch):
    """While the codec encodes batch 0, the reader threads already load batch 1. Proven with
    events, not timing: the first encode waits (up to 60 s) until a row of batch 1 starts
    loading, which can only happen if loading runs beside encoding; the timestamps then
    show that load starting before that encode ended."""
    events: list[tuple[float, str, str]] = []
    started = {r: threading.Event() for r in ("train-000002",)}
    load_row, encode = T.load_row, T._encode

    def tracked_load(row, *args):
        events.append((time.perf_counter(), "load", row.id))
        if row.id in started:
            started[row.id].set()
        return load_row(row, *args)

    def tracked_encode(codec, audio):
        first = not any(kind == "encode-start" for _, kind, _ in events)
        events.append((time.perf_counter(), "encode-start", str(len(audio))))
        if first:  # batch 0's mixtures: batch 1 (rows 2, 3) must be loading by now
            assert started["train-000002"].wait(60), "the next batch was not read ahead"
        codes = encode(codec, audio)
        events.append((time.perf_counter(), "encode-end", str(len(audio))))
        return codes

    monkeypatch.setattr(T, "load_row", tracked_load)
    monkeypatch.setattr(T, "_encode", tracked_encode)
    train = dataset / "manifests" / "train.jsonl"
    settings = SETTINGS | {"shard_size": 4}
    tokenize_manifest(TokenizeOptions(train, weights, tmp_path / "tok", **settings, workers=2))
    first_end = next(t for t, kind, _ in events if kind == "encode-end")
    ahead = next(t for t, kind, rid in events if kind == "load" and rid == "train-000002")
    assert ahead < first_end
    assert sorted(rid for _, kind, rid in events if kind == "load") == [
        f"train-00000{i}" for i in range(3)
    ]


def test_a_rank_removes_only_its_own_leftovers(tmp_path, dataset, weights):
    """What a killed rank left (a temporary shard folder) is removed by that rank's rerun;
    another rank, perhaps still writing its own, leaves it alone."""
    out = tmp_path / "tok"
    tokenize_manifest(TokenizeOptions(dataset, weights, out, **SETTINGS, rank=0, world_size=2))
    leftover = out / "train" / f"{T.TMP_PREFIX}000001.4242"  # shard ordinal 1: rank 1's
    leftover.mkdir()
    tokenize_manifest(TokenizeOptions(dataset, weights, out, **SETTINGS, rank=0, world_size=2))
    assert leftover.is_dir()
    tokenize_manifest(TokenizeOptions(dataset, weights, out, **SETTINGS, rank=1, world_size=2))
    assert not leftover.exists()
