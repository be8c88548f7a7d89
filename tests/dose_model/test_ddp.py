"""Data-parallel training: 2 CPU processes (gloo) equal one process with the same global batch."""

import csv
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from dose_model.model.checkpoints import read_checkpoint
from dose_model.model.config import ModelConfig, TrainConfig
from dose_model.model.transformer import DoseTransformer
from dose_model.train.loop import train
from dose_model.train.options import TrainOptions

MODEL = ModelConfig(
    num_layers=2, num_heads=2, d_model=16, dropout=0.0, mixture_len=24, max_target_len=20
)
CFG = TrainConfig(
    lr=3e-3,
    warmup_steps=2,
    max_steps=4,
    batch_size=4,
    eval_every=2,
    log_every=2,
    save_every=100,
    target_frames=8,
    seed=7,
)


def dataset(n, seed):
    """n random (mixture [24, 9], target [<= 18, 9]) pairs with ragged target lengths."""
    g = torch.Generator().manual_seed(seed)
    items = []
    for i in range(n):
        tgt = torch.randint(1, 1025, (18 - i % 3, 9), generator=g)
        tgt[0] = tgt[-1] = 0
        items.append((torch.randint(1, 1025, (24, 9), generator=g), tgt))
    return items


def _worker(rank, world, port, out):
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
    )
    torch.set_num_threads(1)
    try:
        train(
            dataset(10, 0),
            dataset(3, 1),
            TrainOptions(out, MODEL, CFG, device="cpu", progress=False),
        )
    finally:
        torch.distributed.destroy_process_group()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.slow
@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed missing")
def test_two_gloo_processes_equal_single_process(tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        single = train(
            dataset(10, 0),
            dataset(3, 1),
            TrainOptions(tmp_path / "one", MODEL, CFG, progress=False),
        )
    finally:
        torch.set_num_threads(threads)
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path / "two")), nprocs=2, join=True)
    a = read_checkpoint(tmp_path / "one" / "last.ckpt")
    b = read_checkpoint(tmp_path / "two" / "last.ckpt")
    assert a["step"] == b["step"] == single.step == 4
    assert b["world_size"] == 2
    # Tolerance: weights are 1e-2..1; float sums differ in order between one batch of 4 and two
    # of 2. The attention key bias has a mathematically zero gradient, so Adam turns its
    # float noise into updates of ~1e-7: an absolute tolerance covers it.
    for key, value in a["model"].items():
        torch.testing.assert_close(b["model"][key], value, rtol=1e-5, atol=1e-6, msg=key)
    torch.manual_seed(CFG.seed)
    init = DoseTransformer(MODEL).state_dict()  # the weights training started from
    moved = max((a["model"][k] - v).abs().max().item() for k, v in init.items())
    assert moved > 1e-3  # training did change the weights
    for ra, rb in zip(
        _rows(tmp_path / "one" / "metrics.csv"),
        _rows(tmp_path / "two" / "metrics.csv"),
        strict=True,
    ):
        for col in ("train_loss", "full_loss", "onset_loss", "valid_loss", "valid_accuracy"):
            assert float(ra[col]) == pytest.approx(float(rb[col]), rel=1e-5), col
