"""Training: overfitting, exact resume, data order, early stopping, metrics, end-to-end CLI."""

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from dose_model.model.checkpoints import load_model, read_checkpoint
from dose_model.model.config import ConfigError, ModelConfig, TrainConfig
from dose_model.model.transformer import DoseTransformer
from dose_model.train.loader import TrainingError, global_batch, rank_share
from dose_model.train.log import METRIC_FIELDS
from dose_model.train.loop import train
from dose_model.train.options import TrainOptions
from tests.dose_fixtures import one_thread  # noqa: F401 (autouse fixture)

MIX = 32  # a short mixture keeps these CPU tests fast; the end-to-end test uses 353
MODEL = ModelConfig(
    num_layers=2, num_heads=2, d_model=32, dropout=0.0, mixture_len=MIX, max_target_len=24
)


class RandomTokens:
    """n random (mixture [mix, 9], target [frames + 10, 9]) pairs; with ``ragged`` some
    targets are 1-2 frames shorter (padding in a batch)."""

    def __init__(self, n, frames=12, seed=0, ragged=False, mix_len=MIX):
        g = torch.Generator().manual_seed(seed)
        self.items = []
        for i in range(n):
            f = frames - (i % 3 if ragged else 0)
            mix = torch.randint(1, 1025, (mix_len, 9), generator=g)
            tgt = torch.randint(1, 1025, (f + 10, 9), generator=g)
            tgt[0] = 0
            tgt[-1] = 0
            self.items.append((mix, tgt))

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def read_rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_tiny_model_overfits_eight_examples(tmp_path):
    """8 examples, 60 updates: the summed loss (2 x ln 1025 = 13.9 at start) falls below 1.0
    (about 0.2 in practice)."""
    data = RandomTokens(8, ragged=True)
    cfg = TrainConfig(
        lr=1e-2,
        weight_decay=0.0,
        warmup_steps=5,
        max_steps=60,
        batch_size=8,
        eval_every=30,
        log_every=10,
        save_every=30,
        target_frames=12,
    )
    result = train(data, data, TrainOptions(tmp_path, MODEL, cfg, progress=False))
    rows = read_rows(tmp_path / "metrics.csv")
    assert list(rows[0]) == list(METRIC_FIELDS)
    first, last = float(rows[0]["train_loss"]), float(rows[-1]["train_loss"])
    assert first > 10.0
    assert last < 1.0, f"train loss only fell to {last}"
    assert result.best_valid < 1.0 and float(rows[-1]["valid_accuracy"]) > 0.9
    assert [int(r["step"]) for r in rows] == [10, 20, 30, 40, 50, 60]
    model = load_model(tmp_path / "best.ckpt")  # the checkpoint loads (weights_only)
    assert model.config == MODEL
    ckpt = read_checkpoint(tmp_path / "last.ckpt")
    assert ckpt["step"] == 60 and ckpt["train_config"]["max_steps"] == 60
    assert set(ckpt["rng"]) >= {"torch"} and "optimizer" in ckpt


def test_resume_equals_uninterrupted_run(tmp_path):
    """Dropout on, 12 updates over 2 epochs: stop after 5, resume, same weights and metrics."""
    model_cfg = ModelConfig(
        num_layers=2, num_heads=2, d_model=16, dropout=0.1, mixture_len=MIX, max_target_len=24
    )
    data, valid = RandomTokens(10, ragged=True), RandomTokens(3, seed=1)
    cfg = TrainConfig(
        lr=1e-3,
        warmup_steps=3,
        max_steps=12,
        batch_size=4,
        eval_every=4,
        log_every=3,
        save_every=100,
        target_frames=12,
        seed=5,
    )
    full = train(data, valid, TrainOptions(tmp_path / "a", model_cfg, cfg, progress=False))
    part = train(
        data, valid, TrainOptions(tmp_path / "b", model_cfg, cfg, progress=False, stop_after=5)
    )
    assert part.step == 5
    resumed = train(
        data, valid, TrainOptions(tmp_path / "b", model_cfg, cfg, progress=False, resume=True)
    )
    assert resumed.step == full.step == 12
    a = read_checkpoint(tmp_path / "a" / "last.ckpt")
    b = read_checkpoint(tmp_path / "b" / "last.ckpt")
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    for ra, rb in zip(
        read_rows(tmp_path / "a" / "metrics.csv"),
        read_rows(tmp_path / "b" / "metrics.csv"),
        strict=True,
    ):
        ra.pop("examples_per_s"), rb.pop("examples_per_s")
        assert ra == rb
    assert a["best_step"] == b["best_step"] and a["best_valid"] == b["best_valid"]
    # A run that is already finished resumes to itself without training.
    again = train(
        data, valid, TrainOptions(tmp_path / "b", model_cfg, cfg, progress=False, resume=True)
    )
    assert again.step == 12
    # Without --resume an existing run is refused, not overwritten.
    with pytest.raises(TrainingError, match="already holds a run"):
        train(data, valid, TrainOptions(tmp_path / "b", model_cfg, cfg, progress=False))
    assert read_checkpoint(tmp_path / "b" / "last.ckpt")["step"] == 12


