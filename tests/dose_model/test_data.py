"""TokenDataset over a token cache and the padding collate (dose_model.train.batches)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from dose_model.cache.options import TokenizeOptions
from dose_model.cache.tokenize import tokenize_manifest
from dose_model.codec.tokens import PAD_ID, revert_mixture, revert_target
from dose_model.train.batches import TokenDataset, collate
from tests.dose_fixtures import write_fake_rmod, write_tiny_codec


@pytest.fixture(scope="module")
def tokdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    dataset = write_fake_rmod(root / "rmod", {"train": 3}, seed=11)
    weights = write_tiny_codec(root / "tiny.pth", seed=2)
    out = root / "tok"
    tokenize_manifest(
        TokenizeOptions(
            dataset, weights, out, batch_size=3, shard_size=2, oneshot_seconds=1.0, progress=False
        )
    )
    return out


def test_items_are_the_cached_codes_as_sequences(tokdir):
    ds = TokenDataset(tokdir, "train", "snare")
    ds.max_open_shards = 1  # items alternate between the two shards below
    assert len(ds) == 3 and ds.ids == ["train-000000", "train-000001", "train-000002"]
    assert ds.cached_frames == 87  # 1 s = 44100 samples -> ceil(44100 / 512)
    for i in range(len(ds)):
        mixture, target = ds[i]
        assert mixture.shape == (353, 9) and mixture.dtype == torch.long
        assert target.shape == (87 + 10, 9) and target.dtype == torch.long
        shard, row = divmod(i, 2)
        mix_codes = np.load(tokdir / "train" / f"{shard:06d}" / "mixture.npy")[row]
        snare_codes = np.load(tokdir / "train" / f"{shard:06d}" / "snare.npy")[row]
        assert np.array_equal(revert_mixture(mixture).numpy(), mix_codes)
        assert np.array_equal(revert_target(target).numpy(), snare_codes)
    assert len(ds._maps) == 1
    assert torch.equal(ds[-1][0], ds[2][0]) and torch.equal(ds[0][1], ds[-3][1])
    with pytest.raises(IndexError):
        ds[3]


def test_target_frames_crop_from_the_start(tokdir):
    full = TokenDataset(tokdir, "train", "hihat")
    crop = TokenDataset(tokdir, "train", "hihat", target_frames=40)
    _, target = crop[1]
    assert target.shape == (50, 9)
    assert torch.equal(revert_target(target), revert_target(full[1][1])[:, :40])
    with pytest.raises(ValueError, match="target_frames"):
        TokenDataset(tokdir, "train", "hihat", target_frames=88)


def test_bad_arguments_are_named(tokdir, tmp_path):
    with pytest.raises(ValueError, match="drum"):
        TokenDataset(tokdir, "train", "cowbell")
    with pytest.raises(ValueError, match="no split 'test'"):
        TokenDataset(tokdir, "test", "kick")
    with pytest.raises(FileNotFoundError, match="index.json"):
        TokenDataset(tmp_path, "train", "kick")


def test_collate_pads_with_pad_id_and_masks():
    gen = torch.Generator().manual_seed(0)
    items = [
        (
            torch.randint(1, 1025, (353, 9), generator=gen),
            torch.randint(1, 1025, (n, 9), generator=gen),
        )
        for n in (50, 97, 12)
    ]
    mixture, target, mask = collate(items)
    assert mixture.shape == (3, 353, 9) and target.shape == (3, 97, 9)
    assert mask.dtype == torch.bool and mask.shape == (3, 97)
    assert mask.sum(1).tolist() == [50, 97, 12]
    for b, (_, t) in enumerate(items):
        n = t.shape[0]
        assert torch.equal(target[b, :n], t)
        assert (target[b, n:] == PAD_ID).all()
        assert mask[b, :n].all() and not mask[b, n:].any()
    with pytest.raises(ValueError, match="empty"):
        collate([])


def test_dataloader_with_workers_and_pickling(tokdir):
    ds = TokenDataset(tokdir, "train", "kick", target_frames=20)
    _ = ds[0]  # opens memory maps, which must not travel with the pickle
    clone = pickle.loads(pickle.dumps(ds))
    assert len(clone._maps) == 0 and torch.equal(clone[0][1], ds[0][1])
    loader = DataLoader(ds, batch_size=2, collate_fn=collate, num_workers=1)
    batches = list(loader)
    assert [b[0].shape[0] for b in batches] == [2, 1]
    assert batches[0][1].shape == (2, 30, 9) and batches[0][2].all()
    assert torch.equal(batches[1][0][0], ds[2][0])


def test_loader_batches_equal_the_per_item_path(tokdir):
    """BatchLoader (one permutation per epoch, whole-batch gather and delay pattern, built
    in a thread) gives, step for step and rank for rank, the old path's batches: collate of
    the items of rank_share(global_batch(seed, step))."""
    from dose_model.model.config import TrainConfig
    from dose_model.train.distributed import DistEnv
    from dose_model.train.loader import BatchLoader, global_batch, rank_share

    ds = TokenDataset(tokdir, "train", "snare", target_frames=30)
    ds.max_open_shards = 1
    cfg = TrainConfig(batch_size=2, max_steps=6, seed=3)
    for env in (DistEnv(), DistEnv(rank=1, world=2)):
        loader = BatchLoader(ds, cfg, env, "cpu")
        try:
            for step in range(cfg.max_steps):  # 6 epochs of one batch: a new order each
                idx = rank_share(global_batch(3, step, len(ds), 2), env.rank, env.world)
                assert np.array_equal(loader.indices(step), idx)
                expected = collate([ds[int(i)] for i in idx])
                got = loader.get(step)
                assert len(got) == 3
                for a, b in zip(got, expected, strict=True):
                    assert a.dtype == b.dtype and torch.equal(a, b)
        finally:
            loader.close()
    order = [2, 0, 1, 2]  # any order, across shards, with repeats
    for a, b in zip(ds.batch(order), collate([ds[i] for i in order]), strict=True):
        assert torch.equal(a, b)


def _copy_cache(tokdir, dest):
    import shutil

    shutil.copytree(tokdir, dest)
    return dest


def test_a_corrupted_cache_is_named_not_trained_on(tokdir, tmp_path, capsys):
    """Checksums in the index: a truncated file is caught when the cache opens, changed bytes
    when the shard is first read, out-of-range codes when they are read, and every byte by
    dose-tokenize --verify; each is a one-line error naming the file."""
    import json

    from dose_model.cache.index import CacheError, file_record, verify_cache
    from dose_model.cli.tokenize import main as tokenize_main

    assert verify_cache(tokdir) == 2 * 4  # two shards x (mixture + three one-shots)
    assert tokenize_main(["--verify", str(tokdir), "--no-progress"]) == 0
    assert "8 files" in capsys.readouterr().out
    index = json.loads((tokdir / "index.json").read_text())
    assert set(index["splits"]["train"]["shards"][0]["files"]) == {
        "mixture.npy", "kick.npy", "snare.npy", "hihat.npy"
    }  # fmt: skip

    cut = _copy_cache(tokdir, tmp_path / "cut")
    victim = cut / "train" / "000001" / "kick.npy"
    victim.write_bytes(victim.read_bytes()[:-10])
    with pytest.raises(CacheError, match=f"{victim}: .* bytes, the index records"):
        TokenDataset(cut, "train", "kick")

    flipped = _copy_cache(tokdir, tmp_path / "flipped")
    victim = flipped / "train" / "000000" / "mixture.npy"
    data = bytearray(victim.read_bytes())
    data[-7] ^= 0xFF
    victim.write_bytes(bytes(data))
    ds = TokenDataset(flipped, "train", "kick")  # sizes are fine
    with pytest.raises(CacheError, match=f"{victim}: content differs"):
        ds.batch([0])
    assert tokenize_main(["--verify", str(flipped), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert str(victim) in err and err.count("\n") == 1 and "Traceback" not in err

    wild = _copy_cache(tokdir, tmp_path / "wild")
    victim = wild / "train" / "000001" / "hihat.npy"
    codes = np.load(victim)
    codes[0, 3, 5] = 5000  # a code no codebook has, with checksums that match
    np.save(victim, codes)
    index = json.loads((wild / "index.json").read_text())
    index["splits"]["train"]["shards"][1]["files"]["hihat.npy"] = file_record(victim)
    (wild / "index.json").write_text(json.dumps(index))
    with pytest.raises(CacheError, match=f"{victim}: codes outside \\[0, 1024\\)"):
        TokenDataset(wild, "train", "hihat").batch([2])
    with pytest.raises(CacheError, match="codes outside"):
        TokenDataset(wild, "train", "hihat")[2]
    with pytest.raises(ValueError, match="a batch needs at least one item"):
        TokenDataset(wild, "train", "hihat").batch([])  # was a TypeError deep in torch
    with pytest.raises(CacheError, match="codes outside"):
        verify_cache(wild)

    for text in ("{not json", '{"ids": [1, 2]}', "[]"):
        unreadable = _copy_cache(tokdir, tmp_path / f"meta{len(text)}")
        victim = unreadable / "train" / "000000" / "meta.json"
        victim.write_text(text)
        with pytest.raises(CacheError, match=f"{victim}: "):
            _ = TokenDataset(unreadable, "train", "kick").ids


def test_training_on_a_token_cache_resumes_exactly(tokdir, tmp_path):
    """The whole-batch path (TokenDataset.batch through BatchLoader): stop after 2 of 5
    updates, resume, same weights as the uninterrupted run; the checkpoint names the data."""
    from dose_model.model.checkpoints import read_checkpoint
    from dose_model.model.config import ModelConfig, TrainConfig
    from dose_model.train.loop import train
    from dose_model.train.options import TrainOptions

    model = ModelConfig(num_layers=1, num_heads=2, d_model=16, dropout=0.1, max_target_len=30)
    cfg = TrainConfig(lr=1e-3, warmup_steps=1, max_steps=5, batch_size=2, target_frames=20,
                      log_every=1, save_every=100, seed=4)  # fmt: skip
    ds = TokenDataset(tokdir, "train", "hihat", target_frames=20)
    train(ds, None, TrainOptions(tmp_path / "a", model, cfg, progress=False))
    train(ds, None, TrainOptions(tmp_path / "b", model, cfg, progress=False, stop_after=2))
    train(ds, None, TrainOptions(tmp_path / "b", model, cfg, progress=False, resume=True))
    a, b = (read_checkpoint(tmp_path / r / "last.ckpt") for r in "ab")
    assert a["step"] == b["step"] == 5
    assert all(torch.equal(v, b["model"][k]) for k, v in a["model"].items())
    assert a["data"] == ds.identity and a["data"]["drum"] == "hihat"
    assert a["data"]["target_frames"] == 20 and a["data"]["mixture_frames"] == 345