def test_padding_rows_do_not_train_unless_unmasked(tmp_path):
    """With train.mask_padding (the default) what a batch holds past a short target's end does
    not change the update; unmasked (the published code's way) it does."""
    from dose_model.train.batches import collate

    def junk_collate(batch):  # pad with random tokens instead of PAD_ID; same mask
        mixture, target, mask = collate(batch)
        junk = torch.randint(1, 1025, target.shape, generator=torch.Generator().manual_seed(9))
        return mixture, torch.where(mask[..., None], target, junk), mask

    data = RandomTokens(4, ragged=True)
    cfg = TrainConfig(max_steps=1, batch_size=4, warmup_steps=0, eval_every=100, save_every=100)
    weights = {}
    for masked in (True, False):
        for name, fn in (("zeros", collate), ("junk", junk_collate)):
            run = tmp_path / f"{name}-{masked}"
            c = TrainConfig.from_dict({**cfg.to_dict(), "mask_padding": masked})
            train(data, None, TrainOptions(run, MODEL, c, progress=False), collate=fn)
            weights[name, masked] = read_checkpoint(run / "last.ckpt")["model"]
    same = [torch.equal(weights["zeros", True][k], v) for k, v in weights["junk", True].items()]
    assert all(same)
    assert not all(
        torch.equal(weights["zeros", False][k], v) for k, v in weights["junk", False].items()
    )


def test_data_order_is_a_pure_function_of_seed_and_step():
    n, b = 10, 4  # 2 batches per epoch, 2 examples dropped each epoch
    a = [global_batch(3, s, n, b) for s in range(6)]
    assert all(np.array_equal(x, global_batch(3, s, n, b)) for s, x in enumerate(a))
    epoch0 = np.concatenate(a[:2])
    assert len(set(epoch0.tolist())) == 8  # no repeats within an epoch
    assert not np.array_equal(np.concatenate(a[2:4]), epoch0)  # a new order each epoch
    assert not np.array_equal(global_batch(4, 0, n, b), a[0])
    shares = [rank_share(a[0], r, 2) for r in range(2)]
    assert np.array_equal(np.concatenate(shares), a[0])


def test_early_stopping_on_flat_validation(tmp_path, monkeypatch):
    import dose_model.train.loop as train_module

    calls = []

    def flat(*args, **kwargs):
        calls.append(1)
        return {"loss": 5.0, "full": 2.5, "onset": 2.5, "accuracy": 0.0}

    monkeypatch.setattr(train_module, "evaluate", flat)
    data = RandomTokens(4)
    cfg = TrainConfig(max_steps=50, batch_size=4, eval_every=2, patience=2, warmup_steps=0)
    result = train(data, data, TrainOptions(tmp_path, MODEL, cfg, progress=False))
    assert result.stopped_early and result.step == 6 and len(calls) == 3
    assert result.best_step == 2
    assert read_checkpoint(tmp_path / "best.ckpt")["step"] == 2
    assert read_checkpoint(tmp_path / "last.ckpt")["stopped"] is True


def test_bad_sizes_are_reported(tmp_path):
    cfg = TrainConfig(batch_size=8, max_steps=2)
    with pytest.raises(TrainingError, match="cannot fill one batch"):
        train(RandomTokens(4), None, TrainOptions(tmp_path, MODEL, cfg, progress=False))
    short = ModelConfig(num_layers=1, num_heads=1, d_model=8, mixture_len=MIX, max_target_len=15)
    with pytest.raises(TrainingError, match="max_target_len"):
        train(RandomTokens(8), None, TrainOptions(tmp_path, short, cfg, progress=False))
    with pytest.raises(TrainingError, match="mixture tokens"):
        train(RandomTokens(8, mix_len=40), None, TrainOptions(tmp_path, MODEL, cfg, progress=False))
    with pytest.raises(TrainingError, match="does not exist"):
        train(
            RandomTokens(8),
            None,
            TrainOptions(tmp_path / "new", MODEL, cfg, progress=False, resume=True),
        )
    with pytest.raises(ConfigError, match="max_steps"):
        train(
            RandomTokens(8),
            None,
            TrainOptions(tmp_path / "new", MODEL, cfg, progress=False, max_steps=0),
        )
    assert not (tmp_path / "new").exists()  # nothing created for a run that cannot start


def test_end_to_end_fake_dataset_tiny_codec_cli(tmp_path, capsys, monkeypatch):
    """fake RMOD dataset -> dose-train (tokenizes with a tiny random DAC) -> checkpoint loads."""
    from dose_model.cli.train import main
    from dose_model.model.generate import generate
    from tests.dose_fixtures import write_fake_rmod, write_tiny_codec

    root = write_fake_rmod(tmp_path / "ds", counts={"train": 4, "valid": 2}, seed=3)
    codec = write_tiny_codec(tmp_path / "codec.pth")
    recipe = Path(__file__).resolve().parents[2] / "recipes" / "dose-tiny.yaml"
    argv = [
        "--manifest",
        str(root / "manifests" / "train.jsonl"),
        "--drum",
        "snare",
        "--codec-weights",
        str(codec),
        "--out",
        str(tmp_path / "run"),
        "--config",
        str(recipe),
        "--max-steps",
        "6",
        "--batch-size",
        "2",
        "--no-progress",
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "dose-train: snare 6 steps" in out
    tokdirs = list(root.glob("tokens-*"))
    assert len(tokdirs) == 1 and (tokdirs[0] / "index.json").is_file()
    model = load_model(tmp_path / "run" / "best.ckpt")
    rows = read_rows(tmp_path / "run" / "metrics.csv")
    assert rows[-1]["step"] == "6" and rows[-1]["valid_loss"] != ""
    from dose_model.train.batches import TokenDataset

    mixture, _ = TokenDataset(tokdirs[0], "valid", "snare", target_frames=20)[0]
    gen = generate(model, mixture[None], max_len=8)
    assert gen.tokens.shape[0] == 1 and gen.tokens.shape[2] == 9
    # Resuming a finished run, with the cache found by --tokens, trains nothing more.
    argv2 = argv[:4] + ["--tokens", str(tokdirs[0]), "--out", str(tmp_path / "run"), "--resume"]
    assert main(argv2 + ["--max-steps", "6", "--no-progress"]) == 0
    # Errors exit non-zero with a message (no weights given, none in DAC's cache folder).
    import dose_model.codec.dac_codec as codec_module

    cached = tmp_path / "dac-cache" / "weights_44khz_8kbps_0.0.1.pth"
    monkeypatch.setattr(codec_module, "DAC_CACHE_PATH", cached)
    fresh = write_fake_rmod(tmp_path / "ds2", counts={"train": 2, "valid": 1}, seed=4)
    assert main(["--manifest", str(fresh), "--drum", "kick", "--out", str(tmp_path / "x")]) == 2
    assert "--codec-weights" in capsys.readouterr().err
    # Without --codec-weights and --tokens, DAC's own cached weights file is used when present.
    cached.parent.mkdir()
    cached.write_bytes(codec.read_bytes())
    argv3 = ["--manifest", str(fresh), "--drum", "kick", "--out", str(tmp_path / "y")]
    argv3 += ["--config", str(recipe), "--max-steps", "1", "--batch-size", "2", "--no-progress"]
    assert main(argv3) == 0
    assert len(list(fresh.glob("tokens-*"))) == 1


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_bf16_training_and_checkpoint(tmp_path):
    """GPU path: bf16 autocast, fused AdamW, CUDA RNG state in the checkpoint, exact resume."""
    data = RandomTokens(8)
    cfg = TrainConfig(
        lr=1e-2,
        warmup_steps=2,
        max_steps=6,
        batch_size=4,
        eval_every=3,
        log_every=3,
        save_every=100,
        target_frames=12,
    )
    kw = {"device": "cuda", "progress": False, "compile": False}  # compiled: bench_train
    full = train(data, data, TrainOptions(tmp_path / "a", MODEL, cfg, **kw))
    assert np.isfinite(full.last_train_loss) and full.last_train_loss < 14.0
    ckpt = read_checkpoint(tmp_path / "a" / "last.ckpt")
    assert "cuda" in ckpt["rng"]
    train(data, data, TrainOptions(tmp_path / "b", MODEL, cfg, stop_after=3, **kw))
    train(data, data, TrainOptions(tmp_path / "b", MODEL, cfg, resume=True, **kw))
    b = read_checkpoint(tmp_path / "b" / "last.ckpt")
    for key, value in ckpt["model"].items():
        torch.testing.assert_close(b["model"][key], value, rtol=1e-4, atol=1e-5, msg=key)


@pytest.mark.slow
def test_end_to_end_rmod_build_then_dose_train(tmp_path, builtin_library, capsys):
    """rmod-build (tiny, built-in library) -> dose-train with a tiny random DAC -> checkpoint
    loads and generates."""
    from dose_model.cli.train import main
    from dose_model.model.generate import generate
    from rmod.cli.build import main as rmod_build
    from tests.dose_fixtures import write_tiny_codec

    root = tmp_path / "rmod"
    assert rmod_build(["--n", "2", "--out", str(root), "--jobs", "1", "--no-progress"]) == 0
    codec = write_tiny_codec(tmp_path / "codec.pth")
    recipe = Path(__file__).resolve().parents[2] / "recipes" / "dose-tiny.yaml"
    run = tmp_path / "run"
    argv = ["--manifest", str(root), "--drum", "kick", "--codec-weights", str(codec)]
    argv += ["--out", str(run), "--config", str(recipe), "--max-steps", "4"]
    assert main(argv + ["--batch-size", "2", "--device", "cpu", "--no-progress"]) == 0
    assert "dose-train: kick 4 steps" in capsys.readouterr().out
    model = load_model(run / "best.ckpt")
    assert read_checkpoint(run / "last.ckpt")["step"] == 4
    from dose_model.train.batches import TokenDataset

    (tokdir,) = root.glob("tokens-*")
    valid = TokenDataset(tokdir, "valid", "kick", target_frames=20)
    assert len(valid) == 1
    gen = generate(model, valid[0][0][None], max_len=6, stop_on_end=False)
    assert gen.tokens.shape == (1, 6, 9)
    # ... and the trained checkpoint is scored on the test split and extracts from a mixture
    from dose_model.cli.evaluate import main as dose_eval
    from dose_model.cli.extract import main as dose_extract

    capsys.readouterr()
    common = ["--codec-weights", str(codec), "--kick", str(run / "best.ckpt"), "--device", "cpu"]
    assert dose_eval(["--manifest", str(root), "--out", str(tmp_path / "ev"), "--no-progress"]
                     + common) == 0  # fmt: skip
    assert "1 row of 1 dataset scored" in capsys.readouterr().out
    (mixture,) = (root / "test").glob("*/*.mixture.wav")
    assert dose_extract([str(mixture), "--out", str(tmp_path / "ex")] + common) == 0
    assert (tmp_path / "ex" / f"{mixture.stem}.extract.json").is_file()


@pytest.mark.slow
def test_compiled_training_matches_eager(tmp_path):
    """`compile=True` (forward and loss under torch.compile, inductor on CPU) trains to the same
    weights as eager PyTorch within float tolerance."""
    data = RandomTokens(4)
    cfg = TrainConfig(
        lr=1e-3,
        warmup_steps=1,
        max_steps=3,
        batch_size=4,
        eval_every=3,
        log_every=3,
        save_every=100,
        target_frames=12,
    )
    eager = train(data, data, TrainOptions(tmp_path / "eager", MODEL, cfg, progress=False))
    compiled = train(
        data, data, TrainOptions(tmp_path / "compiled", MODEL, cfg, progress=False, compile=True)
    )
    assert compiled.last_train_loss == pytest.approx(eager.last_train_loss, rel=1e-4)
    a = read_checkpoint(tmp_path / "eager" / "last.ckpt")["model"]
    b = read_checkpoint(tmp_path / "compiled" / "last.ckpt")["model"]
    assert a.keys() == b.keys()
    for key, value in a.items():
        torch.testing.assert_close(b[key], value, rtol=1e-3, atol=1e-5, msg=key)


def test_training_step_compiles_to_one_graph():
    """Under torch.compile the whole step (embedding, blocks with the last block's kept-rows
    mask, head, loss) is one graph: no op falls back to eager Python between graphs."""
    from dose_model.train.loop import _TrainStep

    torch._dynamo.reset()
    step = _TrainStep(DoseTransformer(MODEL), TrainConfig(target_frames=12))
    mix, tgt = RandomTokens(1)[0]
    mask = torch.ones(1, tgt.shape[0], dtype=torch.bool)
    explained = torch._dynamo.explain(step)(mix[None], tgt[None], mask)
    assert explained.graph_break_count == 0, explained.break_reasons
    assert explained.graph_count == 1


class TerminatedAt(RandomTokens):
    """RandomTokens whose ``at``-th item read (by the loader thread) sends this process
    SIGTERM, as a batch scheduler would."""

    def __init__(self, *args, at, **kwargs):
        super().__init__(*args, **kwargs)
        self.at, self.reads = at, 0

    def __getitem__(self, i):
        self.reads += 1
        if self.reads == self.at:
            import os
            import signal

            os.kill(os.getpid(), signal.SIGTERM)
        return super().__getitem__(i)


def test_sigterm_saves_and_the_resumed_run_equals_an_uninterrupted_one(tmp_path):
    """SIGTERM mid-run: the step in progress finishes, last.ckpt is written for that step and
    train returns interrupted='SIGTERM'; resuming gives the uninterrupted run's weights."""
    import signal

    cfg = TrainConfig(
        lr=1e-3, warmup_steps=2, max_steps=8, batch_size=2, eval_every=100, log_every=2,
        save_every=100, target_frames=12, seed=2,
    )  # fmt: skip
    full = train(RandomTokens(6), None, TrainOptions(tmp_path / "a", MODEL, cfg, progress=False))
    before = signal.getsignal(signal.SIGTERM)
    data = TerminatedAt(6, at=1 + 2 * 4 + 1)  # a shape check, then 2 items a step: step 4
    part = train(data, None, TrainOptions(tmp_path / "b", MODEL, cfg, progress=False))
    assert signal.getsignal(signal.SIGTERM) is before  # the handler is put back
    assert part.interrupted == "SIGTERM" and 3 <= part.step < 8
    assert read_checkpoint(tmp_path / "b" / "last.ckpt")["step"] == part.step
    resumed = train(RandomTokens(6), None, TrainOptions(tmp_path / "b", MODEL, cfg, resume=True, progress=False))  # fmt: skip
    assert resumed.step == full.step == 8 and resumed.interrupted is None
    a = read_checkpoint(tmp_path / "a" / "last.ckpt")["model"]
    b = read_checkpoint(tmp_path / "b" / "last.ckpt")["model"]
    assert all(torch.equal(v, b[k]) for k, v in a.items())


def test_resume_refuses_other_data_or_settings(tmp_path):
    """The dataset's identity (drum, token cache) and the configs are recorded; a resume with
    others is refused naming each difference; max_steps may change."""

    class Kick(RandomTokens):
        identity = {"drum": "kick", "token_cache": "aaa"}

    class Snare(RandomTokens):
        identity = {"drum": "snare", "token_cache": "bbb"}

    cfg = TrainConfig(max_steps=2, batch_size=2, warmup_steps=0, target_frames=12)
    train(Kick(4), None, TrainOptions(tmp_path, MODEL, cfg, progress=False, stop_after=1))
    assert read_checkpoint(tmp_path / "last.ckpt")["data"] == Kick.identity
    with pytest.raises(TrainingError) as err:
        train(Snare(4), None, TrainOptions(tmp_path, MODEL, cfg, progress=False, resume=True))
    assert "data.drum: checkpoint 'kick', now 'snare'" in str(err.value)
    assert "data.token_cache: checkpoint 'aaa', now 'bbb'" in str(err.value)
    other = TrainConfig.from_dict({**cfg.to_dict(), "lr": 1.0})
    with pytest.raises(TrainingError, match="train.lr: checkpoint 0.0003, now 1.0"):
        train(Kick(4), None, TrainOptions(tmp_path, MODEL, other, progress=False, resume=True))
    wider = ModelConfig.from_dict({**MODEL.to_dict(), "d_model": 64})
    with pytest.raises(TrainingError, match="model.d_model: checkpoint 32, now 64"):
        train(Kick(4), None, TrainOptions(tmp_path, wider, cfg, progress=False, resume=True))
    done = train(
        Kick(4), None, TrainOptions(tmp_path, None, None, progress=False, resume=True, max_steps=3)
    )
    assert done.step == 3


def test_compile_flags():
    from dose_model.cli.train import build_parser

    base = ["--manifest", "d", "--drum", "kick", "--out", "o"]
    assert build_parser().parse_args(base).compile is None  # auto: on for CUDA
    assert build_parser().parse_args([*base, "--compile"]).compile is True
    assert build_parser().parse_args([*base, "--no-compile"]).compile is False
